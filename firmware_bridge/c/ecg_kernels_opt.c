/* Optimised INT8 convolution: im2col of two output columns into int16 (input offset added, padding
 * as 0), then 2 output channels x 2 columns per pass with dual 16-bit MACs (SMLAD) on weights
 * sign-extended in pairs (SXTB16). The column is stored pair-reordered (c0,c2,c1,c3) so one SXTB16 of
 * four filter bytes lines up with one 32-bit column load. Integer results equal the reference path. */
#include "ecg_kernels.h"
#include "ecg_quant.h"
#include <string.h>

#if defined(ECG_OPTIMIZED)
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define SMLAD(x, y, acc) ((int32_t)__smlad((x), (y), (acc)))
#define SXTB16(x) ((uint32_t)__sxtb16(x))
#define SAT8(x) __ssat((x), 8)
static inline uint32_t SXTB16_ROR8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
/* portable emulation (host builds): same arithmetic as the ARMv7E-M instructions */
static inline int32_t SMLAD(uint32_t x, uint32_t y, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)x * (int16_t)y) +
                     (uint32_t)((int32_t)(int16_t)(x >> 16) * (int16_t)(y >> 16)));
}
static inline uint32_t SXTB16(uint32_t x) {
    return ((uint32_t)(uint16_t)(int16_t)(int8_t)x) | ((uint32_t)(uint16_t)(int16_t)(int8_t)(x >> 16) << 16);
}
static inline uint32_t SXTB16_ROR8(uint32_t x) { return SXTB16((x >> 8) | (x << 24)); }
#define SAT8(x) ((x) < -128 ? -128 : ((x) > 127 ? 127 : (x)))
#endif

static inline uint32_t load32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* slot of element i in a pair-reordered column: within each group of 4, order 0,2,1,3 */
static inline int32_t slot(int32_t i) { return (i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1); }

#if defined(__ARM_FEATURE_DSP)
#define SXTAB16(acc, x) ((uint32_t)__sxtab16((acc), (x)))
#else
static inline uint32_t SXTAB16(uint32_t acc, uint32_t x) {
    uint32_t e = SXTB16(x);
    return ((acc + e) & 0xFFFFu) | (((acc >> 16) + (e >> 16)) << 16);
}
#endif

/* Fast exact requantisation. SMMULR(2a, m) = (2am + 2^31) >> 32 = floor((am + 2^30) / 2^31), TFLite's
 * SaturatingRoundingDoublingHighMul while |a| < 2^30; the rounding right shift by r >= 1 (half away from
 * zero) is (v + 2^(r-1) - (v < 0)) >> r, and the output offset rides in the same add as oo * 2^r.
 * SMMLAR adds that rounding bias for free, and (v < 0) may be replaced by (a < 0): they differ only when
 * v == 0, where both give the offset. rq_fast_ok says when a channel qualifies (no left shift, r >= 1,
 * no overflow); otherwise the generic path runs. */
static inline int32_t SMMLAR(int32_t a, int32_t b, int32_t acc) {
#if defined(__ARM_FEATURE_DSP)
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return (int32_t)(((int64_t)acc * ((int64_t)1 << 32) + (int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}
typedef struct { int32_t mult, right, rbias; } ecg_rqf;
static inline int rq_fast_ok(int32_t shift, int32_t oo) {
    return shift <= -1 && shift >= -22 && oo >= -128 && oo <= 127;
}
static inline ecg_rqf rq_fast_make(int32_t mult, int32_t shift, int32_t oo) {
    ecg_rqf q;
    q.mult = mult;
    q.right = -shift;
    q.rbias = (int32_t)((1 << (q.right - 1)) + (int32_t)((uint32_t)oo << q.right));
    return q;
}
/* acc2 = 2 * accumulator (|accumulator| < 2^30); result before the clamp, output offset included */
static inline int32_t rq_fast(int32_t acc2, int32_t mult, int32_t right, int32_t rbias) {
    return (SMMLAR(acc2, mult, rbias) + (acc2 >> 31)) >> right;
}

#define NCOL 4   /* output columns per im2col block; columns are interleaved per 4-element group */

/* Widen n bytes (n a multiple of 4) of one column into its slot of an interleaved block: each 4 input
 * bytes become two int16 pairs (c0,c2),(c1,c3) with the input offset added; consecutive groups of 4 are
 * 2 * NCOL words apart. */
static inline void widen_run(const int8_t *src, int32_t n, uint32_t off2, uint32_t *dst) {
#if defined(__ARM_FEATURE_DSP)
    const int8_t *end = src + n;
    uint32_t v0, v1, a, b, c, d;
    if ((n & 7) == 0 && n) {
        __asm__ volatile(
            "1:\n\t"
            "ldr %[v0], [%[s]], #4\n\t"
            "ldr %[v1], [%[s]], #4\n\t"
            "sxtab16 %[a], %[off], %[v0]\n\t"
            "sxtab16 %[b], %[off], %[v0], ror #8\n\t"
            "sxtab16 %[c], %[off], %[v1]\n\t"
            "sxtab16 %[d], %[off], %[v1], ror #8\n\t"
            "strd %[a], %[b], [%[dst]], #32\n\t"
            "strd %[c], %[d], [%[dst]], #32\n\t"
            "cmp %[s], %[e]\n\t"
            "bne 1b\n\t"
            : [s] "+r"(src), [dst] "+r"(dst), [v0] "=&r"(v0), [v1] "=&r"(v1), [a] "=&r"(a), [b] "=&r"(b),
              [c] "=&r"(c), [d] "=&r"(d)
            : [off] "r"(off2), [e] "r"(end) : "cc", "memory");
        return;
    }
    for (; src < end; src += 4, dst += 2 * NCOL) {
        const uint32_t x = load32(src);
        dst[0] = SXTAB16(off2, x);
        dst[1] = SXTAB16(off2, (x >> 8) | (x << 24));
    }
#else
    for (int32_t c = 0; c < n; c += 4, dst += 2 * NCOL) {
        const uint32_t x = load32(src + c);
        dst[0] = SXTAB16(off2, x);
        dst[1] = SXTAB16(off2, (x >> 8) | (x << 24));
    }
#endif
}


/* im2col of one output column into slot j of an interleaved block: element i of column j lives at
 * int16 index ((i/4)*NCOL + j)*4 + pair_slot(i%4) */
static void im2col(const ecg_conv_params *p, const int8_t *in, int32_t ox, int32_t oy, int32_t c0,
                   int16_t *blk, int32_t j, int32_t col_len4) {
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int32_t fic = p->filter_in_c;
    /* taps along x are contiguous in memory when the conv is not grouped: copy whole runs */
    const int32_t run_taps = (fic == p->in_c && p->dil_w == 1) ? p->k_w : 1;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->in_offset) * 0x10001u;
    int32_t i = 0;
#define AT(i) (blk[(((i) >> 2) * NCOL + j) * 4 + slot((i) & 3)])
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; kx += run_taps) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int32_t run = run_taps * fic;
            const int32_t last_ix = ix + (run_taps - 1) * p->dil_w;
            if (iy >= 0 && iy < p->in_h && ix >= 0 && last_ix < p->in_w && (run & 3) == 0 && (i & 3) == 0) {
                const int8_t *src = in + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
                widen_run(src, run, off2, (uint32_t *)(blk + ((i >> 2) * NCOL + j) * 4));
                i += run;
                continue;
            }
            for (int32_t t = 0; t < run_taps; ++t) {
                const int32_t tx = ix + t * p->dil_w;
                if (iy < 0 || iy >= p->in_h || tx < 0 || tx >= p->in_w) {
                    for (int32_t c = 0; c < fic; ++c, ++i) AT(i) = 0;
                } else {
                    const int8_t *src = in + ((size_t)iy * p->in_w + tx) * p->in_c + c0;
                    for (int32_t c = 0; c < fic; ++c, ++i) AT(i) = (int16_t)(src[c] + p->in_offset);
                }
            }
        }
    }
    for (; i < col_len4; ++i) AT(i) = 0;
#undef AT
}

static inline int8_t requant(int32_t acc, ecg_rq rq, int32_t out_offset, int32_t lo, int32_t hi) {
    return (int8_t)ecg_clamp(ecg_rq_apply(acc, rq) + out_offset, lo, hi);
}

/* Four accumulators of one output channel -> int8 (no fused activation): a small function whose
 * few live values stay in registers. */
__attribute__((noinline)) static void requant4_full(int32_t a0, int32_t a1, int32_t a2, int32_t a3, int8_t *o,
                                                    int32_t stride, int32_t mult, int32_t shift, int32_t oo) {
    const ecg_rq rq = ecg_rq_make(mult, shift);
    o[0] = (int8_t)SAT8(ecg_rq_apply(a0, rq) + oo);
    o[stride] = (int8_t)SAT8(ecg_rq_apply(a1, rq) + oo);
    o[2 * stride] = (int8_t)SAT8(ecg_rq_apply(a2, rq) + oo);
    o[3 * stride] = (int8_t)SAT8(ecg_rq_apply(a3, rq) + oo);
}

/* All output channels of one group for one block of NCOL columns: a separate function keeps the
 * accumulators, requantiser and pointers in registers (inlined, they spilled). */
__attribute__((noinline)) static void conv_block(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                 int32_t oc0, int32_t n_oc, int32_t col_len, int32_t col_len4,
                                                 int32_t ncols) {
    const int32_t out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int full = lo == -128 && hi == 127;
    /* |accumulator| <= |bias| + col_len * 255 * 128 must stay below 2^30 for the fast requantiser */
    const int32_t acc_room = (int32_t)((1 << 30) - (int64_t)col_len * 255 * 128);
        for (int32_t oc = oc0; oc < oc0 + n_oc; ++oc) {
            const int8_t *w = p->filter + (size_t)oc * col_len;
            const int32_t b = p->bias ? p->bias[oc] : 0;
            int32_t a0 = b, a1 = b, a2 = b, a3 = b;
            const uint32_t *x = (const uint32_t *)blk;
            const uint32_t *xend = x + (size_t)(col_len4 / 4) * 2 * NCOL;
#if defined(__ARM_FEATURE_DSP)
            /* per 4 taps x 4 columns: LDR + 2 SXTB16 + 4 LDRD + 8 SMLAD + loop (about 1 per MAC) */
            uint32_t wv, w13, x0, x1;
#define TAPS4                                                     \
                "ldr %[wv], [%[w]], #4\n\t"                  \
                "sxtb16 %[w13], %[wv], ror #8\n\t"           \
                "sxtb16 %[wv], %[wv]\n\t"                    \
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"          \
                "smlad %[a0], %[wv], %[x0], %[a0]\n\t"       \
                "smlad %[a0], %[w13], %[x1], %[a0]\n\t"      \
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"          \
                "smlad %[a1], %[wv], %[x0], %[a1]\n\t"       \
                "smlad %[a1], %[w13], %[x1], %[a1]\n\t"      \
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"          \
                "smlad %[a2], %[wv], %[x0], %[a2]\n\t"       \
                "smlad %[a2], %[w13], %[x1], %[a2]\n\t"      \
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"          \
                "smlad %[a3], %[wv], %[x0], %[a3]\n\t"       \
                "smlad %[a3], %[w13], %[x1], %[a3]\n\t"
            if (((col_len4 >> 2) & 1) == 0) {   /* two 4-tap groups per loop pass */
                __asm__ volatile("1:\n\t" TAPS4 TAPS4 "cmp %[x], %[xend]\n\t" "bne 1b\n\t"
                    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [x] "+r"(x),
                      [wv] "=&r"(wv), [w13] "=&r"(w13), [x0] "=&r"(x0), [x1] "=&r"(x1)
                    : [xend] "r"(xend)
                    : "cc", "memory");
            } else
            __asm__ volatile(
                "1:\n\t"
                "ldr %[wv], [%[w]], #4\n\t"
                "sxtb16 %[w13], %[wv], ror #8\n\t"
                "sxtb16 %[wv], %[wv]\n\t"
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"
                "smlad %[a0], %[wv], %[x0], %[a0]\n\t"
                "smlad %[a0], %[w13], %[x1], %[a0]\n\t"
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"
                "smlad %[a1], %[wv], %[x0], %[a1]\n\t"
                "smlad %[a1], %[w13], %[x1], %[a1]\n\t"
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"
                "smlad %[a2], %[wv], %[x0], %[a2]\n\t"
                "smlad %[a2], %[w13], %[x1], %[a2]\n\t"
                "ldrd %[x0], %[x1], [%[x]], #8\n\t"
                "smlad %[a3], %[wv], %[x0], %[a3]\n\t"
                "smlad %[a3], %[w13], %[x1], %[a3]\n\t"
                "cmp %[x], %[xend]\n\t"
                "bne 1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [x] "+r"(x),
                  [wv] "=&r"(wv), [w13] "=&r"(w13), [x0] "=&r"(x0), [x1] "=&r"(x1)
                : [xend] "r"(xend)
                : "cc", "memory");
#else
            while (x < xend) {
                const uint32_t wv = load32(w);
                const uint32_t w02 = SXTB16(wv), w13 = SXTB16_ROR8(wv);
                a0 = SMLAD(w02, x[0], a0); a0 = SMLAD(w13, x[1], a0);
                a1 = SMLAD(w02, x[2], a1); a1 = SMLAD(w13, x[3], a1);
                a2 = SMLAD(w02, x[4], a2); a2 = SMLAD(w13, x[5], a2);
                a3 = SMLAD(w02, x[6], a3); a3 = SMLAD(w13, x[7], a3);
                w += 4;
                x += 8;
            }
#endif
            const int32_t sh = p->shift[oc];
            if (rq_fast_ok(sh, oo) && (b < 0 ? -b : b) < acc_room) {
                const ecg_rqf q = rq_fast_make(p->mult[oc], sh, oo);
                int32_t y0 = rq_fast(a0 + a0, q.mult, q.right, q.rbias), y1 = rq_fast(a1 + a1, q.mult, q.right, q.rbias);
                int32_t y2 = rq_fast(a2 + a2, q.mult, q.right, q.rbias), y3 = rq_fast(a3 + a3, q.mult, q.right, q.rbias);
                if (full) {
                    y0 = SAT8(y0); y1 = SAT8(y1); y2 = SAT8(y2); y3 = SAT8(y3);
                } else {
                    y0 = ecg_clamp(y0, lo, hi); y1 = ecg_clamp(y1, lo, hi);
                    y2 = ecg_clamp(y2, lo, hi); y3 = ecg_clamp(y3, lo, hi);
                }
                o[oc] = (int8_t)y0;
                if (ncols > 1) o[out_c + oc] = (int8_t)y1;
                if (ncols > 2) o[2 * out_c + oc] = (int8_t)y2;
                if (ncols > 3) o[3 * out_c + oc] = (int8_t)y3;
                continue;
            }
            if (full && ncols == NCOL) {
                requant4_full(a0, a1, a2, a3, o + oc, out_c, p->mult[oc], sh, oo);
                continue;
            }
            const ecg_rq rq = ecg_rq_make(p->mult[oc], p->shift[oc]);   /* after the loop: frees registers */
            o[oc] = requant(a0, rq, oo, lo, hi);
            if (ncols > 1) o[out_c + oc] = requant(a1, rq, oo, lo, hi);
            if (ncols > 2) o[2 * out_c + oc] = requant(a2, rq, oo, lo, hi);
            if (ncols > 3) o[3 * out_c + oc] = requant(a3, rq, oo, lo, hi);
        }
}

/* Wide path: the generator's doubled int16 filter (same pair order as the im2col columns), doubled bias
 * and per-channel fast requantiser. Per 4 taps x 4 columns: LDRD (weights) + 4 LDRD + 8 SMLAD. */
static inline __attribute__((always_inline)) void conv_block_wide_impl(
        const ecg_conv_params *p, const int16_t *blk, int8_t *o, int32_t oc0, int32_t n_oc, int32_t col_len4,
        int32_t ncols, const int full, const int8_t *post) {
    const int32_t out_c = p->out_c, lo = p->act_min, hi = p->act_max;
    const int32_t n4 = col_len4 >> 2;
    const int16_t *w = p->wide + (size_t)oc0 * col_len4;
    const int32_t *rq = p->rqf + 3 * oc0, *bias2 = p->bias2 + oc0;
    o += oc0;
    for (int32_t k = 0; k < n_oc; ++k, rq += 3, ++o) {
        const int32_t b = bias2[k];
        int32_t a0 = b, a1 = b, a2 = b, a3 = b;
        const uint32_t *x = (const uint32_t *)blk;
        const uint32_t *xend = x + (size_t)n4 * 2 * NCOL;
#if defined(__ARM_FEATURE_DSP)
        uint32_t w02, w13, x0, x1;
#define WTAPS4                                                   \
            "ldrd %[w02], %[w13], [%[w]], #8\n\t"                \
            "ldrd %[x0], %[x1], [%[x]], #8\n\t"                  \
            "smlad %[a0], %[w02], %[x0], %[a0]\n\t"              \
            "smlad %[a0], %[w13], %[x1], %[a0]\n\t"              \
            "ldrd %[x0], %[x1], [%[x]], #8\n\t"                  \
            "smlad %[a1], %[w02], %[x0], %[a1]\n\t"              \
            "smlad %[a1], %[w13], %[x1], %[a1]\n\t"              \
            "ldrd %[x0], %[x1], [%[x]], #8\n\t"                  \
            "smlad %[a2], %[w02], %[x0], %[a2]\n\t"              \
            "smlad %[a2], %[w13], %[x1], %[a2]\n\t"              \
            "ldrd %[x0], %[x1], [%[x]], #8\n\t"                  \
            "smlad %[a3], %[w02], %[x0], %[a3]\n\t"              \
            "smlad %[a3], %[w13], %[x1], %[a3]\n\t"
        if ((n4 & 3) == 0) {
            __asm__ volatile("1:\n\t" WTAPS4 WTAPS4 WTAPS4 WTAPS4 "cmp %[x], %[xend]\n\t" "bne 1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [x] "+r"(x),
                  [w02] "=&r"(w02), [w13] "=&r"(w13), [x0] "=&r"(x0), [x1] "=&r"(x1)
                : [xend] "r"(xend) : "cc", "memory");
        } else if ((n4 & 1) == 0) {
            __asm__ volatile("1:\n\t" WTAPS4 WTAPS4 "cmp %[x], %[xend]\n\t" "bne 1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [x] "+r"(x),
                  [w02] "=&r"(w02), [w13] "=&r"(w13), [x0] "=&r"(x0), [x1] "=&r"(x1)
                : [xend] "r"(xend) : "cc", "memory");
        } else {
            __asm__ volatile("1:\n\t" WTAPS4 "cmp %[x], %[xend]\n\t" "bne 1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [x] "+r"(x),
                  [w02] "=&r"(w02), [w13] "=&r"(w13), [x0] "=&r"(x0), [x1] "=&r"(x1)
                : [xend] "r"(xend) : "cc", "memory");
        }
#undef WTAPS4
#else
        while (x < xend) {
            const uint32_t w02 = load32(w), w13 = load32(w + 2);
            a0 = SMLAD(w02, x[0], a0); a0 = SMLAD(w13, x[1], a0);
            a1 = SMLAD(w02, x[2], a1); a1 = SMLAD(w13, x[3], a1);
            a2 = SMLAD(w02, x[4], a2); a2 = SMLAD(w13, x[5], a2);
            a3 = SMLAD(w02, x[6], a3); a3 = SMLAD(w13, x[7], a3);
            w += 4;
            x += 8;
        }
#endif
        const int32_t m = rq[0], r = rq[1], rb = rq[2];
        int32_t y0 = rq_fast(a0, m, r, rb), y1 = rq_fast(a1, m, r, rb);
        int32_t y2 = rq_fast(a2, m, r, rb), y3 = rq_fast(a3, m, r, rb);
        if (full) {
            y0 = SAT8(y0); y1 = SAT8(y1); y2 = SAT8(y2); y3 = SAT8(y3);
        } else {
            y0 = ecg_clamp(y0, lo, hi); y1 = ecg_clamp(y1, lo, hi);
            y2 = ecg_clamp(y2, lo, hi); y3 = ecg_clamp(y3, lo, hi);
        }
        if (post) {
            y0 = post[y0]; y1 = post[y1]; y2 = post[y2]; y3 = post[y3];
        }
        if (ncols == NCOL) {
            o[0] = (int8_t)y0; o[out_c] = (int8_t)y1; o[2 * out_c] = (int8_t)y2; o[3 * out_c] = (int8_t)y3;
        } else {
            o[0] = (int8_t)y0;
            if (ncols > 1) o[out_c] = (int8_t)y1;
            if (ncols > 2) o[2 * out_c] = (int8_t)y2;
        }
    }
}

/* specialised copies (full-range output, whole block, with/without a fused table) keep the epilogue
 * branch-free; the generic one handles clamps and the short last block */
__attribute__((noinline)) static void conv_block_wide_full4(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                            int32_t oc0, int32_t n_oc, int32_t col_len4) {
    conv_block_wide_impl(p, blk, o, oc0, n_oc, col_len4, NCOL, 1, NULL);
}
__attribute__((noinline)) static void conv_block_wide_full4_post(const ecg_conv_params *p, const int16_t *blk,
                                                                 int8_t *o, int32_t oc0, int32_t n_oc, int32_t col_len4) {
    conv_block_wide_impl(p, blk, o, oc0, n_oc, col_len4, NCOL, 1, p->post_lut);
}
__attribute__((noinline)) static void conv_block_wide_any(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                          int32_t oc0, int32_t n_oc, int32_t col_len4, int32_t ncols) {
    conv_block_wide_impl(p, blk, o, oc0, n_oc, col_len4, ncols, p->act_min == -128 && p->act_max == 127,
                         p->post_lut);
}
static inline void conv_block_wide(const ecg_conv_params *p, const int16_t *blk, int8_t *o, int32_t oc0,
                                   int32_t n_oc, int32_t col_len4, int32_t ncols) {
    if (ncols == NCOL && p->act_min == -128 && p->act_max == 127) {
        if (p->post_lut) conv_block_wide_full4_post(p, blk, o, oc0, n_oc, col_len4);
        else conv_block_wide_full4(p, blk, o, oc0, n_oc, col_len4);
    } else {
        conv_block_wide_any(p, blk, o, oc0, n_oc, col_len4, ncols);
    }
}

/* 1x1 convolution, stride 1, no padding, channels a multiple of 4: the NCOL columns are consecutive
 * pixels, widened (input offset added) straight into the interleaved block without per-tap indexing */
static void widen_1x1(const int8_t *src, int32_t in_c, int32_t ncols, uint32_t off2, int16_t *blk) {
    uint32_t *dst = (uint32_t *)blk;
    for (int32_t j = 0; j < NCOL; ++j) {
        widen_run(src + (size_t)(j < ncols ? j : 0) * in_c, in_c, off2, dst + 2 * j);
    }
}

/* 4 columns x 1 output channel: per 4 filter taps one word load + two SXTB16, 8 SMLAD */
void ecg_conv2d_opt(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t fic = p->filter_in_c;
    const int32_t groups = p->in_c / fic;
    const int32_t per_group = p->out_c / groups;
    const int32_t col_len = p->k_h * p->k_w * fic;
    const int32_t col_len4 = (col_len + 3) & ~3;
    const int32_t n_pos = p->out_h * p->out_w;
    int16_t *blk = (int16_t *)p->col_buf;
    if (p->wide && groups == 1 && p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
        p->pad_h == 0 && p->pad_w == 0 && (p->in_c & 3) == 0 && p->in_h == p->out_h && p->in_w == p->out_w) {
        const uint32_t off2 = ((uint32_t)(uint16_t)p->in_offset) * 0x10001u;
        for (int32_t pos = 0; pos < n_pos; pos += NCOL) {
            const int32_t ncols = n_pos - pos < NCOL ? n_pos - pos : NCOL;
            widen_1x1(in + (size_t)pos * p->in_c, p->in_c, ncols, off2, blk);
            conv_block_wide(p, blk, out + (size_t)pos * p->out_c, 0, p->out_c, col_len4, ncols);
        }
        return;
    }
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t oc0 = g * per_group, c0 = g * fic;
        for (int32_t pos = 0; pos < n_pos; pos += NCOL) {
            const int32_t ncols = n_pos - pos < NCOL ? n_pos - pos : NCOL;
            for (int32_t j = 0; j < NCOL; ++j) {
                const int32_t q = pos + (j < ncols ? j : 0);   /* short block: repeat a column */
                im2col(p, in, q % p->out_w, q / p->out_w, c0, blk, j, col_len4);
            }
            if (p->wide)
                conv_block_wide(p, blk, out + (size_t)pos * p->out_c, oc0, per_group, col_len4, ncols);
            else
                conv_block(p, blk, out + (size_t)pos * p->out_c, oc0, per_group, col_len, col_len4, ncols);
        }
    }
}
#endif

#if defined(ECG_OPTIMIZED)
/* Elementwise ops: same integer formulas as the reference kernels, without 4-D index arithmetic. */

/* y = requant(b + x * w) over a strided stream, for full-range outputs (no fused activation) with a
 * right-shift-only multiplier: the common case of per-channel affines. Small function, so every
 * value stays in a register. */
__attribute__((noinline)) static void affine_stream(const int8_t *src, int8_t *dst, int32_t n, int32_t in_stride,
                                                    int32_t out_stride, int32_t w, int32_t b, int32_t mult,
                                                    int32_t right, int32_t oo) {
    const int32_t rbias = rq_fast_make(mult, -right, oo).rbias, b2 = 2 * b, w2 = 2 * w;
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP)
    /* per element: LDRSB, MLA, SMMLAR, ADD (sign), ASR, SSAT, STRB, index step; two per loop pass */
    if (n >= 2 && in_stride == out_stride) {
        const int32_t end = (n >> 1) * 2 * in_stride;
        int32_t k = 0, x, y;
        __asm__ volatile(
            "1:\n\t"
            "ldrsb %[x], [%[s], %[k]]\n\t"
            "mla %[x], %[w2], %[x], %[b2]\n\t"
            "smmlar %[y], %[x], %[m], %[rb]\n\t"
            "add %[y], %[y], %[x], asr #31\n\t"
            "asr %[y], %[y], %[r]\n\t"
            "ssat %[y], #8, %[y]\n\t"
            "strb %[y], [%[d], %[k]]\n\t"
            "add %[k], %[k], %[st]\n\t"
            "ldrsb %[x], [%[s], %[k]]\n\t"
            "mla %[x], %[w2], %[x], %[b2]\n\t"
            "smmlar %[y], %[x], %[m], %[rb]\n\t"
            "add %[y], %[y], %[x], asr #31\n\t"
            "asr %[y], %[y], %[r]\n\t"
            "ssat %[y], #8, %[y]\n\t"
            "strb %[y], [%[d], %[k]]\n\t"
            "add %[k], %[k], %[st]\n\t"
            "cmp %[k], %[e]\n\t"
            "bne 1b\n\t"
            : [k] "+r"(k), [x] "=&r"(x), [y] "=&r"(y)
            : [s] "r"(src), [d] "r"(dst), [st] "r"(in_stride), [e] "r"(end), [w2] "r"(w2), [b2] "r"(b2),
              [m] "r"(mult), [rb] "r"(rbias), [r] "r"(right)
            : "cc", "memory");
        i = (n >> 1) << 1;
        src += end;
        dst += end;
    }
#endif
    for (; i + 2 <= n; i += 2, src += 2 * in_stride, dst += 2 * out_stride) {
        const int32_t x0 = src[0], x1 = src[in_stride];
        const int32_t r0 = rq_fast(b2 + x0 * w2, mult, right, rbias), r1 = rq_fast(b2 + x1 * w2, mult, right, rbias);
        dst[0] = (int8_t)SAT8(r0);
        dst[out_stride] = (int8_t)SAT8(r1);
    }
    for (; i < n; ++i, src += in_stride, dst += out_stride) *dst = (int8_t)SAT8(rq_fast(b2 + *src * w2, mult, right, rbias));
}

/* full-range output and a multiplier the fast requantiser takes; |b| + 255 * |w| well below 2^29 */
static int affine_ok(ecg_rq rq, int32_t lo, int32_t hi) {
    return rq.left == 0 && rq.right >= 1 && rq.right <= 22 && lo == -128 && hi == 127;
}
static int affine_small(int32_t b, int32_t w) {
    return b > -(1 << 28) && b < (1 << 28) && w > -(1 << 16) && w < (1 << 16);
}

void ecg_lut_opt(const int8_t *lut, int32_t size, const int8_t *in, int8_t *out) {
    const uint8_t *t = (const uint8_t *)lut + 128;   /* index by the signed value */
    int32_t i = 0;
    for (; i + 4 <= size; i += 4) {
        const int8_t a = in[i], b = in[i + 1], c = in[i + 2], d = in[i + 3];
        out[i] = (int8_t)t[a]; out[i + 1] = (int8_t)t[b]; out[i + 2] = (int8_t)t[c]; out[i + 3] = (int8_t)t[d];
    }
    for (; i < size; ++i) out[i] = (int8_t)t[in[i]];
}

/* parameters copied to locals: stores through int8_t pointers would otherwise force reloads */
#define ELEMENTWISE_LOCALS                                                                     \
    const int32_t off1 = p->in1_offset, off2 = p->in2_offset, oo = p->out_offset;              \
    const int32_t lo = p->act_min, hi = p->act_max
#define MUL_Q(x, y) ((int8_t)ecg_clamp(ecg_rq_apply(((x) + off1) * ((y) + off2), rq) + oo, lo, hi))
#define ADD_Q(x, y) ((int8_t)ecg_clamp(ecg_rq_apply(t1[x] + t2[y], rq) + oo, lo, hi))

/* Broadcast shapes the models use: flat, or one operand repeated along all but the last dim. */
static int contiguous(const int32_t *strides, const int32_t *dims) {
    int32_t acc = 1;
    for (int d = 3; d >= 0; --d) {
        if (dims[d] != 1 && strides[d] != acc) return 0;
        acc *= dims[d];
    }
    return 1;
}
static int channel_vector(const int32_t *strides, const int32_t *dims) {
    return strides[3] == 1 && (dims[0] == 1 || strides[0] == 0) && (dims[1] == 1 || strides[1] == 0) &&
           (dims[2] == 1 || strides[2] == 0);
}
static int per_channel_b(const ecg_binary_params *p) {
    return contiguous(p->in1_strides, p->out_dims) && channel_vector(p->in2_strides, p->out_dims);
}
static int per_channel_a(const ecg_binary_params *p) {
    return contiguous(p->in2_strides, p->out_dims) && channel_vector(p->in1_strides, p->out_dims);
}

void ecg_mul_opt(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    ELEMENTWISE_LOCALS;
    const ecg_rq rq = ecg_rq_make(p->mult, p->shift);
    const int32_t size = p->size;
    if (p->flat) {
        for (int32_t i = 0; i < size; ++i) out[i] = MUL_Q(a[i], b[i]);
    } else if (per_channel_b(p)) {
        const int32_t c = p->out_dims[3], rows = size / c;
        if (affine_ok(rq, lo, hi) && affine_small(off1 * 255, 255)) {
            for (int32_t k = 0; k < c; ++k) {   /* (a + off1) * m = a * m + off1 * m, m per channel */
                const int32_t m = b[k] + off2;
                affine_stream(a + k, out + k, rows, c, c, m, off1 * m, rq.mult, rq.right, oo);
            }
            return;
        }
        for (int32_t r = 0; r < rows; ++r, out += c, a += c)
            for (int32_t k = 0; k < c; ++k) out[k] = MUL_Q(a[k], b[k]);
    } else if (per_channel_a(p)) {
        const int32_t c = p->out_dims[3], rows = size / c;
        for (int32_t r = 0; r < rows; ++r, out += c, b += c)
            for (int32_t k = 0; k < c; ++k) out[k] = MUL_Q(a[k], b[k]);
    } else {
        ecg_mul_ref(p, a, b, out);
    }
}


__attribute__((noinline)) static void add_stream(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                                                 const int32_t *t1, const int32_t *t2, int32_t mult,
                                                 int32_t right, int32_t oo) {
    /* table entries are (x - zp) << 20 rescaled by at most 1/2: |t1 + t2| < 2^28, doubling is safe */
    const int32_t rbias = rq_fast_make(mult, -right, oo).rbias;
    int32_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const int32_t s0 = t1[a[i]] + t2[b[i]], s1 = t1[a[i + 1]] + t2[b[i + 1]];
        const int32_t r0 = rq_fast(s0 + s0, mult, right, rbias), r1 = rq_fast(s1 + s1, mult, right, rbias);
        out[i] = (int8_t)SAT8(r0);
        out[i + 1] = (int8_t)SAT8(r1);
    }
    for (; i < n; ++i) {
        const int32_t s0 = t1[a[i]] + t2[b[i]];
        out[i] = (int8_t)SAT8(rq_fast(s0 + s0, mult, right, rbias));
    }
}

void ecg_add_opt(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    ELEMENTWISE_LOCALS;
    (void)off1; (void)off2;
    const ecg_rq rq = ecg_rq_make(p->out_mult, p->out_shift);
    const int32_t *t1 = p->lut1 + 128, *t2 = p->lut2 + 128;
    const int32_t size = p->size;
    if (p->flat && p->pair) {
        const uint8_t *ua = (const uint8_t *)a, *ub = (const uint8_t *)b;
        const int8_t *pair = p->pair;
        int32_t i = 0;
        for (; i + 2 <= size; i += 2) {
            const int8_t y0 = pair[ua[i] | (ub[i] << 8)], y1 = pair[ua[i + 1] | (ub[i + 1] << 8)];
            out[i] = y0;
            out[i + 1] = y1;
        }
        if (i < size) out[i] = pair[ua[i] | (ub[i] << 8)];
    } else if (p->flat && affine_ok(rq, lo, hi)) {
        add_stream(a, b, out, size, t1, t2, rq.mult, rq.right, oo);
    } else if (p->flat) {
        for (int32_t i = 0; i < size; ++i) out[i] = ADD_Q(a[i], b[i]);
    } else if (per_channel_b(p)) {
        const int32_t c = p->out_dims[3], rows = size / c;
        for (int32_t r = 0; r < rows; ++r, out += c, a += c)
            for (int32_t k = 0; k < c; ++k) out[k] = ADD_Q(a[k], b[k]);
    } else {
        ecg_add_ref(p, a, b, out);
    }
}

/* word-wise copy and fill (newlib-nano's memcpy/memset go byte by byte) */
static void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32_t a = load32(src + i), b = load32(src + i + 4);
        memcpy(dst + i, &a, 4);
        memcpy(dst + i + 4, &b, 4);
    }
    for (; i < n; ++i) dst[i] = src[i];
}
static void fill_bytes(int8_t *dst, int8_t value, int32_t n) {
    const uint32_t v = (uint32_t)(uint8_t)value * 0x01010101u;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) memcpy(dst + i, &v, 4);
    for (; i < n; ++i) dst[i] = value;
}

void ecg_pad_opt(const ecg_pad_params *p, const int8_t *in, int8_t *out) {
    const int32_t oc = p->out_dims[3], ic = p->in_dims[3], before = p->pad_before[3];
    const int32_t after = oc - before - ic;
    const int8_t pv = p->pad_value;
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0)
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1) {
            const int32_t i0 = d0 - p->pad_before[0], i1 = d1 - p->pad_before[1];
            const int32_t w = p->out_dims[2];
            if (i0 < 0 || i0 >= p->in_dims[0] || i1 < 0 || i1 >= p->in_dims[1]) {
                fill_bytes(out, pv, w * oc);
                out += (size_t)w * oc;
                continue;
            }
            const int32_t lead = p->pad_before[2], n_in = p->in_dims[2], trail = w - lead - n_in;
            const int8_t *src = in + ((size_t)i0 * p->in_dims[1] + i1) * n_in * ic;
            fill_bytes(out, pv, lead * oc);
            out += (size_t)lead * oc;
            if (before == 0 && after == 0) {   /* no channel padding: the row is one contiguous copy */
                copy_bytes(out, src, n_in * ic);
                out += (size_t)n_in * ic;
            } else {
                for (int32_t x = 0; x < n_in; ++x, src += ic, out += oc) {
                    fill_bytes(out, pv, before);
                    copy_bytes(out + before, src, ic);
                    fill_bytes(out + before + ic, pv, after);
                }
            }
            fill_bytes(out, pv, trail * oc);
            out += (size_t)trail * oc;
        }
}

/* bytewise signed max of four int8 lanes: SSUB8 sets GE where a >= b, SEL takes those lanes of a */
static inline uint32_t max4_s8(uint32_t a, uint32_t b) {
#if defined(__ARM_FEATURE_DSP)
    (void)__ssub8(a, b);
    return __sel(a, b);
#else
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        const int8_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << i;
    }
    return r;
#endif
}

void ecg_maxpool_opt(const ecg_pool_params *p, const int8_t *in, int8_t *out) {
    const int32_t c = p->channels, lo = p->act_min, hi = p->act_max;
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox, out += c) {
            const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
            const int32_t ya = y0 < 0 ? 0 : y0, yb = y0 + p->f_h > p->in_h ? p->in_h : y0 + p->f_h;
            const int32_t xa = x0 < 0 ? 0 : x0, xb = x0 + p->f_w > p->in_w ? p->in_w : x0 + p->f_w;
            if (ya + 1 == yb && xa + 2 == xb) {   /* the 1x2 window of the shortcut pools */
                const int8_t *s0 = in + ((size_t)ya * p->in_w + xa) * c, *s1 = s0 + c;
                int32_t k = 0;
                if (lo == -128 && hi == 127)
                    for (; k + 4 <= c; k += 4) {
                        const uint32_t m4 = max4_s8(load32(s0 + k), load32(s1 + k));
                        memcpy(out + k, &m4, 4);
                    }
                for (; k < c; ++k) {
                    const int32_t m = s0[k] > s1[k] ? s0[k] : s1[k];
                    out[k] = (int8_t)ecg_clamp(m, lo, hi);
                }
                continue;
            }
            for (int32_t k = 0; k < c; ++k) {
                int32_t m = -128;
                for (int32_t y = ya; y < yb; ++y)
                    for (int32_t x = xa; x < xb; ++x) {
                        const int32_t v = in[((size_t)y * p->in_w + x) * c + k];
                        if (v > m) m = v;
                    }
                out[k] = (int8_t)ecg_clamp(m, lo, hi);
            }
        }
}
#endif

#if defined(ECG_OPTIMIZED)


/* Depthwise conv, channel-outer so each channel's requantiser and taps stay in registers
 * (the converter also emits 1x1 depthwise convs for folded per-channel affines). */
void ecg_depthwise_opt(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t in_c = p->in_c, out_c = p->out_c, dm = p->depth_multiplier;
    const int32_t in_off = p->in_offset, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t kh = p->k_h, kw = p->k_w;
    for (int32_t oc = 0; oc < out_c; ++oc) {
        const int32_t ic = oc / dm;
        const ecg_rq rq = ecg_rq_make(p->mult[oc], p->shift[oc]);
        const int32_t b = p->bias ? p->bias[oc] : 0;
        const int8_t *w = p->filter + oc;
        if (kh == 1 && kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 && p->pad_w == 0) {
            const int32_t wv = w[0], n = p->out_h * p->out_w;
            const int8_t *src = in + ic;
            int8_t *dst = out + oc;
            if (affine_ok(rq, lo, hi) && affine_small(b + in_off * wv, wv)) {
                affine_stream(src, dst, n, in_c, out_c, wv, b + in_off * wv, rq.mult, rq.right, oo);
                continue;
            }
            for (int32_t i = 0; i < n; ++i, src += in_c, dst += out_c)
                *dst = (int8_t)ecg_clamp(ecg_rq_apply(b + (*src + in_off) * wv, rq) + oo, lo, hi);
            continue;
        }
        for (int32_t oy = 0; oy < p->out_h; ++oy)
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
                int32_t acc = b;
                for (int32_t ky = 0; ky < kh; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int32_t kx = 0; kx < kw; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) continue;
                        acc += (in[((size_t)iy * p->in_w + ix) * in_c + ic] + in_off) * w[((size_t)ky * kw + kx) * out_c];
                    }
                }
                out[((size_t)oy * p->out_w + ox) * out_c + oc] = (int8_t)ecg_clamp(ecg_rq_apply(acc, rq) + oo, lo, hi);
            }
    }
}
#endif

#if defined(ECG_OPTIMIZED)
/* Fully connected: int8 x int8 dot products, 4 per SXTB16 pair + 2 SMLAD; offset folded into bias_eff. */
void ecg_fc_opt(const ecg_fc_params *p, const int8_t *in, int8_t *out) {
    if (!p->bias_eff) { ecg_fc_ref(p, in, out); return; }
    const int32_t depth = p->in_depth, n_out = p->out_depth, d4 = depth & ~3;
    const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    for (int32_t bt = 0; bt < p->batches; ++bt, in += depth, out += n_out) {
        for (int32_t o = 0; o < n_out; ++o) {
            const int8_t *w = p->filter + (size_t)o * depth;
            int32_t acc = p->bias_eff[o];
            int32_t d = 0;
            for (; d < d4; d += 4) {
                const uint32_t xv = load32(in + d), wv = load32(w + d);
                acc = SMLAD(SXTB16(xv), SXTB16(wv), acc);
                acc = SMLAD(SXTB16_ROR8(xv), SXTB16_ROR8(wv), acc);
            }
            for (; d < depth; ++d) acc += in[d] * w[d];
            const int32_t c = p->per_channel ? o : 0;
            out[o] = (int8_t)ecg_clamp(ecg_rq_apply(acc, ecg_rq_make(p->mult[c], p->shift[c])) + oo, lo, hi);
        }
    }
}
#endif

#if defined(ECG_OPTIMIZED)
/* Mean: the sums four channels at a time from one word load (sign-extending byte adds), then the
 * reference kernel's finalisation for each sum. */
/* acc lanes + sign-extended bytes 1 and 3 of x */
static inline uint32_t SXTAB16_ROR8_ACC(uint32_t acc, uint32_t x) {
#if defined(__ARM_FEATURE_DSP)
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
#else
    return SXTAB16(acc, (x >> 8) | (x << 24));
#endif
}

void ecg_mean_opt(const ecg_mean_params *p, const int8_t *in, int8_t *out) {
    const int32_t n = p->reduce, inner = p->inner;
    if ((inner & 3) != 0) { ecg_mean_ref(p, in, out); return; }
    int32_t mult = p->mult, shift = p->shift;
    if (p->variant != 1) {
        int32_t s = 63 - __builtin_clzll((uint64_t)n);
        if (s > 32) s = 32;
        if (s > 31 + shift) s = 31 + shift;
        mult = (int32_t)(((int64_t)mult << s) / n);
        shift = shift - s;
    }
    for (int32_t o = 0; o < p->outer; ++o)
        for (int32_t i = 0; i < inner; i += 4) {
            const int8_t *src = in + (size_t)o * n * inner + i;
            int32_t acc[4] = {0, 0, 0, 0};
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            /* 16-bit lane sums (SXTAB16) of at most 128 rows cannot overflow; then into 32-bit sums */
            for (int32_t r0 = 0; r0 < n; r0 += 128) {
                const int32_t r1 = n - r0 < 128 ? n : r0 + 128;
                uint32_t p02 = 0, p13 = 0;
                for (int32_t r = r0; r < r1; ++r, src += inner) {
                    const uint32_t w = load32(src);
                    p02 = SXTAB16(p02, w);
                    p13 = SXTAB16_ROR8_ACC(p13, w);
                }
                s0 += (int16_t)p02; s2 += (int16_t)(p02 >> 16); s1 += (int16_t)p13; s3 += (int16_t)(p13 >> 16);
            }
            acc[0] = s0; acc[1] = s1; acc[2] = s2; acc[3] = s3;
            for (int32_t k = 0; k < 4; ++k) {
                int32_t v;
                if (p->variant == 1) {
                    v = acc[k] / n;
                } else {
                    v = ecg_mbqm(acc[k] - p->in_zp * n, mult, shift) + p->out_zp;
                }
                out[(size_t)o * inner + i + k] = (int8_t)ecg_clamp(v, -128, 127);
            }
        }
}
#endif

#if defined(ECG_OPTIMIZED)
/* out[r][c] = tables[c][in[r][c]]: the generator's per-channel tables (affine, optionally + Swish) */
void ecg_channel_lut_opt(const int8_t *tables, int32_t rows, int32_t channels, const int8_t *in, int8_t *out) {
    for (int32_t c = 0; c < channels; ++c) {
        const int8_t *t = tables + (size_t)c * 256 + 128;
        const int8_t *s = in + c;
        int8_t *d = out + c;
        int32_t r = 0;
        for (; r + 2 <= rows; r += 2, s += 2 * channels, d += 2 * channels) {
            const int8_t x0 = s[0], x1 = s[channels];
            d[0] = t[x0];
            d[channels] = t[x1];
        }
        if (r < rows) d[0] = t[s[0]];
    }
}
#endif

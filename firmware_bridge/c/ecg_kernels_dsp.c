/* Optimised INT8 convolution, DSP path (Cortex-M4/M7/M33; emulated in C on hosts): im2col of four output
 * columns into int16 (input offset added, padding as 0), the columns interleaved per 4 taps and stored
 * pair-reordered (c0,c2,c1,c3) so one SXTB16 of four filter bytes, or one LDRD of the generator's
 * widened filter, lines up with one 32-bit column load; dual 16-bit MACs (SMLAD). Integer results
 * equal the reference path. */
#include "ecg_opt.h"

#if defined(ECG_OPTIMIZED) && defined(ECG_KERNELS_DSP)

/* Widen n bytes (n a multiple of 4) of one column into its slot of an interleaved block of nc columns
 * (nc = 4, or 2 for the channel-pair kernel): each 4 input bytes become two int16 pairs (c0,c2),(c1,c3)
 * with the input offset added; consecutive groups of 4 are 2 * nc words apart. */
#define WIDEN16(STRIDE)                                                               \
        __asm__ volatile(                                                             \
            "1:\n\t"                                                                  \
            "ldm %[s]!, {r8, r9, r10, r11}\n\t"                                       \
            "sxtab16 %[a], %[off], r8\n\t" "sxtab16 %[b], %[off], r8, ror #8\n\t"     \
            "sxtab16 %[c], %[off], r9\n\t" "sxtab16 %[d], %[off], r9, ror #8\n\t"     \
            "strd %[a], %[b], [%[dst]], #" STRIDE "\n\t"                              \
            "strd %[c], %[d], [%[dst]], #" STRIDE "\n\t"                              \
            "sxtab16 %[a], %[off], r10\n\t" "sxtab16 %[b], %[off], r10, ror #8\n\t"   \
            "sxtab16 %[c], %[off], r11\n\t" "sxtab16 %[d], %[off], r11, ror #8\n\t"   \
            "strd %[a], %[b], [%[dst]], #" STRIDE "\n\t"                              \
            "strd %[c], %[d], [%[dst]], #" STRIDE "\n\t"                              \
            "cmp %[s], %[e]\n\t"                                                      \
            "bne 1b\n\t"                                                              \
            : [s] "+r"(src), [dst] "+r"(dst), [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d), \
              "=&r"(s0), "=&r"(s1), "=&r"(s2), "=&r"(s3)                              \
            : [off] "r"(off2), [e] "r"(end) : "cc", "memory")
#define WIDEN8(STRIDE)                                                                \
        __asm__ volatile(                                                             \
            "1:\n\t"                                                                  \
            "ldr %[v0], [%[s]], #4\n\t" "ldr %[v1], [%[s]], #4\n\t"                   \
            "sxtab16 %[a], %[off], %[v0]\n\t" "sxtab16 %[b], %[off], %[v0], ror #8\n\t" \
            "sxtab16 %[c], %[off], %[v1]\n\t" "sxtab16 %[d], %[off], %[v1], ror #8\n\t" \
            "strd %[a], %[b], [%[dst]], #" STRIDE "\n\t"                              \
            "strd %[c], %[d], [%[dst]], #" STRIDE "\n\t"                              \
            "cmp %[s], %[e]\n\t"                                                      \
            "bne 1b\n\t"                                                              \
            : [s] "+r"(src), [dst] "+r"(dst), [v0] "=&r"(v0), [v1] "=&r"(v1), [a] "=&r"(a), [b] "=&r"(b), \
              [c] "=&r"(c), [d] "=&r"(d)                                              \
            : [off] "r"(off2), [e] "r"(end) : "cc", "memory")

static inline void widen_run(const int8_t *src, int32_t n, uint32_t off2, uint32_t *dst, int32_t nc) {
#if defined(__ARM_FEATURE_DSP)
    const int8_t *end = src + n;
    uint32_t v0, v1, a, b, c, d;
    if ((n & 15) == 0 && n && ((uintptr_t)src & 3) == 0) {
        /* word-aligned source, 16 bytes a pass: one LDM of four words, 8 SXTAB16, 4 STRD */
        register uint32_t s0 __asm__("r8"), s1 __asm__("r9"), s2 __asm__("r10"), s3 __asm__("r11");
        if (nc == 4) WIDEN16("32");
        else WIDEN16("16");
        return;
    }
    if ((n & 7) == 0 && n) {
        if (nc == 4) WIDEN8("32");
        else WIDEN8("16");
        return;
    }
    for (; src < end; src += 4, dst += 2 * nc) {
        const uint32_t x = load32(src);
        dst[0] = SXTAB16(off2, x);
        dst[1] = SXTAB16(off2, (x >> 8) | (x << 24));
    }
#else
    for (int32_t c = 0; c < n; c += 4, dst += 2 * nc) {
        const uint32_t x = load32(src + c);
        dst[0] = SXTAB16(off2, x);
        dst[1] = SXTAB16(off2, (x >> 8) | (x << 24));
    }
#endif
}
#undef WIDEN16
#undef WIDEN8

static inline void zero_run(int32_t n, uint32_t *dst, int32_t nc) {   /* n a multiple of 4 */
    for (int32_t c = 0; c < n; c += 4, dst += 2 * nc) dst[0] = dst[1] = 0;
}

/* im2col of one output column into slot j of an interleaved block: element i of column j lives at
 * int16 index ((i/4)*NCOL + j)*4 + pair_slot(i%4) */
static void im2col(const ecg_conv_params *p, const int8_t *in, int32_t ox, int32_t oy, int32_t c0,
                   int16_t *blk, int32_t j, int32_t col_len4, int32_t nc) {
    if ((p->filter_in_c & 3) == 0) {
        /* whole taps of fic (a multiple of 4) channels: widened runs, zero runs in the padding */
        const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w, fic = p->filter_in_c;
        const uint32_t off2 = ((uint32_t)(uint16_t)p->in_offset) * 0x10001u;
        const int contiguous = fic == p->in_c && p->dil_w == 1;
        uint32_t *dst = (uint32_t *)(blk + j * 4);
        for (int32_t ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) {
                zero_run(p->k_w * fic, dst, nc);
                dst += (size_t)p->k_w * fic / 4 * 2 * nc;
                continue;
            }
            const int8_t *row = in + (size_t)iy * p->in_w * p->in_c + c0;
            if (contiguous && ix0 >= 0 && ix0 + p->k_w <= p->in_w) {   /* the whole kernel row inside */
                widen_run(row + (size_t)ix0 * p->in_c, p->k_w * fic, off2, dst, nc);
                dst += (size_t)p->k_w * fic / 4 * 2 * nc;
                continue;
            }
            for (int32_t kx = 0; kx < p->k_w; ++kx, dst += (size_t)fic / 4 * 2 * nc) {
                const int32_t ix = ix0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) zero_run(fic, dst, nc);
                else widen_run(row + (size_t)ix * p->in_c, fic, off2, dst, nc);
            }
        }
        return;
    }
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int32_t fic = p->filter_in_c;
    /* taps along x are contiguous in memory when the conv is not grouped: copy whole runs */
    const int32_t run_taps = (fic == p->in_c && p->dil_w == 1) ? p->k_w : 1;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->in_offset) * 0x10001u;
    int32_t i = 0;
#define AT(i) (blk[(((i) >> 2) * nc + j) * 4 + slot((i) & 3)])
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; kx += run_taps) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int32_t run = run_taps * fic;
            const int32_t last_ix = ix + (run_taps - 1) * p->dil_w;
            if (iy >= 0 && iy < p->in_h && ix >= 0 && last_ix < p->in_w && (run & 3) == 0 && (i & 3) == 0) {
                const int8_t *src = in + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
                widen_run(src, run, off2, (uint32_t *)(blk + ((i >> 2) * nc + j) * 4), nc);
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

static inline int8_t requant(int32_t acc, ecg_rq rq, int32_t out_offset, int32_t lo, int32_t hi, const int8_t *post) {
    const int32_t v = ecg_clamp(ecg_rq_apply(acc, rq) + out_offset, lo, hi);
    return (int8_t)(post ? post[v] : v);
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
    const int8_t *post = p->post_lut;
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
                if (post) {
                    y0 = post[y0]; y1 = post[y1]; y2 = post[y2]; y3 = post[y3];
                }
                o[oc] = (int8_t)y0;
                if (ncols > 1) o[out_c + oc] = (int8_t)y1;
                if (ncols > 2) o[2 * out_c + oc] = (int8_t)y2;
                if (ncols > 3) o[3 * out_c + oc] = (int8_t)y3;
                continue;
            }
            if (full && ncols == NCOL && !post) {
                requant4_full(a0, a1, a2, a3, o + oc, out_c, p->mult[oc], sh, oo);
                continue;
            }
            const ecg_rq rq = ecg_rq_make(p->mult[oc], p->shift[oc]);   /* after the loop: frees registers */
            o[oc] = requant(a0, rq, oo, lo, hi, post);
            if (ncols > 1) o[out_c + oc] = requant(a1, rq, oo, lo, hi, post);
            if (ncols > 2) o[2 * out_c + oc] = requant(a2, rq, oo, lo, hi, post);
            if (ncols > 3) o[3 * out_c + oc] = requant(a3, rq, oo, lo, hi, post);
        }
}

/* Wide path: the generator's packed channel records (kernel_params._conv_wide): per output channel the
 * doubled bias four times, the doubled int16 filter (same pair order as the im2col columns, two taps a
 * word) and the fast requantiser's (multiplier, right shift, rounding bias). */
#define WIDE_HEAD 4
#define WIDE_TAIL 3

/* any block (partial, clamped): C over the records (the DSP instructions, or their emulation on hosts) */
static inline __attribute__((always_inline)) void conv_block_wide_impl(
        const ecg_conv_params *p, const int16_t *blk, int8_t *o, int32_t oc0, int32_t n_oc, int32_t col_len4,
        int32_t ncols, const int full, const int8_t *post) {
    const int32_t out_c = p->out_c, lo = p->act_min, hi = p->act_max;
    const int32_t n4 = col_len4 >> 2, rec = WIDE_HEAD + 2 * n4 + WIDE_TAIL;
    const int32_t *r = p->wide + (size_t)oc0 * rec;
    o += oc0;
    for (int32_t k = 0; k < n_oc; ++k, r += rec, ++o) {
        const int32_t b = r[0];
        int32_t a0 = b, a1 = b, a2 = b, a3 = b;
        const uint32_t *x = (const uint32_t *)blk, *w = (const uint32_t *)(r + WIDE_HEAD);
        for (int32_t t = 0; t < n4; ++t, w += 2, x += 8) {
            const uint32_t w02 = w[0], w13 = w[1];
            a0 = SMLAD(w02, x[0], a0); a0 = SMLAD(w13, x[1], a0);
            a1 = SMLAD(w02, x[2], a1); a1 = SMLAD(w13, x[3], a1);
            a2 = SMLAD(w02, x[4], a2); a2 = SMLAD(w13, x[5], a2);
            a3 = SMLAD(w02, x[6], a3); a3 = SMLAD(w13, x[7], a3);
        }
        const int32_t *q = r + WIDE_HEAD + 2 * n4;
        const int32_t m = q[0], rs = q[1], rb = q[2];
        int32_t y0 = rq_fast(a0, m, rs, rb), y1 = rq_fast(a1, m, rs, rb);
        int32_t y2 = rq_fast(a2, m, rs, rb), y3 = rq_fast(a3, m, rs, rb);
        if (full) {
            y0 = SAT8(y0); y1 = SAT8(y1); y2 = SAT8(y2); y3 = SAT8(y3);
        } else {
            y0 = ecg_clamp(y0, lo, hi); y1 = ecg_clamp(y1, lo, hi);
            y2 = ecg_clamp(y2, lo, hi); y3 = ecg_clamp(y3, lo, hi);
        }
        if (post) {
            y0 = post[y0]; y1 = post[y1]; y2 = post[y2]; y3 = post[y3];
        }
        o[0] = (int8_t)y0;
        if (ncols > 1) o[out_c] = (int8_t)y1;
        if (ncols > 2) o[2 * out_c] = (int8_t)y2;
        if (ncols > 3) o[3 * out_c] = (int8_t)y3;
    }
}

__attribute__((noinline)) static void conv_block_wide_any(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                          int32_t oc0, int32_t n_oc, int32_t col_len4, int32_t ncols) {
    conv_block_wide_impl(p, blk, o, oc0, n_oc, col_len4, ncols, p->act_min == -128 && p->act_max == 127,
                         p->post_lut);
}

#if defined(__ARM_FEATURE_DSP)
/* A whole block of four columns, full-range outputs, every channel of the group in one assembly loop:
 * one pointer walks the packed records. Per channel: LDM of the four accumulators' bias; per 4 taps
 * one LDRD (filter pair words), two LDM of four column words (r8-r11) and 8 SMLAD; LDM of the
 * requantiser; per output SMMLAR, ADD (sign), ASR, SSAT [, the fused table], STRB. The output pointer,
 * its stride, the table, the block base and the tap count live on the stack. */
struct wide_state {
    int8_t *o;              /* +0: this channel's first output */
    int32_t out_c;          /* +4 */
    const int8_t *post;     /* +8: fused table (index -128..127) or NULL */
    const int16_t *blk;     /* +12 */
    int32_t groups;         /* +16: passes of the unrolled tap loop */
    int32_t n_oc;           /* +20: channels left */
};

#define WT4                                                          \
    "ldrd r4, r5, [r12], #8\n\t"                                     \
    "ldm r7!, {r8, r9, r10, r11}\n\t"                                \
    "smlad r0, r4, r8, r0\n\t" "smlad r0, r5, r9, r0\n\t"            \
    "smlad r1, r4, r10, r1\n\t" "smlad r1, r5, r11, r1\n\t"          \
    "ldm r7!, {r8, r9, r10, r11}\n\t"                                \
    "smlad r2, r4, r8, r2\n\t" "smlad r2, r5, r9, r2\n\t"            \
    "smlad r3, r4, r10, r3\n\t" "smlad r3, r5, r11, r3\n\t"

/* after the taps: the requantiser's triple, four outputs requantised (SMMLAR, sign, ASR, SSAT), the fused
 * table, four stores at stride out_c, the output pointer advanced to the next channel */
#define WIDE_EPILOGUE(POST)                                                                             \
        "ldm r12!, {r4, r5, r7}\n\t"                        /* multiplier, right shift, rounding bias */ \
        "smmlar r8, r0, r4, r7\n\t" "add r8, r8, r0, asr #31\n\t" "asr r8, r8, r5\n\t" "ssat r8, #8, r8\n\t" \
        "smmlar r9, r1, r4, r7\n\t" "add r9, r9, r1, asr #31\n\t" "asr r9, r9, r5\n\t" "ssat r9, #8, r9\n\t" \
        "smmlar r10, r2, r4, r7\n\t" "add r10, r10, r2, asr #31\n\t" "asr r10, r10, r5\n\t" "ssat r10, #8, r10\n\t" \
        "smmlar r11, r3, r4, r7\n\t" "add r11, r11, r3, asr #31\n\t" "asr r11, r11, r5\n\t" "ssat r11, #8, r11\n\t" \
        POST                                                                                            \
        "ldrd r4, r5, [r6]\n\t"                             /* output, its stride */                    \
        "strb r8, [r4]\n\t" "strb r9, [r4, r5]\n\t" "strb r10, [r4, r5, lsl #1]\n\t"                    \
        "add r5, r5, r5, lsl #1\n\t" "strb r11, [r4, r5]\n\t"                                           \
        "adds r4, #1\n\t" "str r4, [r6]\n\t"

#define WIDE_BLOCK_ASM(TAPLOOP, POST)                                                                   \
    __asm__ volatile(                                                                                   \
        "push {r4-r11}\n\t"                                                                             \
        "mov r6, %[st]\n"                                                                               \
        "3:\n\t"                                                                                        \
        "ldm r12!, {r0, r1, r2, r3}\n\t"                    /* biases */                                \
        "ldr r7, [r6, #12]\n\t"                             /* the block's columns */                   \
        "ldr lr, [r6, #16]\n"                                                                           \
        "2:\n\t"                                                                                        \
        TAPLOOP                                                                                         \
        "subs lr, lr, #1\n\t"                                                                           \
        "bne 2b\n\t"                                                                                    \
        WIDE_EPILOGUE(POST)                                                                             \
        "ldr r4, [r6, #20]\n\t" "subs r4, #1\n\t" "str r4, [r6, #20]\n\t"                               \
        "bne 3b\n\t"                                                                                    \
        "pop {r4-r11}\n"                                                                                \
        : "+r"(wp)                                                                                      \
        : [st] "r"(st)                                                                                  \
        : "r0", "r1", "r2", "r3", "lr", "cc", "memory")

#define WIDE_POST                                                                         \
    "ldr r4, [r6, #8]\n\t"                                                                \
    "ldrsb r8, [r4, r8]\n\t" "ldrsb r9, [r4, r9]\n\t" "ldrsb r10, [r4, r10]\n\t" "ldrsb r11, [r4, r11]\n\t"

/* 16 taps (1x1 convs of 16 input channels, the 1->16 stem): the tap loop fully unrolled, so lr holds the
 * channel count instead of the tap passes */
#define WIDE16_ASM(POST)                                                                                \
    __asm__ volatile(                                                                                   \
        "push {r4-r11}\n\t"                                                                             \
        "mov r6, %[st]\n\t"                                                                             \
        "ldr lr, [r6, #20]\n"                                                                           \
        "3:\n\t"                                                                                        \
        "ldm r12!, {r0, r1, r2, r3}\n\t"                                                                \
        "ldr r7, [r6, #12]\n\t"                                                                         \
        WT4 WT4 WT4 WT4                                                                                 \
        WIDE_EPILOGUE(POST)                                                                             \
        "subs lr, lr, #1\n\t"                                                                           \
        "bne 3b\n\t"                                                                                    \
        "pop {r4-r11}\n"                                                                                \
        : "+r"(wp)                                                                                      \
        : [st] "r"(st)                                                                                  \
        : "r0", "r1", "r2", "r3", "lr", "cc", "memory")

__attribute__((noinline)) static void conv_block_wide_full4(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                            int32_t oc0, int32_t n_oc, int32_t col_len4) {
    if (n_oc <= 0) return;
    if (col_len4 == 16) {
        struct wide_state state = {o + oc0, p->out_c, p->post_lut, blk, 1, n_oc};
        const struct wide_state *st = &state;
        register const int32_t *wp __asm__("r12") = p->wide + (size_t)oc0 * (WIDE_HEAD + 8 + WIDE_TAIL);
        if (p->post_lut) WIDE16_ASM(WIDE_POST);
        else WIDE16_ASM("");
        return;
    }
    const int32_t n4 = col_len4 >> 2, rec = WIDE_HEAD + 2 * n4 + WIDE_TAIL;
    const int unroll = (n4 & 3) == 0 ? 4 : ((n4 & 1) == 0 ? 2 : 1);
    struct wide_state state = {o + oc0, p->out_c, p->post_lut, blk, n4 / unroll, n_oc};
    const struct wide_state *st = &state;
    register const int32_t *wp __asm__("r12") = p->wide + (size_t)oc0 * rec;
    if (p->post_lut) {
        if (unroll == 4) WIDE_BLOCK_ASM(WT4 WT4 WT4 WT4, WIDE_POST);
        else if (unroll == 2) WIDE_BLOCK_ASM(WT4 WT4, WIDE_POST);
        else WIDE_BLOCK_ASM(WT4, WIDE_POST);
    } else {
        if (unroll == 4) WIDE_BLOCK_ASM(WT4 WT4 WT4 WT4, "");
        else if (unroll == 2) WIDE_BLOCK_ASM(WT4 WT4, "");
        else WIDE_BLOCK_ASM(WT4, "");
    }
}
#undef WT4
#undef WIDE_EPILOGUE
#undef WIDE_BLOCK_ASM
#undef WIDE16_ASM
#undef WIDE_POST
#endif

static inline void conv_block_wide(const ecg_conv_params *p, const int16_t *blk, int8_t *o, int32_t oc0,
                                   int32_t n_oc, int32_t col_len4, int32_t ncols) {
#if defined(__ARM_FEATURE_DSP)
    if (ncols == NCOL && p->act_min == -128 && p->act_max == 127) {
        conv_block_wide_full4(p, blk, o, oc0, n_oc, col_len4);
        return;
    }
#endif
    conv_block_wide_any(p, blk, o, oc0, n_oc, col_len4, ncols);
}

/* Channel-pair path (longer columns): the generator's pair records (kernel_params._conv_wide): per two
 * output channels A, B of a group {bias A, A, B, B (doubled); per 4 taps A (w02, w13), B (w02, w13);
 * A (multiplier, right shift, rounding bias), B (...)}, over blocks of two columns. Per 4 taps: one LDM
 * of the four filter words, one LDM of the two columns' four words, 8 SMLAD (16 MACs, 10 instructions). */
#define PAIR_HEAD 4
#define PAIR_TAIL 6

/* any block (one or two columns, clamped): C over the pair records */
__attribute__((noinline)) static void conv_block_pair_any(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                          int32_t oc0, int32_t n_oc, int32_t col_len4, int32_t ncols) {
    const int32_t out_c = p->out_c, lo = p->act_min, hi = p->act_max, n4 = col_len4 >> 2;
    const int32_t rec = PAIR_HEAD + 4 * n4 + PAIR_TAIL;
    const int8_t *post = p->post_lut;
    const int32_t *r = p->wide2 + (size_t)(oc0 / 2) * rec;
    for (int32_t k = 0; k < n_oc; k += 2, r += rec) {
        int32_t a0 = r[0], a1 = r[1], b0 = r[2], b1 = r[3];
        const uint32_t *x = (const uint32_t *)blk, *w = (const uint32_t *)(r + PAIR_HEAD);
        for (int32_t t = 0; t < n4; ++t, w += 4, x += 4) {
            a0 = SMLAD(w[0], x[0], a0); a0 = SMLAD(w[1], x[1], a0);
            a1 = SMLAD(w[0], x[2], a1); a1 = SMLAD(w[1], x[3], a1);
            b0 = SMLAD(w[2], x[0], b0); b0 = SMLAD(w[3], x[1], b0);
            b1 = SMLAD(w[2], x[2], b1); b1 = SMLAD(w[3], x[3], b1);
        }
        const int32_t *q = r + PAIR_HEAD + 4 * n4;
        int32_t y[4] = {rq_fast(a0, q[0], q[1], q[2]), rq_fast(a1, q[0], q[1], q[2]), rq_fast(b0, q[3], q[4], q[5]),
                        rq_fast(b1, q[3], q[4], q[5])};
        for (int i = 0; i < 4; ++i) {
            y[i] = ecg_clamp(y[i], lo, hi);
            if (post) y[i] = post[y[i]];
        }
        int8_t *oa = o + oc0 + k;
        oa[0] = (int8_t)y[0];
        oa[1] = (int8_t)y[2];
        if (ncols > 1) {
            oa[out_c] = (int8_t)y[1];
            oa[out_c + 1] = (int8_t)y[3];
        }
    }
}

#if defined(__ARM_FEATURE_DSP)
struct pair_state {
    int8_t *o;              /* +0 */
    int32_t out_c;          /* +4 */
    const int8_t *post;     /* +8 */
    const int16_t *blk;     /* +12 */
    int32_t groups;         /* +16: passes of the unrolled tap loop */
    int32_t n_pairs;        /* +20 */
};

#define PT4                                                          \
    "ldm r12!, {r4, r5, r6, r7}\n\t"                                 \
    "ldm lr!, {r8, r9, r10, r11}\n\t"                                \
    "smlad r0, r4, r8, r0\n\t" "smlad r0, r5, r9, r0\n\t"            \
    "smlad r1, r4, r10, r1\n\t" "smlad r1, r5, r11, r1\n\t"          \
    "smlad r2, r6, r8, r2\n\t" "smlad r2, r7, r9, r2\n\t"            \
    "smlad r3, r6, r10, r3\n\t" "smlad r3, r7, r11, r3\n\t"
#define PT16 PT4 PT4 PT4 PT4   /* 16 taps */

/* the whole group's channel pairs for a block of two columns, full-range outputs; the state (output,
 * stride, table, block, tap passes, pairs, the pass counter) is pushed to the stack: [sp, #0..24] */
#define PAIR_BLOCK_ASM(TAPLOOP, POST)                                                                   \
    __asm__ volatile(                                                                                   \
        "push {r4-r11}\n\t"                                                                             \
        "ldm %[st], {r4, r5, r6, r7, r8, r9}\n\t"                                                       \
        "push {r4, r5, r6, r7, r8, r9, r10}\n"                                                          \
        "3:\n\t"                                                                                        \
        "ldm r12!, {r0, r1, r2, r3}\n\t"                    /* biases A, A, B, B */                     \
        "ldr lr, [sp, #12]\n\t"                             /* the block's columns */                   \
        "ldr r8, [sp, #16]\n\t" "str r8, [sp, #24]\n"                                                   \
        "2:\n\t"                                                                                        \
        TAPLOOP                                                                                         \
        "ldr r8, [sp, #24]\n\t" "subs r8, #1\n\t" "str r8, [sp, #24]\n\t"                               \
        "bne 2b\n\t"                                                                                    \
        "ldm r12!, {r4, r5, r6, r7, r8, r9}\n\t"            /* A: mult, right, rbias; B: ... */         \
        "smmlar r10, r0, r4, r6\n\t" "add r10, r10, r0, asr #31\n\t" "asr r10, r10, r5\n\t" "ssat r10, #8, r10\n\t" \
        "smmlar r11, r1, r4, r6\n\t" "add r11, r11, r1, asr #31\n\t" "asr r11, r11, r5\n\t" "ssat r11, #8, r11\n\t" \
        "smmlar r0, r2, r7, r9\n\t" "add r0, r0, r2, asr #31\n\t" "asr r0, r0, r8\n\t" "ssat r0, #8, r0\n\t"     \
        "smmlar r1, r3, r7, r9\n\t" "add r1, r1, r3, asr #31\n\t" "asr r1, r1, r8\n\t" "ssat r1, #8, r1\n\t"     \
        POST                                                                                            \
        "ldrd r4, r5, [sp]\n\t"                             /* output, its stride */                    \
        "strb r10, [r4]\n\t" "strb r0, [r4, #1]\n\t" "strb r11, [r4, r5]\n\t"                           \
        "add r5, r4\n\t" "strb r1, [r5, #1]\n\t"                                                        \
        "adds r4, #2\n\t" "str r4, [sp]\n\t"                                                            \
        "ldr r4, [sp, #20]\n\t" "subs r4, #1\n\t" "str r4, [sp, #20]\n\t"                               \
        "bne 3b\n\t"                                                                                    \
        "add sp, #28\n\t"                                                                               \
        "pop {r4-r11}\n"                                                                                \
        : "+r"(wp)                                                                                      \
        : [st] "r"(st)                                                                                  \
        : "r0", "r1", "r2", "r3", "lr", "cc", "memory")
#define PAIR_POST                                                                         \
    "ldr r4, [sp, #8]\n\t"                                                                \
    "ldrsb r10, [r4, r10]\n\t" "ldrsb r11, [r4, r11]\n\t" "ldrsb r0, [r4, r0]\n\t" "ldrsb r1, [r4, r1]\n\t"

__attribute__((noinline)) static void conv_block_pair_full2(const ecg_conv_params *p, const int16_t *blk, int8_t *o,
                                                            int32_t oc0, int32_t n_oc, int32_t col_len4) {
    if (n_oc <= 0) return;
    const int32_t n4 = col_len4 >> 2, rec = PAIR_HEAD + 4 * n4 + PAIR_TAIL;
    /* 4-tap groups per pass of the unrolled loop: 16 (64 taps), 4 (16 taps) or 1 */
    const int unroll = (n4 & 15) == 0 ? 16 : ((n4 & 3) == 0 ? 4 : 1);
    struct pair_state state = {o + oc0, p->out_c, p->post_lut, blk, n4 / unroll, n_oc / 2};
    const struct pair_state *st = &state;
    register const int32_t *wp __asm__("r12") = p->wide2 + (size_t)(oc0 / 2) * rec;
    if (p->post_lut) {
        if (unroll == 16) PAIR_BLOCK_ASM(PT16 PT16 PT16 PT16, PAIR_POST);
        else if (unroll == 4) PAIR_BLOCK_ASM(PT16, PAIR_POST);
        else PAIR_BLOCK_ASM(PT4, PAIR_POST);
    } else {
        if (unroll == 16) PAIR_BLOCK_ASM(PT16 PT16 PT16 PT16, "");
        else if (unroll == 4) PAIR_BLOCK_ASM(PT16, "");
        else PAIR_BLOCK_ASM(PT4, "");
    }
}
#undef PT4
#undef PT16
#undef PAIR_BLOCK_ASM
#undef PAIR_POST
#endif

static inline void conv_block_pair(const ecg_conv_params *p, const int16_t *blk, int8_t *o, int32_t oc0,
                                   int32_t n_oc, int32_t col_len4, int32_t ncols) {
#if defined(__ARM_FEATURE_DSP)
    if (ncols == 2 && p->act_min == -128 && p->act_max == 127) {
        conv_block_pair_full2(p, blk, o, oc0, n_oc, col_len4);
        return;
    }
#endif
    conv_block_pair_any(p, blk, o, oc0, n_oc, col_len4, ncols);
}

/* 1x1 convolution, stride 1, no padding, channels a multiple of 4: the NCOL columns are consecutive
 * pixels, widened (input offset added) straight into the interleaved block without per-tap indexing */
static void widen_1x1(const int8_t *src, int32_t in_c, int32_t ncols, uint32_t off2, int16_t *blk) {
    uint32_t *dst = (uint32_t *)blk;
    for (int32_t j = 0; j < NCOL; ++j) {
        widen_run(src + (size_t)(j < ncols ? j : 0) * in_c, in_c, off2, dst + 2 * j, NCOL);
    }
}

/* 4 columns x 1 output channel: per 4 filter taps one word load + two SXTB16, 8 SMLAD */
void ecg_conv2d_dsp(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
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
    const int direct = groups == 1 && p->k_h == 1 && p->dil_w == 1 && (col_len & 3) == 0;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->in_offset) * 0x10001u;
    const int32_t nc = p->wide2 ? 2 : NCOL;   /* columns per block */
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t oc0 = g * per_group, c0 = g * fic;
        for (int32_t pos = 0; pos < n_pos; pos += nc) {
            const int32_t ncols = n_pos - pos < nc ? n_pos - pos : nc;
            for (int32_t j = 0; j < nc; ++j) {
                const int32_t q = pos + (j < ncols ? j : 0);   /* short block: repeat a column */
                const int32_t ox = q % p->out_w, oy = q / p->out_w;
                const int32_t ix = ox * p->stride_w - p->pad_w, iy = oy * p->stride_h - p->pad_h;
                if (direct && ix >= 0 && ix + p->k_w <= p->in_w && iy >= 0 && iy < p->in_h) {
                    /* one kernel row inside the input: the column is one contiguous run */
                    widen_run(in + ((size_t)iy * p->in_w + ix) * p->in_c, col_len, off2, (uint32_t *)(blk + j * 4),
                              nc);
                    continue;
                }
                im2col(p, in, ox, oy, c0, blk, j, col_len4, nc);
            }
            if (p->wide2)
                conv_block_pair(p, blk, out + (size_t)pos * p->out_c, oc0, per_group, col_len4, ncols);
            else if (p->wide)
                conv_block_wide(p, blk, out + (size_t)pos * p->out_c, oc0, per_group, col_len4, ncols);
            else
                conv_block(p, blk, out + (size_t)pos * p->out_c, oc0, per_group, col_len, col_len4, ncols);
        }
    }
}
#endif

/* Optimised INT8 convolution, DSP path (Cortex-M4/M7/M33; emulated in C on hosts): im2col of four output
 * columns into int16 (input offset added, padding as 0), the columns interleaved per 4 taps and stored
 * pair-reordered (c0,c2,c1,c3) so one SXTB16 of four filter bytes, or one LDRD of the generator's
 * widened filter, lines up with one 32-bit column load; dual 16-bit MACs (SMLAD). Integer results
 * equal the reference path. */
#include "ecg_opt.h"

#if defined(ECG_OPTIMIZED) && defined(ECG_KERNELS_DSP)

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

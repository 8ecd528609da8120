/* Optimised INT8 convolution, plain C path (Cortex-M0/M3: no DSP extension). im2col of four output
 * columns into int32 with the input offset added (padding 0), tap-major ([tap][column]) so one filter
 * byte and one LDM of the four columns' values feed four 32-bit multiply-accumulates (ARMv7-M
 * assembly; C elsewhere). Integer results equal the reference path. */
#include "ecg_opt.h"

#if defined(ECG_OPTIMIZED) && defined(ECG_KERNELS_C)

/* column j of the block: blk[i * NCOL + j] for tap i of the group's filter (int32, input offset added) */
static void im2col_c(const ecg_conv_params *p, const int8_t *in, int32_t ox, int32_t oy, int32_t c0,
                     int32_t *blk, int32_t j) {
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int32_t fic = p->filter_in_c, off = p->in_offset;
    int32_t *d = blk + j;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int32_t c = 0; c < fic; ++c, d += NCOL) *d = 0;
                continue;
            }
            const int8_t *src = in + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
            int32_t c = 0;
            for (; c + 2 <= fic; c += 2, d += 2 * NCOL) {
                const int32_t a = src[c], b = src[c + 1];
                d[0] = a + off;
                d[NCOL] = b + off;
            }
            if (c < fic) {
                *d = src[c] + off;
                d += NCOL;
            }
        }
    }
}

static inline int32_t store_value(int32_t acc, ecg_rq rq, int32_t oo, int32_t lo, int32_t hi, const int8_t *post) {
    const int32_t v = ecg_clamp(ecg_rq_apply(acc, rq) + oo, lo, hi);
    return post ? post[v] : v;
}

/* acc_j += sum_i w[i] * x[i * NCOL + j] over n taps. ARMv7-M: per tap one LDRSB (post-incremented), one LDM
 * of the four columns' int32 values, four MLA. */
static inline __attribute__((always_inline)) void dot4_c(const int8_t *w, const int32_t *x, int32_t n, int32_t *a0,
                                                        int32_t *a1, int32_t *a2, int32_t *a3) {
#if __ARM_ARCH >= 7 && defined(__thumb2__)
    int32_t r0 = *a0, r1 = *a1, r2 = *a2, r3 = *a3, t;
    register int32_t x0 __asm__("r8"), x1 __asm__("r9"), x2 __asm__("r10"), x3 __asm__("r11");
#define TAP_C                                                                   \
            "ldrsb %[t], [%[w]], #1\n\t"                                        \
            "ldm %[x]!, {r8, r9, r10, r11}\n\t"                                 \
            "mla %[r0], %[t], r8, %[r0]\n\t" "mla %[r1], %[t], r9, %[r1]\n\t"   \
            "mla %[r2], %[t], r10, %[r2]\n\t" "mla %[r3], %[t], r11, %[r3]\n\t"
    if (n & 1) {   /* one tap first: the loop takes two a pass */
        __asm__ volatile(TAP_C
            : [r0] "+r"(r0), [r1] "+r"(r1), [r2] "+r"(r2), [r3] "+r"(r3), [t] "=&r"(t), [w] "+r"(w), [x] "+r"(x),
              "=&r"(x0), "=&r"(x1), "=&r"(x2), "=&r"(x3)
            : : "memory");
        --n;
    }
    const int8_t *wend = w + n;
    if (n > 0)
        __asm__ volatile(
            "1:\n\t"
            TAP_C TAP_C
            "cmp %[w], %[e]\n\t"
            "bne 1b\n\t"
            : [r0] "+r"(r0), [r1] "+r"(r1), [r2] "+r"(r2), [r3] "+r"(r3), [t] "=&r"(t), [w] "+r"(w), [x] "+r"(x),
              "=&r"(x0), "=&r"(x1), "=&r"(x2), "=&r"(x3)
            : [e] "r"(wend)
            : "cc", "memory");
#undef TAP_C
    *a0 = r0; *a1 = r1; *a2 = r2; *a3 = r3;
#else
    int32_t r0 = *a0, r1 = *a1, r2 = *a2, r3 = *a3;
    for (int32_t i = 0; i < n; ++i, x += NCOL) {
        const int32_t wi = w[i];
        r0 += wi * x[0]; r1 += wi * x[1]; r2 += wi * x[2]; r3 += wi * x[3];
    }
    *a0 = r0; *a1 = r1; *a2 = r2; *a3 = r3;
#endif
}

/* all output channels of one group for one block of NCOL columns */
__attribute__((noinline)) static void conv_block_c(const ecg_conv_params *p, const int32_t *blk, int8_t *o, int32_t oc0,
                                                   int32_t n_oc, int32_t col_len, int32_t ncols) {
    const int32_t out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int8_t *post = p->post_lut;
    /* the fast exact requantiser holds while |accumulator| < 2^30: |bias| + taps * 255 * 128 */
    const int64_t acc_room = ((int64_t)1 << 29) - (int64_t)col_len * 255 * 128;
    for (int32_t oc = oc0; oc < oc0 + n_oc; ++oc) {
        const int32_t b = p->bias ? p->bias[oc] : 0;
        int32_t a0 = b, a1 = b, a2 = b, a3 = b;
        dot4_c(p->filter + (size_t)oc * col_len, blk, col_len, &a0, &a1, &a2, &a3);
        const int32_t sh = p->shift[oc];
        if (rq_fast_ok(sh, oo) && (b < 0 ? -(int64_t)b : b) < acc_room) {
            const ecg_rqf q = rq_fast_make(p->mult[oc], sh, oo);
            int32_t y[4] = {rq_fast(a0 + a0, q.mult, q.right, q.rbias), rq_fast(a1 + a1, q.mult, q.right, q.rbias),
                            rq_fast(a2 + a2, q.mult, q.right, q.rbias), rq_fast(a3 + a3, q.mult, q.right, q.rbias)};
            for (int32_t j = 0; j < ncols; ++j) {
                int32_t v = ecg_clamp(y[j], lo, hi);
                if (post) v = post[v];
                o[(size_t)j * out_c + oc] = (int8_t)v;
            }
            continue;
        }
        const ecg_rq rq = ecg_rq_make(p->mult[oc], sh);
        o[oc] = (int8_t)store_value(a0, rq, oo, lo, hi, post);
        if (ncols > 1) o[out_c + oc] = (int8_t)store_value(a1, rq, oo, lo, hi, post);
        if (ncols > 2) o[2 * out_c + oc] = (int8_t)store_value(a2, rq, oo, lo, hi, post);
        if (ncols > 3) o[3 * out_c + oc] = (int8_t)store_value(a3, rq, oo, lo, hi, post);
    }
}

void ecg_conv2d_c(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t fic = p->filter_in_c, groups = p->in_c / fic, per_group = p->out_c / groups;
    const int32_t col_len = p->k_h * p->k_w * fic, n_pos = p->out_h * p->out_w;
    int32_t *blk = (int32_t *)p->col_buf;
    if (!blk) {
        ecg_conv2d_ref(p, in, out);
        return;
    }
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t oc0 = g * per_group, c0 = g * fic;
        for (int32_t pos = 0; pos < n_pos; pos += NCOL) {
            const int32_t ncols = n_pos - pos < NCOL ? n_pos - pos : NCOL;
            for (int32_t j = 0; j < NCOL; ++j) {
                const int32_t q = pos + (j < ncols ? j : 0);   /* short block: repeat a column */
                im2col_c(p, in, q % p->out_w, q / p->out_w, c0, blk, j);
            }
            conv_block_c(p, blk, out + (size_t)pos * p->out_c, oc0, per_group, col_len, ncols);
        }
    }
}
#endif

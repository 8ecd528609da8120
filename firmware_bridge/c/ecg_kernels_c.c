/* Optimised INT8 convolution, plain C path (Cortex-M0/M3: no DSP extension). im2col of four output
 * columns into int16 with the input offset added (padding 0), tap-major ([tap][column]) so one filter
 * byte is loaded once for four 32-bit multiply-accumulates. Integer results equal the reference path. */
#include "ecg_opt.h"

#if defined(ECG_OPTIMIZED) && defined(ECG_KERNELS_C)

/* column j of the block: blk[i * NCOL + j] for tap i of the group's filter */
static void im2col_c(const ecg_conv_params *p, const int8_t *in, int32_t ox, int32_t oy, int32_t c0,
                     int16_t *blk, int32_t j) {
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int32_t fic = p->filter_in_c, off = p->in_offset;
    int16_t *d = blk + j;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int32_t c = 0; c < fic; ++c, d += NCOL) *d = 0;
                continue;
            }
            const int8_t *src = in + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
            for (int32_t c = 0; c < fic; ++c, d += NCOL) *d = (int16_t)(src[c] + off);
        }
    }
}

static inline int32_t store_value(int32_t acc, ecg_rq rq, int32_t oo, int32_t lo, int32_t hi, const int8_t *post) {
    const int32_t v = ecg_clamp(ecg_rq_apply(acc, rq) + oo, lo, hi);
    return post ? post[v] : v;
}

/* all output channels of one group for one block of NCOL columns */
__attribute__((noinline)) static void conv_block_c(const ecg_conv_params *p, const int16_t *blk, int8_t *o, int32_t oc0,
                                                   int32_t n_oc, int32_t col_len, int32_t ncols) {
    const int32_t out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int8_t *post = p->post_lut;
    for (int32_t oc = oc0; oc < oc0 + n_oc; ++oc) {
        const int8_t *w = p->filter + (size_t)oc * col_len, *wend = w + col_len;
        const int32_t b = p->bias ? p->bias[oc] : 0;
        int32_t a0 = b, a1 = b, a2 = b, a3 = b;
        const int16_t *x = blk;
        for (; w + 2 <= wend; w += 2, x += 2 * NCOL) {
            const int32_t w0 = w[0], w1 = w[1];
            a0 += w0 * x[0]; a1 += w0 * x[1]; a2 += w0 * x[2]; a3 += w0 * x[3];
            a0 += w1 * x[4]; a1 += w1 * x[5]; a2 += w1 * x[6]; a3 += w1 * x[7];
        }
        if (w < wend) {
            const int32_t w0 = w[0];
            a0 += w0 * x[0]; a1 += w0 * x[1]; a2 += w0 * x[2]; a3 += w0 * x[3];
        }
        const ecg_rq rq = ecg_rq_make(p->mult[oc], p->shift[oc]);
        o[oc] = (int8_t)store_value(a0, rq, oo, lo, hi, post);
        if (ncols > 1) o[out_c + oc] = (int8_t)store_value(a1, rq, oo, lo, hi, post);
        if (ncols > 2) o[2 * out_c + oc] = (int8_t)store_value(a2, rq, oo, lo, hi, post);
        if (ncols > 3) o[3 * out_c + oc] = (int8_t)store_value(a3, rq, oo, lo, hi, post);
    }
}

void ecg_conv2d_c(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t fic = p->filter_in_c, groups = p->in_c / fic, per_group = p->out_c / groups;
    const int32_t col_len = p->k_h * p->k_w * fic, n_pos = p->out_h * p->out_w;
    int16_t *blk = (int16_t *)p->col_buf;
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

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
#define SXTB16_ROR8(x) ((uint32_t)__sxtb16(((x) >> 8) | ((x) << 24)))
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

static void im2col(const ecg_conv_params *p, const int8_t *in, int32_t ox, int32_t oy, int32_t c0,
                   int16_t *col, int32_t col_len4) {
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int32_t fic = p->filter_in_c;
    /* taps along x are contiguous in memory when the conv is not grouped: copy whole runs */
    const int32_t run_taps = (fic == p->in_c && p->dil_w == 1) ? p->k_w : 1;
    const uint32_t off2 = ((uint32_t)(uint16_t)p->in_offset) * 0x10001u;
    int32_t i = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; kx += run_taps) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int32_t run = run_taps * fic;
            const int32_t last_ix = ix + (run_taps - 1) * p->dil_w;
            if (iy >= 0 && iy < p->in_h && ix >= 0 && last_ix < p->in_w && (run & 3) == 0 && (i & 3) == 0) {
                const int8_t *src = in + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
                uint32_t *dst = (uint32_t *)(col + i);
                for (int32_t c = 0; c < run; c += 4) {
                    const uint32_t x = load32(src + c);
                    dst[0] = SXTAB16(off2, x);                      /* (c0, c2) */
                    dst[1] = SXTAB16(off2, (x >> 8) | (x << 24));   /* (c1, c3) */
                    dst += 2;
                }
                i += run;
                continue;
            }
            for (int32_t t = 0; t < run_taps; ++t) {
                const int32_t tx = ix + t * p->dil_w;
                if (iy < 0 || iy >= p->in_h || tx < 0 || tx >= p->in_w) {
                    for (int32_t c = 0; c < fic; ++c, ++i) col[slot(i)] = 0;
                } else {
                    const int8_t *src = in + ((size_t)iy * p->in_w + tx) * p->in_c + c0;
                    for (int32_t c = 0; c < fic; ++c, ++i) col[slot(i)] = (int16_t)(src[c] + p->in_offset);
                }
            }
        }
    }
    for (; i < col_len4; ++i) col[slot(i)] = 0;
}

static inline int8_t requant(const ecg_conv_params *p, int32_t acc, int32_t oc) {
    acc = ecg_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
    return (int8_t)ecg_clamp(acc, p->act_min, p->act_max);
}

void ecg_conv2d_opt(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t fic = p->filter_in_c;
    const int32_t groups = p->in_c / fic;
    const int32_t per_group = p->out_c / groups;
    const int32_t col_len = p->k_h * p->k_w * fic;
    const int32_t col_len4 = (col_len + 3) & ~3;
    const int32_t n_pos = p->out_h * p->out_w;
    int16_t *colA = (int16_t *)p->col_buf, *colB = colA + col_len4;
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t oc0 = g * per_group, c0 = g * fic;
        for (int32_t pos = 0; pos < n_pos; pos += 2) {
            const int32_t two = (pos + 1 < n_pos);
            im2col(p, in, pos % p->out_w, pos / p->out_w, c0, colA, col_len4);
            if (two) im2col(p, in, (pos + 1) % p->out_w, (pos + 1) / p->out_w, c0, colB, col_len4);
            else memset(colB, 0, (size_t)col_len4 * 2);
            int8_t *outA = out + (size_t)pos * p->out_c, *outB = outA + p->out_c;
            int32_t oc = oc0;
            for (; oc + 1 < oc0 + per_group; oc += 2) {
                const int8_t *w0 = p->filter + (size_t)oc * col_len, *w1 = w0 + col_len;
                int32_t b0 = p->bias ? p->bias[oc] : 0, b1 = p->bias ? p->bias[oc + 1] : 0;
                int32_t a00 = b0, a01 = b0, a10 = b1, a11 = b1;
                const uint32_t *ca = (const uint32_t *)colA, *cb = (const uint32_t *)colB;
                for (int32_t k = 0; k < col_len4; k += 4) {
                    const uint32_t wa = load32(w0 + k), wb = load32(w1 + k);
                    const uint32_t wa02 = SXTB16(wa), wa13 = SXTB16_ROR8(wa);
                    const uint32_t wb02 = SXTB16(wb), wb13 = SXTB16_ROR8(wb);
                    const uint32_t xa02 = ca[0], xa13 = ca[1], xb02 = cb[0], xb13 = cb[1];
                    ca += 2; cb += 2;
                    a00 = SMLAD(wa02, xa02, a00); a00 = SMLAD(wa13, xa13, a00);
                    a01 = SMLAD(wa02, xb02, a01); a01 = SMLAD(wa13, xb13, a01);
                    a10 = SMLAD(wb02, xa02, a10); a10 = SMLAD(wb13, xa13, a10);
                    a11 = SMLAD(wb02, xb02, a11); a11 = SMLAD(wb13, xb13, a11);
                }
                outA[oc] = requant(p, a00, oc);
                outA[oc + 1] = requant(p, a10, oc + 1);
                if (two) { outB[oc] = requant(p, a01, oc); outB[oc + 1] = requant(p, a11, oc + 1); }
            }
            for (; oc < oc0 + per_group; ++oc) {
                const int8_t *w0 = p->filter + (size_t)oc * col_len;
                int32_t b0 = p->bias ? p->bias[oc] : 0;
                int32_t a00 = b0, a01 = b0;
                const uint32_t *ca = (const uint32_t *)colA, *cb = (const uint32_t *)colB;
                for (int32_t k = 0; k < col_len4; k += 4) {
                    const uint32_t wa = load32(w0 + k);
                    const uint32_t wa02 = SXTB16(wa), wa13 = SXTB16_ROR8(wa);
                    a00 = SMLAD(wa02, ca[0], a00); a00 = SMLAD(wa13, ca[1], a00);
                    a01 = SMLAD(wa02, cb[0], a01); a01 = SMLAD(wa13, cb[1], a01);
                    ca += 2; cb += 2;
                }
                outA[oc] = requant(p, a00, oc);
                if (two) outB[oc] = requant(p, a01, oc);
            }
        }
    }
}
#endif

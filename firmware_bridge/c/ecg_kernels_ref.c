/* Reference INT8 kernels: straightforward loops, the oracle for the optimised path. */
#include "ecg_kernels.h"
#include "ecg_quant.h"
#include <string.h>

void ecg_conv2d_ref(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t per_group = p->out_c / groups;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                const int32_t c0 = (oc / per_group) * p->filter_in_c;
                int32_t acc = 0;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) continue;
                        const int8_t *src = in + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
                        const int8_t *w = p->filter + (((size_t)oc * p->k_h + ky) * p->k_w + kx) * p->filter_in_c;
                        for (int32_t ic = 0; ic < p->filter_in_c; ++ic)
                            acc += ((int32_t)src[ic] + p->in_offset) * (int32_t)w[ic];
                    }
                }
                if (p->bias) acc += p->bias[oc];
                acc = ecg_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
                out[((size_t)oy * p->out_w + ox) * p->out_c + oc] = (int8_t)ecg_clamp(acc, p->act_min, p->act_max);
            }
        }
    }
}

void ecg_depthwise_ref(const ecg_conv_params *p, const int8_t *in, int8_t *out) {
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
            for (int32_t ic = 0; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < p->depth_multiplier; ++m) {
                    const int32_t oc = ic * p->depth_multiplier + m;
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) continue;
                        for (int32_t kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            if (ix < 0 || ix >= p->in_w) continue;
                            int32_t x = in[((size_t)iy * p->in_w + ix) * p->in_c + ic];
                            int32_t w = p->filter[((size_t)ky * p->k_w + kx) * p->out_c + oc];
                            acc += (x + p->in_offset) * w;
                        }
                    }
                    if (p->bias) acc += p->bias[oc];
                    acc = ecg_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
                    out[((size_t)oy * p->out_w + ox) * p->out_c + oc] = (int8_t)ecg_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void ecg_fc_ref(const ecg_fc_params *p, const int8_t *in, int8_t *out) {
    for (int32_t b = 0; b < p->batches; ++b) {
        for (int32_t o = 0; o < p->out_depth; ++o) {
            int32_t acc = 0;
            for (int32_t d = 0; d < p->in_depth; ++d)
                acc += ((int32_t)in[(size_t)b * p->in_depth + d] + p->in_offset) *
                       ((int32_t)p->filter[(size_t)o * p->in_depth + d] + p->filter_offset);
            if (p->bias) acc += p->bias[o];
            const int32_t c = p->per_channel ? o : 0;
            acc = ecg_mbqm(acc, p->mult[c], p->shift[c]) + p->out_offset;
            out[(size_t)b * p->out_depth + o] = (int8_t)ecg_clamp(acc, p->act_min, p->act_max);
        }
    }
}

static int8_t add_one(const ecg_binary_params *p, int32_t a, int32_t b) {
    const int32_t sa = (int32_t)((uint32_t)(a + p->in1_offset) << p->left_shift);
    const int32_t sb = (int32_t)((uint32_t)(b + p->in2_offset) << p->left_shift);
    const int32_t raw = ecg_mbqm(sa, p->in1_mult, p->in1_shift) + ecg_mbqm(sb, p->in2_mult, p->in2_shift);
    const int32_t o = ecg_mbqm(raw, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)ecg_clamp(o, p->act_min, p->act_max);
}

static int8_t mul_one(const ecg_binary_params *p, int32_t a, int32_t b) {
    const int32_t o = ecg_mbqm((a + p->in1_offset) * (b + p->in2_offset), p->mult, p->shift) + p->out_offset;
    return (int8_t)ecg_clamp(o, p->act_min, p->act_max);
}

#define BROADCAST_LOOP(FN)                                                                  \
    if (p->flat) {                                                                          \
        for (int32_t i = 0; i < p->size; ++i) out[i] = FN(p, a[i], b[i]);                   \
        return;                                                                             \
    }                                                                                       \
    size_t o = 0;                                                                           \
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0)                                         \
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1)                                     \
            for (int32_t d2 = 0; d2 < p->out_dims[2]; ++d2)                                 \
                for (int32_t d3 = 0; d3 < p->out_dims[3]; ++d3) {                           \
                    size_t ia = (size_t)d0 * p->in1_strides[0] + (size_t)d1 * p->in1_strides[1] + \
                                (size_t)d2 * p->in1_strides[2] + (size_t)d3 * p->in1_strides[3]; \
                    size_t ib = (size_t)d0 * p->in2_strides[0] + (size_t)d1 * p->in2_strides[1] + \
                                (size_t)d2 * p->in2_strides[2] + (size_t)d3 * p->in2_strides[3]; \
                    out[o++] = FN(p, a[ia], b[ib]);                                         \
                }

void ecg_add_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { BROADCAST_LOOP(add_one) }
void ecg_mul_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { BROADCAST_LOOP(mul_one) }

void ecg_maxpool_ref(const ecg_pool_params *p, const int8_t *in, int8_t *out) {
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox)
            for (int32_t c = 0; c < p->channels; ++c) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                int32_t m = -128;
                for (int32_t fy = 0; fy < p->f_h; ++fy) {
                    const int32_t iy = y0 + fy;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int32_t fx = 0; fx < p->f_w; ++fx) {
                        const int32_t ix = x0 + fx;
                        if (ix < 0 || ix >= p->in_w) continue;
                        int32_t v = in[((size_t)iy * p->in_w + ix) * p->channels + c];
                        if (v > m) m = v;
                    }
                }
                out[((size_t)oy * p->out_w + ox) * p->channels + c] = (int8_t)ecg_clamp(m, p->act_min, p->act_max);
            }
}

void ecg_avgpool_ref(const ecg_pool_params *p, const int8_t *in, int8_t *out) {
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox)
            for (int32_t c = 0; c < p->channels; ++c) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                int32_t sum = 0, count = 0;
                for (int32_t fy = 0; fy < p->f_h; ++fy) {
                    const int32_t iy = y0 + fy;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int32_t fx = 0; fx < p->f_w; ++fx) {
                        const int32_t ix = x0 + fx;
                        if (ix < 0 || ix >= p->in_w) continue;
                        sum += in[((size_t)iy * p->in_w + ix) * p->channels + c];
                        ++count;
                    }
                }
                int32_t avg = 0;
                if (count) avg = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                out[((size_t)oy * p->out_w + ox) * p->channels + c] = (int8_t)ecg_clamp(avg, p->act_min, p->act_max);
            }
}

void ecg_mean_ref(const ecg_mean_params *p, const int8_t *in, int8_t *out) {
    const int32_t n = p->reduce;
    int32_t mult = p->mult, shift = p->shift;
    if (p->variant != 1) {
        /* fold 1/n into the multiplier, as TFLite's integer Mean does */
        int32_t s = 63 - __builtin_clzll((uint64_t)n);
        if (s > 32) s = 32;
        if (s > 31 + shift) s = 31 + shift;
        mult = (int32_t)(((int64_t)mult << s) / n);
        shift = shift - s;
    }
    for (int32_t o = 0; o < p->outer; ++o)
        for (int32_t i = 0; i < p->inner; ++i) {
            const int8_t *src = in + (size_t)o * n * p->inner + i;
            int32_t acc = 0;
            for (int32_t r = 0; r < n; ++r) acc += src[(size_t)r * p->inner];
            int32_t v;
            if (p->variant == 1) {
                v = acc / n;
            } else {
                acc -= p->in_zp * n;
                v = ecg_mbqm(acc, mult, shift) + p->out_zp;
            }
            out[(size_t)o * p->inner + i] = (int8_t)ecg_clamp(v, -128, 127);
        }
}

void ecg_pad_ref(const ecg_pad_params *p, const int8_t *in, int8_t *out) {
    size_t o = 0;
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0)
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1)
            for (int32_t d2 = 0; d2 < p->out_dims[2]; ++d2)
                for (int32_t d3 = 0; d3 < p->out_dims[3]; ++d3) {
                    const int32_t i0 = d0 - p->pad_before[0], i1 = d1 - p->pad_before[1];
                    const int32_t i2 = d2 - p->pad_before[2], i3 = d3 - p->pad_before[3];
                    if (i0 < 0 || i0 >= p->in_dims[0] || i1 < 0 || i1 >= p->in_dims[1] ||
                        i2 < 0 || i2 >= p->in_dims[2] || i3 < 0 || i3 >= p->in_dims[3])
                        out[o++] = p->pad_value;
                    else
                        out[o++] = in[(((size_t)i0 * p->in_dims[1] + i1) * p->in_dims[2] + i2) * p->in_dims[3] + i3];
                }
}

void ecg_lut_ref(const int8_t *lut, int32_t size, const int8_t *in, int8_t *out) {
    for (int32_t i = 0; i < size; ++i) out[i] = lut[(uint8_t)((int32_t)in[i] + 128)];
}

void ecg_copy(int32_t size, const int8_t *in, int8_t *out) {
    if (in != out) memmove(out, in, (size_t)size);
}

static int8_t sub_one(const ecg_binary_params *p, int32_t a, int32_t b) {
    const int32_t sa = (int32_t)((uint32_t)(a + p->in1_offset) << p->left_shift);
    const int32_t sb = (int32_t)((uint32_t)(b + p->in2_offset) << p->left_shift);
    const int32_t raw = ecg_mbqm(sa, p->in1_mult, p->in1_shift) - ecg_mbqm(sb, p->in2_mult, p->in2_shift);
    const int32_t o = ecg_mbqm(raw, p->out_mult, p->out_shift) + p->out_offset;
    return (int8_t)ecg_clamp(o, p->act_min, p->act_max);
}

/* PRELU: in1 = input (in1_mult/shift: identity rescale), in2 = alpha (in2_mult/shift: input x alpha rescale) */
static int8_t prelu_one(const ecg_binary_params *p, int32_t a, int32_t b) {
    const int32_t x = a + p->in1_offset;
    const int32_t o = (x >= 0 ? ecg_mbqm(x, p->in1_mult, p->in1_shift)
                              : ecg_mbqm(x * (b + p->in2_offset), p->in2_mult, p->in2_shift)) + p->out_offset;
    return (int8_t)ecg_clamp(o, -128, 127);
}

static int8_t max_one(const ecg_binary_params *p, int32_t a, int32_t b) { (void)p; return (int8_t)(a > b ? a : b); }
static int8_t min_one(const ecg_binary_params *p, int32_t a, int32_t b) { (void)p; return (int8_t)(a < b ? a : b); }

void ecg_sub_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { BROADCAST_LOOP(sub_one) }
void ecg_prelu_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { BROADCAST_LOOP(prelu_one) }
void ecg_maximum_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { BROADCAST_LOOP(max_one) }
void ecg_minimum_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) { BROADCAST_LOOP(min_one) }

/* Reference INT8 kernels of the general ops: softmax, strided copies (transpose, slices, split, concat,
 * pack/unpack), reductions over any axes, batch matmul, float edges. TFLite reference-kernel integer
 * semantics; every parameter (multipliers, tables, strides) is computed once by the generator. */
#include "ecg_kernels.h"
#include "ecg_quant.h"
#include "ecg_gemmlowp.h"
#include <math.h>
#include <string.h>

/* tflite reference_ops::Softmax (int8 in, int8 out with scale 1/256 and zero point -128): exp of the
 * rescaled difference to the row maximum (a table: the difference takes 256 values), sums in Q12.19,
 * TFLite's GetReciprocal of the sum, then each exp times the reciprocal, rounded to Q0.8. */
void ecg_softmax_ref(const ecg_softmax_params *p, const int8_t *in, int8_t *out) {
    const int32_t depth = p->depth;
    for (int32_t r = 0; r < p->outer; ++r) {
        const int8_t *x = in + (size_t)r * depth;
        int8_t *y = out + (size_t)r * depth;
        int32_t mx = -128;
        for (int32_t c = 0; c < depth; ++c) if (x[c] > mx) mx = x[c];
        uint32_t sum = 0;   /* gemmlowp's FixedPoint addition (no saturation) */
        for (int32_t c = 0; c < depth; ++c) sum += (uint32_t)ecg_rdpot(p->exp_table[mx - x[c]], 12);
        int32_t bits_over_unit;
        const int32_t scale = ecg_reciprocal((int32_t)sum, 12, &bits_over_unit);
        const int32_t exponent = bits_over_unit + 31 - 8;
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t v = ecg_rdpot(ecg_srdhm(scale, p->exp_table[mx - x[c]]), exponent) - 128;
            y[c] = (int8_t)ecg_clamp(v, -128, 127);
        }
    }
}

/* out[out_base + sum i_k * out_strides[k]] = in[in_base + sum i_k * in_strides[k]] over dims */
void ecg_strided_copy(const ecg_copy_params *p, const int8_t *in, int8_t *out) {
    int32_t idx[ECG_COPY_MAX_DIMS] = {0};
    const int32_t last = p->ndim - 1;
    const int32_t n = p->dims[last], is = p->in_strides[last], os = p->out_strides[last];
    int32_t ii = p->in_base, oo = p->out_base;
    for (;;) {
        const int8_t *s = in + ii;
        int8_t *d = out + oo;
        if (is == 1 && os == 1) {
            memcpy(d, s, (size_t)n);
        } else {
            for (int32_t k = 0; k < n; ++k) d[k * os] = s[k * is];
        }
        int32_t k = last - 1;
        for (; k >= 0; --k) {
            ii += p->in_strides[k];
            oo += p->out_strides[k];
            if (++idx[k] < p->dims[k]) break;
            ii -= p->in_strides[k] * p->dims[k];
            oo -= p->out_strides[k] * p->dims[k];
            idx[k] = 0;
        }
        if (k < 0) return;
    }
}

/* advance an odometer over dims/strides; returns 0 when it wrapped around completely */
static int odometer(int32_t n, const int32_t *dims, const int32_t *strides, int32_t *idx, int32_t *off) {
    for (int32_t k = n - 1; k >= 0; --k) {
        *off += strides[k];
        if (++idx[k] < dims[k]) return 1;
        *off -= strides[k] * dims[k];
        idx[k] = 0;
    }
    return 0;
}

/* tflite reference_ops::QuantizedMeanOrSum: integer sum over the reduced axes, minus zp x count, requantised */
void ecg_reduce_ref(const ecg_reduce_params *p, const int8_t *in, int8_t *out) {
    int32_t kidx[ECG_COPY_MAX_DIMS] = {0}, base = 0;
    size_t o = 0;
    do {
        int32_t ridx[ECG_COPY_MAX_DIMS] = {0}, off = base, acc = 0;
        do {
            acc += in[off];
        } while (odometer(p->nred, p->red_dims, p->red_strides, ridx, &off));
        const int32_t v = ecg_mbqm(acc - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
        out[o++] = (int8_t)ecg_clamp(v, -128, 127);
    } while (odometer(p->nkeep, p->keep_dims, p->keep_strides, kidx, &base));
}

/* tflite reference_ops::BatchMatMul (int8): out[b][i][j] = sum_k (lhs[b][i][k] + lo) (rhs[b][k][j] + ro) */
void ecg_bmm_ref(const ecg_bmm_params *p, const int8_t *lhs, const int8_t *rhs, int8_t *out) {
    for (int32_t b0 = 0; b0 < p->batches[0]; ++b0)
        for (int32_t b1 = 0; b1 < p->batches[1]; ++b1)
            for (int32_t b2 = 0; b2 < p->batches[2]; ++b2) {
                const int8_t *l = lhs + b0 * p->lhs_bstrides[0] + b1 * p->lhs_bstrides[1] + b2 * p->lhs_bstrides[2];
                const int8_t *r = rhs + b0 * p->rhs_bstrides[0] + b1 * p->rhs_bstrides[1] + b2 * p->rhs_bstrides[2];
                for (int32_t i = 0; i < p->rows; ++i)
                    for (int32_t j = 0; j < p->cols; ++j) {
                        int32_t acc = 0;
                        for (int32_t k = 0; k < p->depth; ++k)
                            acc += ((int32_t)l[i * p->lhs_row_stride + k * p->lhs_k_stride] + p->lhs_offset) *
                                   ((int32_t)r[k * p->rhs_k_stride + j * p->rhs_col_stride] + p->rhs_offset);
                        const int32_t v = ecg_mbqm(acc, p->mult, p->shift) + p->out_offset;
                        *out++ = (int8_t)ecg_clamp(v, p->act_min, p->act_max);
                    }
            }
}

/* tflite reference_ops::AffineQuantize (float -> int8): round half away from zero of x / scale, in float */
void ecg_quantize_f32(float scale, int32_t zero_point, int32_t size, const float *in, int8_t *out) {
    for (int32_t i = 0; i < size; ++i) {
        const float r = roundf(in[i] / scale);
        const int32_t q = r >= 1000.0f ? 1000 : (r > -1000.0f ? (int32_t)r : -1000);   /* NaN: -1000 */
        out[i] = (int8_t)ecg_clamp(q + zero_point, -128, 127);
    }
}

/* tflite reference_ops::Dequantize (int8 -> float): float(double(scale) * (q - zp)), one table entry per q */
void ecg_dequantize_f32(const float *table, int32_t size, const int8_t *in, float *out) {
    for (int32_t i = 0; i < size; ++i) out[i] = table[(uint8_t)((int32_t)in[i] + 128)];
}

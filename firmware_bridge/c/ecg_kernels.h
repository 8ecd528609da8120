/* ecgedge INT8 kernels: TFLite reference-kernel integer semantics (bit-exact with tflite-micro).
 * Reference path: plain C99, always built. Optimised path (ECG_OPTIMIZED), one of three kernel paths
 * (cores.toml `kernels`, passed by the build as ECG_KERNELS_<PATH>):
 *   ECG_KERNELS_C    plain C (Cortex-M0/M3): int8 weights, 32-bit multiply-accumulate;
 *   ECG_KERNELS_DSP  ARMv7E-M / ARMv8-M DSP (M4/M7/M33: SMLAD/SXTB16), emulated in C on hosts;
 *   ECG_KERNELS_MVE  Helium (M55: VMLADAVA.S8 and friends, arm_mve.h).
 * Kernels shared by all paths live in ecg_kernels_opt.c (DSP instructions where the core has them). */
#ifndef ECG_KERNELS_H
#define ECG_KERNELS_H
#include <stdint.h>
#include <stddef.h>

#if !defined(ECG_KERNELS_C) && !defined(ECG_KERNELS_DSP) && !defined(ECG_KERNELS_MVE)
#define ECG_KERNELS_DSP 1
#endif
#if (defined(ECG_KERNELS_C) + defined(ECG_KERNELS_DSP) + defined(ECG_KERNELS_MVE)) != 1
#error "define exactly one of ECG_KERNELS_C, ECG_KERNELS_DSP, ECG_KERNELS_MVE"
#endif
#if defined(ECG_KERNELS_MVE) && !defined(__ARM_FEATURE_MVE)
#error "ECG_KERNELS_MVE needs a Helium (MVE) core: -mcpu=cortex-m55"
#endif

typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, filter_in_c;    /* filter_in_c < in_c: grouped conv */
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t depth_multiplier;         /* depthwise only */
    int32_t in_offset, out_offset, act_min, act_max;
    const int8_t *filter;             /* conv: [out_c][k_h][k_w][filter_in_c]; dw: [k_h][k_w][out_c] */
    const int32_t *bias;              /* [out_c] or NULL */
    const int32_t *mult, *shift;      /* per output channel */
    void *col_buf;                    /* optimised scratch: conv im2col block, depthwise channel plane */
    int32_t plane_h, plane_w;         /* depthwise: the padded channel plane's rows and row length */
    int32_t depthwise_planes;         /* depthwise: channel planes the scratch holds (1 or 4) */
    const int32_t *bias_eff;          /* mve conv: bias + in_offset * filter row sum */
    /* dsp conv, set by the generator when every channel suits the fast requantiser (else NULL): per
     * output channel {2 x bias four times, 2 x filter widened to int16 and pair-reordered per 4 taps
     * (col_len rounded up to 4, two taps a word), multiplier, right shift, rounding bias incl. the
     * output offset} */
    const int32_t *wide;
    const int32_t *wide2;             /* dsp conv, longer columns: the same per pair of output channels */
    const int8_t *post_lut;           /* wide path: table applied to each int8 result (fused Swish), or NULL */
} ecg_conv_params;

typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t in_offset, filter_offset, out_offset, act_min, act_max;
    int32_t per_channel;
    const int8_t *filter;             /* [out_depth][in_depth] */
    const int32_t *bias;
    const int32_t *mult, *shift;      /* [1] or [out_depth] */
    const int32_t *bias_eff;          /* optimised path: bias + in_offset * row sum (filter_offset 0) */
} ecg_fc_params;

typedef struct {
    int32_t out_dims[4];
    int32_t in1_strides[4], in2_strides[4];   /* 0 on broadcast dims */
    int32_t flat;                             /* no broadcast: plain elementwise over size */
    int32_t size;
    int32_t in1_offset, in2_offset, out_offset, act_min, act_max;
    int32_t left_shift, in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;  /* ADD */
    int32_t mult, shift;                                                                /* MUL */
    const int32_t *lut1, *lut2;   /* ADD, optimised path: rescaled input value for each int8 input */
    const int8_t *pair;           /* flat ADD, optimised path: result for byte pair, index (b << 8) | a */
} ecg_binary_params;

typedef struct {
    int32_t in_h, in_w, channels, out_h, out_w;
    int32_t f_h, f_w, stride_h, stride_w, pad_h, pad_w, act_min, act_max;
} ecg_pool_params;

typedef struct {
    int32_t outer, reduce, inner;     /* input viewed as [outer][reduce][inner], reduce axis removed */
    int32_t variant;                  /* 0: 4-D axes 1,2 keep_dims; 2: generic quantised mean (multiplier
                                         scaled by 1/n), both as tflite-micro; 1 (plain division, an older
                                         tflite-micro's same-quantisation case) is no longer generated */
    int32_t in_zp, out_zp, mult, shift;
} ecg_mean_params;

typedef struct {
    int32_t in_dims[4], out_dims[4], pad_before[4];
    int8_t pad_value;
} ecg_pad_params;

/* ---- general ops (issue 18): softmax, data movement, more binary ops, any-axes reductions, batch matmul,
 * float edges, the int8 LSTM. Parameters are computed once by the generator (ops_general.py). ---- */

typedef struct {
    int32_t outer, depth;             /* rows of `depth` values; softmax over each row */
    const int32_t *exp_table;         /* [256] exp(beta * scale * -d) in Q0.31 for d = max - x, 0 where d < -diff_min */
} ecg_softmax_params;

#define ECG_COPY_MAX_DIMS 6
typedef struct {
    int32_t ndim;                     /* iteration space, outermost first (<= ECG_COPY_MAX_DIMS) */
    int32_t dims[ECG_COPY_MAX_DIMS];
    int32_t in_strides[ECG_COPY_MAX_DIMS], out_strides[ECG_COPY_MAX_DIMS];   /* elements, may be negative */
    int32_t in_base, out_base;
} ecg_copy_params;

typedef struct {
    int32_t nkeep, keep_dims[ECG_COPY_MAX_DIMS], keep_strides[ECG_COPY_MAX_DIMS];
    int32_t nred, red_dims[ECG_COPY_MAX_DIMS], red_strides[ECG_COPY_MAX_DIMS];
    int32_t count;                    /* elements reduced into each output (outputs: kept dims, row-major) */
    int32_t in_zp, out_zp, mult, shift;   /* mult/shift: SUM as given; MEAN with 1/count folded in (as TFLite) */
} ecg_reduce_params;

typedef struct {
    int32_t batches[3];               /* broadcast batch dims (collapsed) */
    int32_t lhs_bstrides[3], rhs_bstrides[3];
    int32_t rows, cols, depth;
    int32_t lhs_row_stride, lhs_k_stride, rhs_k_stride, rhs_col_stride;
    int32_t lhs_offset, rhs_offset, out_offset, mult, shift, act_min, act_max;
} ecg_bmm_params;

typedef struct {
    int32_t batch, time, in_dim, state, time_major;
    int32_t cell_tanh;                /* cell gate non-linearity: 1 tanh, 0 sigmoid */
    const int8_t *w_x[4], *w_h[4];    /* gates in TFLite's order of evaluation: forget, input, cell, output */
    const int32_t *bias[4];
    int32_t x_mult[4], x_shift[4], h_mult[4], h_shift[4];
    int32_t x_offset, h_offset;       /* -zero point of the input and of the hidden state */
    int32_t fc_mult, fc_shift;        /* forget gate x cell state -> cell state */
    int32_t ic_mult, ic_shift;        /* input gate x cell gate -> cell state */
    int32_t oh_mult, oh_shift, oh_zp; /* output gate x tanh(cell) -> hidden state (int8) */
    int32_t cell_tanh_mult, cell_tanh_shift;   /* int16 tanh input rescale of the cell state (from its scale) */
    int32_t clip;                     /* quantised cell clip, 0 = none */
    const uint16_t *sigmoid;          /* [256] sigmoid(i/24) in 0.16 */
    int8_t *hidden;                   /* [batch][state] state, reset to oh_zp at each inference */
    int16_t *cell;                    /* [batch][state] state, reset to 0 */
    int16_t *scratch;                 /* 4 x [batch][state] gate buffers */
} ecg_lstm_params;

void ecg_conv2d_ref(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_depthwise_ref(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_fc_ref(const ecg_fc_params *p, const int8_t *in, int8_t *out);
void ecg_add_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_mul_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_maxpool_ref(const ecg_pool_params *p, const int8_t *in, int8_t *out);
void ecg_avgpool_ref(const ecg_pool_params *p, const int8_t *in, int8_t *out);
void ecg_mean_ref(const ecg_mean_params *p, const int8_t *in, int8_t *out);
void ecg_pad_ref(const ecg_pad_params *p, const int8_t *in, int8_t *out);
void ecg_lut_ref(const int8_t *lut, int32_t size, const int8_t *in, int8_t *out);
void ecg_copy(int32_t size, const int8_t *in, int8_t *out);
void ecg_sub_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_prelu_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_maximum_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_minimum_ref(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_softmax_ref(const ecg_softmax_params *p, const int8_t *in, int8_t *out);
void ecg_strided_copy(const ecg_copy_params *p, const int8_t *in, int8_t *out);
void ecg_reduce_ref(const ecg_reduce_params *p, const int8_t *in, int8_t *out);
void ecg_bmm_ref(const ecg_bmm_params *p, const int8_t *lhs, const int8_t *rhs, int8_t *out);
void ecg_quantize_f32(float scale, int32_t zero_point, int32_t size, const float *in, int8_t *out);
void ecg_dequantize_f32(const float *table, int32_t size, const int8_t *in, float *out);
void ecg_lstm_ref(const ecg_lstm_params *p, const int8_t *in, int8_t *out);

#if defined(ECG_OPTIMIZED)
void ecg_conv2d_dsp(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_conv2d_c(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_conv2d_mve(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_depthwise_plane(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_depthwise_mve(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_fc_mve(const ecg_fc_params *p, const int8_t *in, int8_t *out);
void ecg_mul_opt(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_add_opt(const ecg_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void ecg_lut_opt(const int8_t *lut, int32_t size, const int8_t *in, int8_t *out);
void ecg_pad_opt(const ecg_pad_params *p, const int8_t *in, int8_t *out);
void ecg_maxpool_opt(const ecg_pool_params *p, const int8_t *in, int8_t *out);
void ecg_depthwise_opt(const ecg_conv_params *p, const int8_t *in, int8_t *out);
void ecg_fc_opt(const ecg_fc_params *p, const int8_t *in, int8_t *out);
void ecg_mean_opt(const ecg_mean_params *p, const int8_t *in, int8_t *out);
void ecg_channel_lut_opt(const int8_t *tables, int32_t rows, int32_t channels, const int8_t *in, int8_t *out);
#if defined(ECG_KERNELS_MVE)
#define ECG_CONV2D ecg_conv2d_mve
#define ECG_DEPTHWISE ecg_depthwise_mve
#define ECG_FC ecg_fc_mve
#elif defined(ECG_KERNELS_C)
#define ECG_CONV2D ecg_conv2d_c
#define ECG_DEPTHWISE ecg_depthwise_plane
#define ECG_FC ecg_fc_opt
#else
#define ECG_CONV2D ecg_conv2d_dsp
#define ECG_DEPTHWISE ecg_depthwise_plane
#define ECG_FC ecg_fc_opt
#endif
#define ECG_MUL ecg_mul_opt
#define ECG_ADD ecg_add_opt
#define ECG_LUT ecg_lut_opt
#define ECG_PAD ecg_pad_opt
#define ECG_MAXPOOL ecg_maxpool_opt
#define ECG_MEAN ecg_mean_opt
#else
#define ECG_CONV2D ecg_conv2d_ref
#define ECG_DEPTHWISE ecg_depthwise_ref
#define ECG_FC ecg_fc_ref
#define ECG_MUL ecg_mul_ref
#define ECG_ADD ecg_add_ref
#define ECG_LUT ecg_lut_ref
#define ECG_PAD ecg_pad_ref
#define ECG_MAXPOOL ecg_maxpool_ref
#define ECG_MEAN ecg_mean_ref
#endif
#define ECG_AVGPOOL ecg_avgpool_ref
#endif

/* ecgedge model library: the public calls of ecgedge_model.h around the generated model. */
#include "ecgedge_model.h"
#include "ecg_model_gen.h"
#include "ecg_sha256.h"
#include <string.h>

/* both headers describe the same model (compile-time checks, C99) */
typedef char ecg_check_input_size[(ECG_MODEL_INPUT_SIZE == ECG_INPUT_SIZE) ? 1 : -1];
typedef char ecg_check_output_size[(ECG_MODEL_OUTPUT_SIZE == ECG_OUTPUT_SIZE) ? 1 : -1];
typedef char ecg_check_zero_point[(ECG_MODEL_INPUT_ZERO_POINT == ECG_INPUT_ZERO_POINT) ? 1 : -1];

/* round half to even of v, |v| <= 1000 (v - (double)i is exact there) */
static int32_t ecg_round_half_even(double v) {
    int32_t i = (int32_t)v;
    double f = v - (double)i;
    if (f > 0.5 || (f == 0.5 && (i & 1))) ++i;
    else if (f < -0.5 || (f == -0.5 && (i & 1))) --i;
    return i;
}

int ecg_model_quantize_mv(const float *mv, int8_t *q, uint32_t n) {
    int clipped = 0;
    for (uint32_t k = 0; k < n; ++k) {
        /* the same double-precision steps as the host runtime: uV / scale_uv / input_scale */
        double v = (double)mv[k] * 1000.0 / ECG_MODEL_SCALE_UV / ECG_MODEL_INPUT_SCALE;
        int32_t r;
        if (!(v > -1000.0)) r = -1000;          /* far below the range, or NaN */
        else if (v > 1000.0) r = 1000;
        else r = ecg_round_half_even(v);
        r += ECG_MODEL_INPUT_ZERO_POINT;
        if (r < -128) { r = -128; ++clipped; }
        else if (r > 127) { r = 127; ++clipped; }
        q[k] = (int8_t)r;
    }
    return clipped;
}

#if ECG_MODEL_INPUT_SIZE == ECG_MODEL_WINDOW_SAMPLES
static int8_t ecg_run_in[ECG_MODEL_INPUT_SIZE];

int ecg_model_run_mv(const float *mv, float *out) {
    int8_t q[ECG_MODEL_OUTPUT_SIZE];
    int clipped = ecg_model_quantize_mv(mv, ecg_run_in, ECG_MODEL_INPUT_SIZE);
    ecg_model_invoke(ecg_run_in, q);
    for (int i = 0; i < ECG_MODEL_OUTPUT_SIZE; ++i)
        out[i] = (float)(ECG_MODEL_OUTPUT_SCALE * (double)(q[i] - ECG_MODEL_OUTPUT_ZERO_POINT));
    return clipped;
}
#endif

int ecg_model_verify(void) {
    uint8_t digest[32];
    ecg_sha256(ecg_const_blob, ecg_const_blob_len, digest);
    return memcmp(digest, ecg_const_sha256, 32) == 0;
}

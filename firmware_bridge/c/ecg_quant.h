/* TFLite integer requantisation primitives (MultiplyByQuantizedMultiplier, double rounding). */
#ifndef ECG_QUANT_H
#define ECG_QUANT_H
#include <stdint.h>

static inline int32_t ecg_srdhm(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) return INT32_MAX;
    /* TFLite: trunc((ab + nudge) / 2^31) with nudge = 2^30 (ab >= 0) or 1 - 2^30 (ab < 0); both cases
     * equal floor((ab + 2^30) / 2^31), an arithmetic shift (no division, no branch) */
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

static inline int32_t ecg_rdpot(int32_t x, int32_t exponent) {
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t ecg_mbqm(int32_t x, int32_t mult, int32_t shift) {
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    return ecg_rdpot(ecg_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int32_t ecg_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Requantiser with the shift split precomputed (optimised kernels keep it in registers). Same result
 * as ecg_mbqm for multipliers in [0, 2^31) (QuantizeMultiplier never yields INT32_MIN). */
typedef struct { int32_t mult, left, right, mask, half; } ecg_rq;

static inline ecg_rq ecg_rq_make(int32_t mult, int32_t shift) {
    ecg_rq r;
    r.mult = mult;
    r.left = shift > 0 ? shift : 0;
    r.right = shift > 0 ? 0 : -shift;
    r.mask = (int32_t)(((int64_t)1 << r.right) - 1);
    r.half = r.mask >> 1;
    return r;
}

static inline int32_t ecg_rq_apply(int32_t x, ecg_rq r) {
    const int32_t v = (int32_t)(((int64_t)(int32_t)((uint32_t)x << r.left) * r.mult + ((int64_t)1 << 30)) >> 31);
    return (v >> r.right) + ((v & r.mask) > r.half + (v < 0));
}
#endif

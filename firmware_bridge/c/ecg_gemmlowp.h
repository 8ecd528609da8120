/* gemmlowp fixed-point helpers used at run time (softmax's reciprocal): the same integer steps as
 * gemmlowp's one_over_one_plus_x_for_x_in_0_1 and TFLite's GetReciprocal; written for C99. */
#ifndef ECG_GEMMLOWP_H
#define ECG_GEMMLOWP_H
#include <stdint.h>
#include "ecg_quant.h"

static inline int32_t ecg_rounding_half_sum(int32_t a, int32_t b) {
    const int64_t s = (int64_t)a + (int64_t)b;
    return (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
}

/* x * 2^e, saturating (e > 0) */
static inline int32_t ecg_sat_shl(int32_t x, int32_t e) {
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out: Newton-Raphson in Q2.29 */
static inline int32_t ecg_one_over_one_plus_x(int32_t a) {
    const int32_t half_den = ecg_rounding_half_sum(a, INT32_MAX);
    int32_t x = (int32_t)((uint32_t)1515870810 + (uint32_t)ecg_srdhm(half_den, -1010580540));
    for (int i = 0; i < 3; ++i) {
        const int32_t hdx = ecg_srdhm(half_den, x);
        const int32_t one_minus = (int32_t)((uint32_t)(1 << 29) - (uint32_t)hdx);
        x = (int32_t)((uint32_t)x + (uint32_t)ecg_sat_shl(ecg_srdhm(x, one_minus), 2));
    }
    return ecg_sat_shl(x, 1);
}

/* TFLite's GetReciprocal: 1/x for x with `integer_digits` integer bits, as a Q0.31 scale and a shift */
static inline int32_t ecg_reciprocal(int32_t x, int32_t integer_digits, int32_t *num_bits_over_unit) {
    const int32_t headroom_plus_one = __builtin_clz((uint32_t)x);
    *num_bits_over_unit = integer_digits - headroom_plus_one;
    const int32_t shifted_minus_one = (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
    return ecg_one_over_one_plus_x(shifted_minus_one);
}
#endif

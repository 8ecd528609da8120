/* Shared by the optimised kernels (private): the DSP instructions they use (ARMv7E-M / ARMv8-M; C
 * emulations with the same arithmetic on cores and hosts without them) and the fast exact requantiser. */
#ifndef ECG_OPT_H
#define ECG_OPT_H
#include "ecg_kernels.h"
#include "ecg_quant.h"
#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define SMLAD(x, y, acc) ((int32_t)__smlad((x), (y), (acc)))
#define SXTB16(x) ((uint32_t)__sxtb16(x))
#define SAT8(x) __ssat((x), 8)
#define SMLABB(x, y, acc) ((int32_t)__smlabb((x), (y), (acc)))
#define SMLATB(x, y, acc) ((int32_t)__smlatb((x), (y), (acc)))
static inline uint32_t SXTB16_ROR8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
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
static inline int32_t SMLABB(uint32_t x, uint32_t y, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)x * (int16_t)y));
}
static inline int32_t SMLATB(uint32_t x, uint32_t y, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)(x >> 16) * (int16_t)y));
}
#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#define SAT8(x) __ssat((x), 8)     /* ARMv7-M has SSAT without the DSP extension */
#else
#define SAT8(x) ((x) < -128 ? -128 : ((x) > 127 ? 127 : (x)))
#endif
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

/* Fast exact requantisation. SMMULR(2a, m) = (2am + 2^31) >> 32 = floor((am + 2^30) / 2^31), TFLite's
 * SaturatingRoundingDoublingHighMul while |a| < 2^30; the rounding right shift by r >= 1 (half away from
 * zero) is (v + 2^(r-1) - (v < 0)) >> r, and the output offset rides in the same add as oo * 2^r.
 * SMMLAR adds that rounding bias for free, and (v < 0) may be replaced by (a < 0): they differ only when
 * v == 0, where both give the offset. rq_fast_ok says when a channel qualifies (no left shift, r >= 1,
 * no overflow); otherwise the generic path runs. */
static inline int32_t SMMLAR(int32_t a, int32_t b, int32_t acc) {
#if defined(__ARM_FEATURE_DSP)
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return (int32_t)(((int64_t)acc * ((int64_t)1 << 32) + (int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}
typedef struct { int32_t mult, right, rbias; } ecg_rqf;
static inline int rq_fast_ok(int32_t shift, int32_t oo) {
    return shift <= -1 && shift >= -22 && oo >= -128 && oo <= 127;
}
static inline ecg_rqf rq_fast_make(int32_t mult, int32_t shift, int32_t oo) {
    ecg_rqf q;
    q.mult = mult;
    q.right = -shift;
    q.rbias = (int32_t)((1 << (q.right - 1)) + (int32_t)((uint32_t)oo << q.right));
    return q;
}
/* acc2 = 2 * accumulator (|accumulator| < 2^30); result before the clamp, output offset included */
static inline int32_t rq_fast(int32_t acc2, int32_t mult, int32_t right, int32_t rbias) {
    return (SMMLAR(acc2, mult, rbias) + (acc2 >> 31)) >> right;
}

#define NCOL 4   /* output columns per conv block */

#if defined(ECG_KERNELS_MVE)
#include <arm_mve.h>
/* TFLite MultiplyByQuantizedMultiplier on four lanes, one multiplier and shift for all (ecg_kernels_mve.c
 * explains the VQRDMULH / VRSHL identities) */
static inline int32x4_t rq4(int32x4_t acc, int32_t mult, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    acc = vshlq_r_s32(acc, left);
    acc = vqrdmulhq_n_s32(acc, mult);
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(acc, vdupq_n_s32(-right)), 31);
    return vrshlq_n_s32(vqaddq_s32(acc, fixup), -right);
}
#endif
#endif

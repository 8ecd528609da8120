"""TFLite integer-arithmetic helpers in Python, used at generation time (multipliers, lookup tables).

Same semantics as TFLite's `QuantizeMultiplier`, `MultiplyByQuantizedMultiplier` and gemmlowp's
fixed-point logistic; the C kernels do the per-element work at run time.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(x: int) -> int:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def tflite_round(x: float) -> int:
    """std::round: halves away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier Q31, shift), shift > 0 meaning left shift, as TFLite's QuantizeMultiplier."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul for int32."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    q = abs(v) >> 31
    return _wrap32(q if v >= 0 else -q)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x: int, multiplier: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rounding_divide_by_pot(srdhm(_wrap32(x * (1 << left)), multiplier), right)


def mbqm_array(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """mbqm over an int64 array of int32 values (same integer steps, vectorised)."""
    x = np.asarray(x, np.int64)
    left, right = max(shift, 0), max(-shift, 0)
    x = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)
    ab = x * int(multiplier)
    v = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(v >= 0, np.abs(v) >> 31, -(np.abs(v) >> 31))
    if multiplier == INT32_MIN:
        q = np.where(x == INT32_MIN, INT32_MAX, q)
    q = (q + (1 << 31)) % (1 << 32) - (1 << 31)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (q < 0)
    return (q >> right) + ((q & mask) > threshold)


def _sat_mul_pot(x: int, exponent: int) -> int:
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return _wrap32(x << exponent)


def _rounding_half_sum(a: int, b: int) -> int:
    s = a + b
    sign = 1 if s >= 0 else -1
    v = s + sign
    return int(v / 2) if abs(v) < (1 << 52) else (abs(v) // 2) * (1 if v >= 0 else -1)


def _exp_on_interval(a: int) -> int:
    """exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    constant_term = 1895147668
    one_third = 715827883
    x = _wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    inner = _sat_mul_pot(_wrap32(srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return _wrap32(constant_term + srdhm(constant_term, _wrap32(x + inner)))


def _exp_on_negative_values(a: int, integer_bits: int) -> int:
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    mask = one_quarter - 1
    a_mod = _wrap32((a & mask) - one_quarter)
    result = _exp_on_interval(_sat_mul_pot(a_mod, integer_bits))
    remainder = _wrap32(a_mod - a)
    barrel = [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
              (3, 720401), (4, 242)]
    for exponent, mult in barrel:
        if integer_bits > exponent and remainder & (1 << (frac + exponent)):
            result = srdhm(result, mult)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _one_over_one_plus_x(a: int) -> int:
    """1/(1+x) for x in (0,1): Q0.31 in and out (Newton-Raphson in Q2.29)."""
    half_den = _rounding_half_sum(a, INT32_MAX)
    x = _wrap32(1515870810 + srdhm(half_den, -1010580540))
    one_f2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_den, x)
        x = _wrap32(x + _sat_mul_pot(srdhm(x, _wrap32(one_f2 - hdx)), 2))
    return _sat_mul_pot(x, 1)


def gemmlowp_logistic(a: int, integer_bits: int) -> int:
    """logistic of a fixed-point int32 with `integer_bits` integer bits; Q0.31 result."""
    if a == 0:
        return 1 << 30
    abs_a = a if a > 0 else _wrap32(-a)
    pos = _one_over_one_plus_x(_exp_on_negative_values(_wrap32(-abs_a), integer_bits))
    return pos if a > 0 else _wrap32(INT32_MAX - pos)


def logistic_lut(input_scale: float, input_zero_point: int) -> np.ndarray:
    """int8 -> int8 table of TFLM's int8 LOGISTIC (output scale 1/256, zero point -128)."""
    input_bits = 4
    real = float(np.float32(input_scale)) * float(1 << (31 - input_bits))
    q, left_shift = math.frexp(real)
    mult = tflite_round(q * (1 << 31))
    radius = math.floor(((1 << input_bits) - 1) * (1 << (31 - input_bits)) / (1 << left_shift)) \
        if left_shift >= 0 else math.floor(((1 << input_bits) - 1) * (1 << (31 - input_bits)) * 2.0 ** -left_shift)
    out = np.empty(256, np.int8)
    for raw in range(-128, 128):
        x = raw - input_zero_point
        if x <= -radius:
            v = -128
        elif x >= radius:
            v = 127
        else:
            q4 = mbqm(x, mult, left_shift)
            r = rounding_divide_by_pot(gemmlowp_logistic(q4, input_bits), 23) - 128
            v = min(max(r, -128), 127)
        out[raw + 128] = v
    return out


def requantize_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 -> int8 table of TFLite's int8 QUANTIZE (requantise) kernel."""
    m, s = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    vals = [min(max(mbqm(r - in_zp, m, s) + out_zp, -128), 127) for r in range(-128, 128)]
    return np.asarray(vals, np.int8)


def quantize_value(f: float, scale: float, zero_point: int) -> int:
    """TFLite's Quantize for activation ranges: zp + round(f / scale) in float32."""
    return int(zero_point + tflite_round(float(np.float32(f) / np.float32(scale))))


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (act: 0 none, 1 relu, 2 relu_n1_to_1, 3 relu6)."""
    lo, hi = -128, 127
    if act == 1:
        lo = max(lo, quantize_value(0.0, scale, zero_point))
    elif act == 2:
        lo = max(lo, quantize_value(-1.0, scale, zero_point))
        hi = min(hi, quantize_value(1.0, scale, zero_point))
    elif act == 3:
        lo = max(lo, quantize_value(0.0, scale, zero_point))
        hi = min(hi, quantize_value(6.0, scale, zero_point))
    elif act != 0:
        raise ValueError(f"fused activation {act} unsupported (supported: NONE, RELU, RELU_N1_TO_1, RELU6)")
    return lo, hi

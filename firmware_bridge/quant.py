"""TFLite integer-arithmetic helpers in Python, used at generation time (multipliers, lookup tables).

Same semantics as TFLite's `QuantizeMultiplier`, `MultiplyByQuantizedMultiplier` and gemmlowp's
fixed-point logistic; the C kernels do the per-element work at run time.
"""

from __future__ import annotations

import functools
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


def _reciprocal_of_one_plus_half_sum(a: int) -> int:
    """gemmlowp's Newton-Raphson division: x ~ 1 / ((1 + a) / 2) in Q2.29, for a in (0, 1) in Q0.31."""
    half_den = _rounding_half_sum(a, INT32_MAX)
    x = _wrap32(1515870810 + srdhm(half_den, -1010580540))
    one_f2 = 1 << 29
    for _ in range(3):
        hdx = srdhm(half_den, x)
        x = _wrap32(x + _sat_mul_pot(srdhm(x, _wrap32(one_f2 - hdx)), 2))
    return x


def _one_over_one_plus_x(a: int) -> int:
    """1/(1+x) for x in (0,1): Q0.31 in and out (Newton-Raphson in Q2.29)."""
    return _sat_mul_pot(_reciprocal_of_one_plus_half_sum(a), 1)


def gemmlowp_logistic(a: int, integer_bits: int) -> int:
    """logistic of a fixed-point int32 with `integer_bits` integer bits; Q0.31 result."""
    if a == 0:
        return 1 << 30
    abs_a = a if a > 0 else _wrap32(-a)
    pos = _one_over_one_plus_x(_exp_on_negative_values(_wrap32(-abs_a), integer_bits))
    return pos if a > 0 else _wrap32(INT32_MAX - pos)


def _cached_table(build):
    """An int8 -> int8 table builder cached per (float32 input scale, zero point); each caller gets its own
    copy. 256 gemmlowp evaluations in Python take ~5 ms, and an unrolled GRU has a LOGISTIC / TANH per gate
    and step, each lowered more than once by edge-analyze."""
    @functools.lru_cache(maxsize=4096)
    def as_bytes(input_scale: float, input_zero_point: int) -> bytes:
        return build(input_scale, input_zero_point).tobytes()

    @functools.wraps(build)
    def table(input_scale: float, input_zero_point: int) -> np.ndarray:
        return np.frombuffer(as_bytes(float(np.float32(input_scale)), int(input_zero_point)), np.int8).copy()
    return table


@_cached_table
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


# ---- general ops (issue 18): the integer arithmetic of tflite-micro's reference kernels, at generation time ----

def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite's CalculateInputRadius (float version): floor((2^ib - 1) * 2^(tsb - ib) / 2^left_shift)."""
    return math.floor(((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                      * 2.0 ** -input_left_shift)


def _one_minus_x_over_one_plus_x(a: int) -> int:
    """(1 - x) / (1 + x) = 2 / (1 + x) - 1 for x in (0, 1): Q0.31 in and out (gemmlowp)."""
    return _sat_mul_pot(_wrap32(_reciprocal_of_one_plus_half_sum(a) - (1 << 29)), 2)


def gemmlowp_tanh(a: int, integer_bits: int) -> int:
    """gemmlowp's tanh of a fixed-point int32 with `integer_bits` integer bits; Q0.31 result."""
    if a == 0:
        return 0
    n = a if a < 0 else _wrap32(-a)
    t = _one_minus_x_over_one_plus_x(_exp_on_negative_values(n, integer_bits + 1))   # ExactMulByPot<1>
    return _wrap32(-t) if a < 0 else t


@_cached_table
def tanh_lut(input_scale: float, input_zero_point: int) -> np.ndarray:
    """int8 -> int8 table of tflite-micro's int8 TANH (reference_integer_ops::Tanh; output 1/128, zero point 0)."""
    input_bits = 4
    real = float(np.float32(input_scale)) * float(1 << (31 - input_bits))
    q, left_shift = math.frexp(real)
    mult = tflite_round(q * (1 << 31))
    radius = calculate_input_radius(input_bits, left_shift)
    out = np.empty(256, np.int8)
    for raw in range(-128, 128):
        x = raw - input_zero_point
        if x <= -radius:
            v = -128
        elif x >= radius:
            v = 127
        else:
            v = min(max(rounding_divide_by_pot(gemmlowp_tanh(mbqm(x, mult, left_shift), input_bits), 24), -128), 127)
        out[raw + 128] = v
    return out


def _f32(x) -> np.float32:
    return np.float32(x)


def round_half_away_f32(x) -> int:
    """TfLiteRound / std::round of a float32 value (exact: done in float64)."""
    v = float(np.float32(x))
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def relu_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """tflite-micro's int8 RELU (ReluQuantized with CalculateReluOpData)."""
    m, s = quantize_multiplier(float(_f32(in_scale) / _f32(out_scale)))
    lo = max(-128, out_zp + round_half_away_f32(_f32(0.0) / _f32(out_scale)))
    vals = [min(max(out_zp + mbqm(r - in_zp, m, s), lo), 127) for r in range(-128, 128)]
    return np.asarray(vals, np.int8)


def relu6_lut(in_scale: float, in_zp: int) -> np.ndarray:
    """tflite-micro's int8 RELU6: a clamp to [zero point, quantised 6.0] of the input (no rescale)."""
    six = min(max(round_half_away_f32(_f32(6.0) / _f32(in_scale)) + in_zp, -128), 127)
    return np.asarray([min(max(r, in_zp), six) for r in range(-128, 128)], np.int8)


def leaky_relu_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int, alpha: float) -> np.ndarray:
    """tflite-micro's int8 LEAKY_RELU (QuantizeLeakyRelu; float scale products as CalculateOpDataLeakyRelu)."""
    ma, sa = quantize_multiplier(float(_f32(_f32(in_scale) * _f32(alpha)) / _f32(out_scale)))
    mi, si = quantize_multiplier(float(_f32(in_scale) / _f32(out_scale)))
    neg = ma < 0
    out = np.empty(256, np.int8)
    for raw in range(-128, 128):
        x = raw - in_zp
        if x >= 0:
            v = out_zp + mbqm(x, mi, si)
        else:
            t = mbqm(x, -ma if neg else ma, sa)
            v = out_zp + (-t if neg else t)
        out[raw + 128] = min(max(v, -128), 127)
    return out


def _wrap16(x: int) -> int:
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def _srdhm16(a: int, b: int) -> int:
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else 1 - (1 << 14)
    v = ab + nudge
    return _wrap16(int(v / (1 << 15)) if abs(v) < (1 << 52) else v // (1 << 15))


def _sdhm16(a: int, b: int) -> int:
    """TFLite's SaturatingDoublingHighMul (int16, rounding toward zero)."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    return _wrap16(int((a * b) / (1 << 15)))


def _rdpot16(x: int, exponent: int) -> int:
    mask = _wrap16((1 << exponent) - 1)
    remainder = _wrap16(x & mask)
    threshold = _wrap16((mask >> 1) + (1 if x < 0 else 0))
    return _wrap16((x >> exponent) + (1 if remainder > threshold else 0))


def _sat_lshift16(v: int, amount: int) -> int:
    return min(max(v * (1 << amount), -(1 << 15)), (1 << 15) - 1)


def _downscale_to_int16(m32: int) -> int:
    if m32 >= INT32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (m32 + (1 << 15)) >> 16


def hard_swish_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """tflite-micro's int8 HARD_SWISH (reference_ops::HardSwish with HardSwishPrepare's float32 scales)."""
    hires = _f32(_f32(1.0 / 128.0) * _f32(in_scale))
    out_m32, out_exp = quantize_multiplier(float(_f32(hires / _f32(out_scale))))
    relu_m32, relu_exp = quantize_multiplier(float(_f32(hires / _f32(3.0 / 32768.0))))
    out_m, relu_m = _downscale_to_int16(out_m32), _downscale_to_int16(relu_m32)
    out = np.empty(256, np.int8)
    for raw in range(-128, 128):
        x = _wrap16(raw - in_zp)
        hx = _wrap16(x * (1 << 7))
        pre_out = _srdhm16(hx, out_m)
        reluish = hx
        if relu_exp > 0:
            reluish = _sat_lshift16(reluish, relu_exp - 1)
        reluish = _srdhm16(reluish, relu_m)
        if relu_exp > 0:
            reluish = _sat_lshift16(reluish, 1)
        if relu_exp < 0:
            reluish = _rdpot16(reluish, -relu_exp)
        reluish = _wrap16((reluish + (1 << 15)) >> 1)
        pre = _sdhm16(reluish, pre_out)
        v = _wrap16(_rdpot16(pre, -out_exp) + out_zp)
        out[raw + 128] = min(max(v, -128), 127)
    return out


def dequantize_table(scale: float, zero_point: int) -> np.ndarray:
    """float32 of every int8 q under tflite's Dequantize: float(double(scale) * (q - zp))."""
    return np.asarray([np.float32(float(np.float32(scale)) * (q - zero_point)) for q in range(-128, 128)], np.float32)


def float_quantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """tflite's AffineQuantize of float32 values to int8: round half away from zero of x / scale in float32."""
    q = np.asarray(values, np.float32) / np.float32(scale)
    r = np.sign(q.astype(np.float64)) * np.floor(np.abs(q.astype(np.float64)) + 0.5)
    return np.clip(np.clip(r, -1000, 1000) + zero_point, -128, 127).astype(np.int8)


def dequantize_quantize_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 -> int8 table of DEQUANTIZE followed by a float QUANTIZE (a float detour inside a full-INT8 graph)."""
    return float_quantize(dequantize_table(in_scale, in_zp), out_scale, out_zp)


def softmax_exp_table(input_scale: float, beta: float) -> np.ndarray:
    """exp_on_negative_values of the rescaled difference d = max - x (d = 0..255), Q0.31, as tflite-micro's int8
    SOFTMAX computes it (PreprocessSoftmaxScaling with 5 integer bits); 0 where the difference is below diff_min."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << 26), float((1 << 31) - 1))
    mult, shift = quantize_multiplier(real)
    diff_min = -calculate_input_radius(5, shift)
    table = np.zeros(256, np.int64)
    for d in range(256):
        diff = -d
        if diff >= diff_min:
            table[d] = _exp_on_negative_values(srdhm(_wrap32(diff * (1 << shift)), mult), 5)
    return table


# The 256-entry table of TFLite's int16 LOGISTIC and TANH (sigmoid(i/24) in 0.16 fixed point, tuned by TFLite:
# not round(65536 * sigmoid(i/24)) everywhere, so it is data, not a formula). Recovered from tflite-micro's
# own int16 TANH outputs over all 65536 inputs (each segment's start value and slope are unique);
# tests/test_engine_ops.py::test_int16_sigmoid_table_is_tflite_micros re-derives it and compares.
SIGMOID_TABLE_UINT16 = (
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
)


def sigmoid_table_uint16() -> np.ndarray:
    return np.asarray(SIGMOID_TABLE_UINT16, np.int64)


def checked_log2(x: float) -> int:
    """TFLite's CheckedLog2 rounded exponent of a power-of-two scale."""
    return int(round_half_away_f32(_f32(math.log(float(np.float32(x)))) * _f32(1.0 / math.log(2.0))))

"""Lowerings of the general ops (issue 18) into the op registry of ops.py: softmax; element-wise int8
activations as exact 256-entry tables (TANH, HARD_SWISH, RELU, RELU6, LEAKY_RELU); SUB, MAXIMUM, MINIMUM,
PRELU with broadcasting; data movement as strided copies (TRANSPOSE, STRIDED_SLICE, SLICE, SPLIT, SPLIT_V,
CONCATENATION, PACK, UNPACK); SUM and MEAN over any axes; BATCH_MATMUL; float edges (QUANTIZE of a float
model input, DEQUANTIZE to a float model output, and float detours DEQUANTIZE -> moves -> QUANTIZE inside a
full-INT8 graph); the int8 UNIDIRECTIONAL_SEQUENCE_LSTM.

Every parameter is computed here, once, with the integer and float32 arithmetic of tflite-micro's reference
kernels (quant.py); the C kernels (c/ecg_kernels_general.c, c/ecg_kernels_lstm.c) only do the per-element work.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ecgedge.firmware_bridge import quant
from ecgedge.firmware_bridge.ops import (CArray, Layer, _act, _binary_inputs, _broadcast, _fail, _int8_act,
                                         _lut_layer, _register)
from ecgedge.firmware_bridge.tflite_model import Operator, Tensor, TfliteModel

MAX_COPY_DIMS = 6          # c/ecg_kernels.h ECG_COPY_MAX_DIMS


# ---------------------------------------------------------------- float edges and float detours

# ops that only move float values around: a float tensor they read may stay a view of the int8 values
# (and their float outputs are views too) as long as every path ends in a QUANTIZE
FLOAT_MOVES = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SLICE", "TRANSPOSE",
               "CONCATENATION", "PACK", "UNPACK"}


def prepare_model(model: TfliteModel) -> TfliteModel:
    """Check the float tensors of a full-INT8 graph and turn float detours into int8 views.

    Allowed: a float32 model input read only by QUANTIZE ops (the engine quantises it in C, as tflite's
    AffineQuantize), a float32 model output written by a DEQUANTIZE (a float table per int8 value), and inside
    the graph DEQUANTIZE -> data-movement ops -> QUANTIZE (the converter emits this in unrolled GRUs): the float
    tensors there hold exactly the dequantised int8 values, so they become int8 tensors with the DEQUANTIZE
    input's scale and zero point (float_view), DEQUANTIZE becomes an alias and the closing QUANTIZE a table of
    the float arithmetic. Anything else with float tensors fails here, naming the op."""
    used = {t for op in model.operators for t in op.inputs + op.outputs if t >= 0} | set(model.inputs + model.outputs)
    floats = {t.index for t in model.tensors if t.type_name == "float32" and not t.is_const and t.index in used}
    if not floats:
        return model
    producer = {o: op for op in model.operators for o in op.outputs}
    consumers: dict[int, list[Operator]] = {}
    for op in model.operators:
        for t in op.inputs:
            if t >= 0:
                consumers.setdefault(t, []).append(op)
    views: dict[int, tuple[float, int]] = {}
    for op in model.operators:                        # topological order: producers come first
        if op.name == "DEQUANTIZE" and op.outputs[0] in floats and op.outputs[0] not in model.outputs:
            x = model.tensors[op.inputs[0]]
            if x.type_name == "int8":
                views[op.outputs[0]] = (float(x.scale[0]), int(x.zero_point[0]))
        elif op.name in FLOAT_MOVES and any(i in views for i in op.inputs if i >= 0):
            src = {views[i] for i in op.inputs if i in views}
            if len(src) != 1 or any(i in floats and i not in views for i in op.inputs if i >= 0):
                _fail(op, "float inputs with different origins; supported: one dequantised int8 source")
            for o in op.outputs:
                if o in model.outputs:
                    _fail(op, "a float detour reaches the model output; supported: DEQUANTIZE as the last op")
                views[o] = next(iter(src))
    for t in floats:
        if t in views:
            for op in consumers.get(t, []):
                if op.name not in FLOAT_MOVES and op.name != "QUANTIZE":
                    _fail(op, f"reads float tensor {t} (a dequantised value); supported: data movement, then QUANTIZE")
        elif t in model.inputs:
            for op in consumers.get(t, []):
                if op.name != "QUANTIZE":
                    _fail(op, f"reads the float model input {t}; supported: QUANTIZE as the first op")
        elif t in model.outputs:
            op = producer.get(t)
            if op is None or op.name != "DEQUANTIZE":
                raise_op = op or model.operators[-1]
                _fail(raise_op, f"writes the float model output {t}; supported: DEQUANTIZE as the last op")
        else:
            op = producer.get(t) or consumers.get(t, [model.operators[0]])[0]
            _fail(op, f"float32 tensor {t} ({model.tensors[t].name!r}); supported: full-INT8 graphs "
                      "(float only at the model's edges or as a dequantise/quantise detour)")
    tensors = list(model.tensors)
    for t, (scale, zp) in views.items():
        tensors[t] = dataclasses.replace(tensors[t], type_name="int8", scale=np.asarray([scale], np.float32),
                                         zero_point=np.asarray([zp], np.int64), float_view=True)
    return dataclasses.replace(model, tensors=tensors)


@_register("DEQUANTIZE")
def _lower_dequantize(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    y = model.tensors[op.outputs[0]]
    if y.float_view:          # float detour: the int8 values stay where they are
        return Layer(op.index, op.name, [x.index], [y.index], call="", alias_of=x.index, summary="dequantize (view)")
    if y.type_name != "float32":
        _fail(op, f"output tensor {y.index} is {y.type_name}; supported: float32")
    name = f"L{op.index}_deq"
    table = quant.dequantize_table(float(x.scale[0]), int(x.zero_point[0]))
    return Layer(op.index, op.name, [x.index], [y.index],
                 call="ecg_dequantize_f32((const float *)%s, %d, {t%d}, (float *)({t%d}));" % (
                     name, int(np.prod(x.shape)), x.index, y.index),
                 consts=[CArray(name, "float", table)], summary="dequantize to float (table)")


@_register("QUANTIZE")
def _lower_quantize_op(model, op):
    """QUANTIZE: float model input -> int8 (in C), a float view -> int8 (table of the float arithmetic), or
    int8 -> int8 (ops.py's requantise table)."""
    from ecgedge.firmware_bridge.ops import _requantize as requantize

    x = model.tensors[op.inputs[0]]
    y = _int8_act(model, op, op.outputs[0], "output")
    if x.type_name == "float32":
        return Layer(op.index, op.name, [x.index], [y.index],
                     call="ecg_quantize_f32(%sf, %d, %d, (const float *)({t%d}), {t%d});" % (
                         repr(float(np.float32(y.scale[0]))), int(y.zero_point[0]), int(np.prod(x.shape)),
                         x.index, y.index),
                     summary="quantize float input")
    if x.float_view:
        lut = quant.dequantize_quantize_lut(float(x.scale[0]), int(x.zero_point[0]), float(y.scale[0]),
                                            int(y.zero_point[0]))
        return _lut_layer(model, op, lut, "quantize of a dequantised value (LUT)")
    return requantize(model, op)


# ---------------------------------------------------------------- element-wise activations (exact tables)

def _in_out(model, op):
    return _int8_act(model, op, op.inputs[0], "input"), _int8_act(model, op, op.outputs[0], "output")


@_register("TANH")
def _tanh(model, op):
    x, y = _in_out(model, op)
    if int(y.zero_point[0]) != 0 or not np.isclose(y.scale[0], 1 / 128):
        _fail(op, f"output quantisation {y.scale[0]}/{y.zero_point[0]}; supported: 1/128, 0")
    return _lut_layer(model, op, quant.tanh_lut(float(x.scale[0]), int(x.zero_point[0])), "tanh (LUT)")


@_register("HARD_SWISH")
def _hard_swish(model, op):
    x, y = _in_out(model, op)
    return _lut_layer(model, op, quant.hard_swish_lut(float(x.scale[0]), int(x.zero_point[0]), float(y.scale[0]),
                                                      int(y.zero_point[0])), "hard swish (LUT)")


@_register("RELU")
def _relu(model, op):
    x, y = _in_out(model, op)
    return _lut_layer(model, op, quant.relu_lut(float(x.scale[0]), int(x.zero_point[0]), float(y.scale[0]),
                                                int(y.zero_point[0])), "relu (LUT)")


@_register("RELU6")
def _relu6(model, op):
    x, _ = _in_out(model, op)
    return _lut_layer(model, op, quant.relu6_lut(float(x.scale[0]), int(x.zero_point[0])), "relu6 (LUT)")


@_register("LEAKY_RELU")
def _leaky_relu(model, op):
    x, y = _in_out(model, op)
    alpha = float(op.options.get("alpha", 0.2))
    return _lut_layer(model, op, quant.leaky_relu_lut(float(x.scale[0]), int(x.zero_point[0]), float(y.scale[0]),
                                                      int(y.zero_point[0]), alpha), f"leaky relu {alpha:g} (LUT)")


# ---------------------------------------------------------------- softmax

@_register("SOFTMAX")
def _softmax(model, op):
    x, y = _in_out(model, op)
    if int(y.zero_point[0]) != -128 or float(y.scale[0]) != 1 / 256:
        _fail(op, f"output quantisation {y.scale[0]}/{y.zero_point[0]}; supported: 1/256, -128 (int8 softmax)")
    if not x.shape:
        _fail(op, "scalar input; supported: at least one dimension")
    depth = int(x.shape[-1])
    name = f"L{op.index}_exp"
    table = quant.softmax_exp_table(float(x.scale[0]), float(op.options.get("beta", 1.0)))
    p = dict(outer=int(np.prod(x.shape)) // max(depth, 1), depth=depth, exp_table=name)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_softmax_params", p,
                 "ecg_softmax_ref({p}, {t%d}, {t%d});" % (x.index, y.index), [CArray(name, "int32_t", table)],
                 summary=f"softmax over {depth}")


# ---------------------------------------------------------------- binary ops with broadcasting

def _max_dims(op, *shapes):
    for s in shapes:
        s = list(s)
        while len(s) > 4 and s[0] == 1:
            s.pop(0)
        if len(s) > 4:
            _fail(op, f"shape {list(s)} has more than 4 dimensions; supported: up to 4 (broadcast ops)")


def _squeeze4(shape):
    s = list(shape)
    while len(s) > 4 and s[0] == 1:
        s.pop(0)
    return tuple(s)


def _binary(model, op, call: str, fill) -> Layer:
    a, b = (model.tensors[i] for i in op.inputs[:2])
    y = _int8_act(model, op, op.outputs[0], "output")
    _max_dims(op, a.shape, b.shape, y.shape)
    consts: list[CArray] = []
    ptrs, acts = _binary_inputs(model, op, consts)
    p = _broadcast(op, _squeeze4(a.shape), _squeeze4(b.shape), _squeeze4(y.shape))
    base = dict(in1_offset=0, in2_offset=0, out_offset=0, act_min=-128, act_max=127, left_shift=0, in1_mult=0,
                in1_shift=0, in2_mult=0, in2_shift=0, out_mult=0, out_shift=0, mult=0, shift=0, lut1="NULL",
                lut2="NULL", pair="NULL")
    p.update(base)
    summary = fill(p, a, b, y)
    return Layer(op.index, op.name, acts, [y.index], "ecg_binary_params", p,
                 "%s({p}, %s, %s, {t%d});" % (call, ptrs[0], ptrs[1], y.index), consts, summary=summary)


@_register("SUB")
def _sub(model, op):
    def fill(p, a, b, y):
        # tflite-micro CalculateOpDataSub: float32 scale arithmetic, left shift 20
        sa, sb, so = (np.float32(t.scale[0]) for t in (a, b, y))
        twice_max = np.float32(2) * max(sa, sb)
        m1, s1 = quant.quantize_multiplier(float(np.float32(sa / twice_max)))
        m2, s2 = quant.quantize_multiplier(float(np.float32(sb / twice_max)))
        mo, s_o = quant.quantize_multiplier(float(np.float32(twice_max / np.float32(np.float32(1 << 20) * so))))
        lo, hi = _act(model, op, y)
        p.update(in1_offset=-int(a.zero_point[0]), in2_offset=-int(b.zero_point[0]), out_offset=int(y.zero_point[0]),
                 act_min=lo, act_max=hi, left_shift=20, in1_mult=m1, in1_shift=s1, in2_mult=m2, in2_shift=s2,
                 out_mult=mo, out_shift=s_o)
        return f"sub {list(a.shape)}-{list(b.shape)}"
    for i in op.inputs[:2]:
        _int8_act(model, op, i, "input")
    return _binary(model, op, "ecg_sub_ref", fill)


def _minmax(model, op, call):
    for k, i in enumerate(op.inputs[:2]):
        _int8_act(model, op, i, f"input {k}")
    return _binary(model, op, call, lambda p, a, b, y: f"{op.name.lower()} {list(a.shape)},{list(b.shape)}")


@_register("MAXIMUM")
def _maximum(model, op):
    return _minmax(model, op, "ecg_maximum_ref")


@_register("MINIMUM")
def _minimum(model, op):
    return _minmax(model, op, "ecg_minimum_ref")


@_register("PRELU")
def _prelu(model, op):
    def fill(p, x, alpha, y):
        sx, sa, so = (float(np.float32(t.scale[0])) for t in (x, alpha, y))
        m1, s1 = quant.quantize_multiplier(sx / so)
        m2, s2 = quant.quantize_multiplier(sx * sa / so)
        p.update(in1_offset=-int(x.zero_point[0]), in2_offset=-int(alpha.zero_point[0]),
                 out_offset=int(y.zero_point[0]), in1_mult=m1, in1_shift=s1, in2_mult=m2, in2_shift=s2)
        return f"prelu {list(x.shape)} alpha {list(alpha.shape)}"
    _int8_act(model, op, op.inputs[0], "input")
    _int8_act(model, op, op.inputs[1], "alpha")
    return _binary(model, op, "ecg_prelu_ref", fill)


# ---------------------------------------------------------------- data movement as strided copies

def _affine(idx: np.ndarray) -> tuple[int, list[int]]:
    """(base, strides) with idx[i0, i1, ...] == base + sum i_k * strides[k]; raises when not affine."""
    base = int(idx.flat[0]) if idx.size else 0
    strides = []
    for k, n in enumerate(idx.shape):
        if n > 1:
            sel = [0] * idx.ndim
            sel[k] = 1
            strides.append(int(idx[tuple(sel)]) - base)
        else:
            strides.append(0)
    grid = np.indices(idx.shape).reshape(idx.ndim, -1) if idx.ndim else np.zeros((0, 1), np.int64)
    if not np.array_equal(base + np.asarray(strides, np.int64) @ grid, idx.reshape(-1)):
        raise ValueError("not an affine index map")
    return base, strides


def copy_params(op: Operator, in_idx: np.ndarray, out_idx: np.ndarray) -> dict:
    """ecg_copy_params for out[out_idx[i]] = in[in_idx[i]] over the index space of the two arrays (same shape)."""
    try:
        ib, ist = _affine(in_idx)
        ob, ost = _affine(out_idx)
    except ValueError:
        _fail(op, "index map is not a strided copy")
    dims = [int(n) for n in in_idx.shape]
    keep = [k for k, n in enumerate(dims) if n > 1]
    d, s_in, s_out = [dims[k] for k in keep], [ist[k] for k in keep], [ost[k] for k in keep]
    if not d:                                    # a single element (scalar or all dims 1)
        d, s_in, s_out = [1], [0], [0]
    # merge a dim into the next (inner) one where both sides are contiguous across them
    k = len(d) - 2
    while k >= 0:
        if s_in[k] == s_in[k + 1] * d[k + 1] and s_out[k] == s_out[k + 1] * d[k + 1]:
            d[k + 1] *= d[k]
            del d[k], s_in[k], s_out[k]
        k -= 1
    if len(d) > MAX_COPY_DIMS:
        _fail(op, f"copy over {len(d)} dimensions; supported: up to {MAX_COPY_DIMS}")
    pad = MAX_COPY_DIMS - len(d)
    return dict(ndim=len(d), dims=d + [1] * pad, in_strides=s_in + [0] * pad, out_strides=s_out + [0] * pad,
                in_base=ib, out_base=ob)


def _copy_layer(model: TfliteModel, op: Operator, parts: list[tuple[int, int, np.ndarray, np.ndarray]],
                what: str) -> Layer:
    """One layer of strided copies; parts: (input tensor, output tensor, input index map, output index map)."""
    for i, o, _, _ in parts:
        xi, yo = model.tensors[i], model.tensors[o]
        for t, role in ((xi, "input"), (yo, "output")):
            if t.type_name != "int8" and not t.is_const:
                _fail(op, f"{role} tensor {t.index} is {t.type_name}; supported: int8")
    consts, params, calls, acts_in = [], [], [], []
    for k, (i, o, ii, oo) in enumerate(parts):
        t = model.tensors[i]
        if t.is_const:
            name = f"L{op.index}_src{k}"
            consts.append(CArray(name, "int8_t", np.asarray(t.data).reshape(-1)))
            src = name
        else:
            src = "{t%d}" % i
            acts_in.append(i)
        params.append(copy_params(op, ii, oo))
        calls.append("ecg_strided_copy({p%d}, %s, {t%d});" % (k, src, o))
    outs = list(dict.fromkeys(o for _, o, _, _ in parts))
    return Layer(op.index, op.name, list(dict.fromkeys(acts_in)), outs, "ecg_copy_params", params, " ".join(calls),
                 consts, summary=what)


def _same_quant(op, tensors):
    q = {(float(t.scale[0]), int(t.zero_point[0])) for t in tensors if t.scale.size}
    if len(q) > 1:
        _fail(op, f"inputs and outputs quantised differently {sorted(q)}; supported: equal (a plain copy)")


def _axis(op, axis, ndim):
    a = int(axis)
    if not -ndim <= a < ndim:
        _fail(op, f"axis {a} out of range for {ndim} dimensions")
    return a % ndim


def _const(model, op, idx, what):
    t = model.tensors[idx]
    if not t.is_const:
        _fail(op, f"{what} tensor {idx} is not constant; supported: constant {what}")
    return np.asarray(t.data).reshape(-1).astype(np.int64)


def _arange(t: Tensor) -> np.ndarray:
    return np.arange(int(np.prod(t.shape)), dtype=np.int64).reshape(t.shape)


def _check_shape(op, got, t: Tensor):
    if tuple(int(n) for n in got) != tuple(int(n) for n in t.shape):
        _fail(op, f"computed output shape {list(got)} differs from the model's {list(t.shape)}")


@_register("TRANSPOSE")
def _transpose(model, op):
    x, y = _in_out(model, op)
    perm = _const(model, op, op.inputs[1], "permutation")
    src = np.transpose(_arange(x), [int(p) % len(x.shape) for p in perm])
    _check_shape(op, src.shape, y)
    return _copy_layer(model, op, [(x.index, y.index, src, _arange(y))], f"transpose {perm.tolist()}")


def _slice_indices(op, x: Tensor, begin, end, strides, opts) -> tuple[np.ndarray, list[int]]:
    """tflite-micro's strided slice (StridedSliceStartForAxis/EndForAxis, masks, offset) as index arrays."""
    nd = len(x.shape)
    if opts.get("ellipsisMask", 0) or opts.get("newAxisMask", 0):
        _fail(op, "ellipsis or new-axis mask; supported: begin, end and shrink-axis masks (as tflite-micro)")
    src = _arange(x)
    shrink = []
    for ax in range(nd):
        size = int(x.shape[ax])
        stride = int(strides[ax]) if ax < len(strides) else 1
        if stride == 0:
            _fail(op, "stride 0")
        start = int(begin[ax]) if ax < len(begin) else 0
        if start < 0:
            start += size
        start = min(max(start, 0), size) if stride > 0 else min(max(start, -1), size - 1)
        if opts.get("beginMask", 0) & (1 << ax):
            start = 0 if stride > 0 else size - 1
        if opts.get("shrinkAxisMask", 0) & (1 << ax):
            stop = start if start >= size else start + 1
            shrink.append(ax)
        else:
            stop = int(end[ax]) if ax < len(end) else size
            if opts.get("offset", False):
                stop += start
            if stop < 0:
                stop += size
            stop = min(max(stop, 0), size) if stride > 0 else min(max(stop, -1), size - 1)
            if opts.get("endMask", 0) & (1 << ax):
                stop = size if stride > 0 else -1
        src = np.take(src, np.arange(start, stop, stride), axis=ax)
    return np.squeeze(src, axis=tuple(shrink)) if shrink else src, shrink


@_register("STRIDED_SLICE")
def _strided_slice(model, op):
    x, y = _in_out(model, op)
    _same_quant(op, [x, y])
    begin, end, strides = (_const(model, op, i, w) for i, w in zip(op.inputs[1:4], ("begin", "end", "strides")))
    src, _ = _slice_indices(op, x, begin, end, strides, op.options)
    _check_shape(op, src.shape, y)
    return _copy_layer(model, op, [(x.index, y.index, src, _arange(y))], "strided slice")


@_register("SLICE")
def _slice(model, op):
    x, y = _in_out(model, op)
    _same_quant(op, [x, y])
    begin, size = _const(model, op, op.inputs[1], "begin"), _const(model, op, op.inputs[2], "size")
    src = _arange(x)
    for ax, (b, n) in enumerate(zip(begin, size)):
        n = int(x.shape[ax]) - int(b) if n < 0 else int(n)
        src = np.take(src, np.arange(int(b), int(b) + n), axis=ax)
    _check_shape(op, src.shape, y)
    return _copy_layer(model, op, [(x.index, y.index, src, _arange(y))], "slice")


def _split_parts(model, op, x: Tensor, axis: int, sizes: list[int]):
    outs = [model.tensors[o] for o in op.outputs]
    _same_quant(op, [x, *outs])
    src, parts, start = _arange(x), [], 0
    for o, n in zip(outs, sizes):
        piece = np.take(src, np.arange(start, start + n), axis=axis)
        _check_shape(op, piece.shape, o)
        parts.append((x.index, o.index, piece, _arange(o)))
        start += n
    return parts


@_register("SPLIT")
def _split(model, op):
    x = _int8_act(model, op, op.inputs[1], "input")
    axis = _axis(op, _const(model, op, op.inputs[0], "axis")[0], len(x.shape))
    n = len(op.outputs)
    if x.shape[axis] % n:
        _fail(op, f"axis size {x.shape[axis]} not divisible into {n} splits")
    parts = _split_parts(model, op, x, axis, [x.shape[axis] // n] * n)
    return _copy_layer(model, op, parts, f"split axis {axis} into {n}")


@_register("SPLIT_V")
def _split_v(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    axis = _axis(op, _const(model, op, op.inputs[2], "axis")[0], len(x.shape))
    sizes = [int(s) for s in _const(model, op, op.inputs[1], "size_splits")]
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = int(x.shape[axis]) - (sum(sizes) + 1)
    parts = _split_parts(model, op, x, axis, sizes)
    return _copy_layer(model, op, parts, f"split_v axis {axis} {sizes}")


@_register("UNPACK")
def _unpack(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    axis = _axis(op, op.options.get("axis", 0), len(x.shape))
    outs = [model.tensors[o] for o in op.outputs]
    _same_quant(op, [x, *outs])
    src = _arange(x)
    parts = []
    for k, o in enumerate(outs):
        piece = np.take(src, k, axis=axis)
        _check_shape(op, piece.shape, o)
        parts.append((x.index, o.index, piece, _arange(o)))
    return _copy_layer(model, op, parts, f"unpack axis {axis}")


@_register("CONCATENATION")
def _concat(model, op):
    y = _int8_act(model, op, op.outputs[0], "output")
    ins = [model.tensors[i] for i in op.inputs]
    _same_quant(op, [*ins, y])
    axis = _axis(op, op.options.get("axis", 0), len(y.shape))
    dst, parts, start = _arange(y), [], 0
    for t in ins:
        n = int(t.shape[axis]) if t.shape else 1
        region = np.take(dst, np.arange(start, start + n), axis=axis)
        _check_shape(op, region.shape, t)
        parts.append((t.index, y.index, _arange(t), region))
        start += n
    return _copy_layer(model, op, parts, f"concat axis {axis} of {len(ins)}")


@_register("PACK")
def _pack(model, op):
    y = _int8_act(model, op, op.outputs[0], "output")
    ins = [model.tensors[i] for i in op.inputs]
    _same_quant(op, [*ins, y])
    axis = _axis(op, op.options.get("axis", 0), len(y.shape))
    dst = _arange(y)
    parts = []
    for k, t in enumerate(ins):
        region = np.take(dst, k, axis=axis)
        _check_shape(op, region.shape, t)
        parts.append((t.index, y.index, _arange(t), region))
    return _copy_layer(model, op, parts, f"pack axis {axis} of {len(ins)}")


# ---------------------------------------------------------------- reductions over any axes

def reduce_params(op, x: Tensor, axes: list[int]) -> dict:
    """ecg_reduce_params: kept dims (outputs in row-major order of the kept axes) and reduced dims, both with
    their input strides; size-1 dims dropped, adjacent dims merged where contiguous."""
    strides = [int(np.prod(x.shape[k + 1:])) for k in range(len(x.shape))]

    def dims_of(ax_list):
        d = [(int(x.shape[k]), strides[k]) for k in ax_list if x.shape[k] > 1]
        out = []
        for n, s in d:
            if out and out[-1][1] == s * n:
                out[-1] = (out[-1][0] * n, s)
            else:
                out.append((n, s))
        return out or [(1, 0)]

    keep = dims_of([k for k in range(len(x.shape)) if k not in axes])
    red = dims_of(axes)
    if len(keep) > MAX_COPY_DIMS or len(red) > MAX_COPY_DIMS:
        _fail(op, f"reduction over too many dimensions; supported: up to {MAX_COPY_DIMS}")
    pad = lambda v, fill: v + [fill] * (MAX_COPY_DIMS - len(v))   # noqa: E731
    return dict(nkeep=len(keep), keep_dims=pad([n for n, _ in keep], 1), keep_strides=pad([s for _, s in keep], 0),
                nred=len(red), red_dims=pad([n for n, _ in red], 1), red_strides=pad([s for _, s in red], 0),
                count=int(np.prod([x.shape[k] for k in axes])) if axes else 1)


def fold_mean_multiplier(mult: int, shift: int, n: int) -> tuple[int, int]:
    """TFLite's QuantizedMeanOrSum: 1/n folded into the output multiplier (shift <= 32, >= -31 kept)."""
    s = min(int(n).bit_length() - 1, 32, 31 + shift)
    return int((mult << s) // n) if s >= 0 else int(mult // n), shift - s


def lower_reduce(model, op, is_sum: bool) -> Layer:
    """SUM or MEAN (int8) over any set of axes, as tflite-micro's QuantizedMeanOrSum."""
    x, y = _in_out(model, op)
    nd = len(x.shape)
    axes = sorted({_axis(op, a, nd) for a in _const(model, op, op.inputs[1], "axis")})
    m, s = quant.quantize_multiplier(float(np.float64(np.float32(x.scale[0])) / np.float64(np.float32(y.scale[0]))))
    p = reduce_params(op, x, axes)
    if not is_sum:
        m, s = fold_mean_multiplier(m, s, p["count"])
    p.update(in_zp=int(x.zero_point[0]), out_zp=int(y.zero_point[0]), mult=m, shift=s)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_reduce_params", p,
                 "ecg_reduce_ref({p}, {t%d}, {t%d});" % (x.index, y.index),
                 summary=f"{op.name.lower()} axes {axes}")


@_register("SUM")
def _sum(model, op):
    return lower_reduce(model, op, is_sum=True)


# ---------------------------------------------------------------- batch matmul

@_register("BATCH_MATMUL")
def _batch_matmul(model, op):
    lhs, rhs = (model.tensors[i] for i in op.inputs[:2])
    y = _int8_act(model, op, op.outputs[0], "output")
    for t, w in ((lhs, "lhs"), (rhs, "rhs")):
        if t.type_name != "int8" or t.scale.size != 1:
            _fail(op, f"{w} tensor {t.index} is {t.type_name} with {t.scale.size} scales; supported: int8 per-tensor")
    if len(lhs.shape) < 2 or len(rhs.shape) < 2:
        _fail(op, "operands of rank < 2")
    adj_x, adj_y = bool(op.options.get("adjX", False)), bool(op.options.get("adjY", False))
    nb = max(len(lhs.shape), len(rhs.shape)) - 2
    if nb > 3:
        _fail(op, f"{nb} batch dimensions; supported: up to 3")

    def batch(t):
        dims = [1] * (3 - (len(t.shape) - 2)) + [int(n) for n in t.shape[:-2]]
        mat = int(t.shape[-2]) * int(t.shape[-1])
        strides, acc = [0, 0, 0], mat
        for k in (2, 1, 0):
            strides[k] = acc if dims[k] > 1 else 0
            acc *= dims[k]
        return dims, strides

    ld, ls = batch(lhs)
    rd, rs = batch(rhs)
    dims = []
    for a, b in zip(ld, rd):
        if a != b and 1 not in (a, b):
            _fail(op, f"batch dims {lhs.shape[:-2]} and {rhs.shape[:-2]} do not broadcast")
        dims.append(max(a, b))
    lr, lc = int(lhs.shape[-2]), int(lhs.shape[-1])
    rr, rc = int(rhs.shape[-2]), int(rhs.shape[-1])
    rows, depth = (lc, lr) if adj_x else (lr, lc)
    cols = rr if adj_y else rc
    if (rc if adj_y else rr) != depth:
        _fail(op, f"inner dimensions {list(lhs.shape)} x {list(rhs.shape)} (adj {adj_x}, {adj_y}) do not match")
    if int(np.prod(y.shape)) != int(np.prod(dims)) * rows * cols:
        _fail(op, f"output shape {list(y.shape)} does not match the product")
    real = float(np.float64(np.float32(np.float32(lhs.scale[0]) * np.float32(rhs.scale[0])))
                 / np.float64(np.float32(y.scale[0])))
    m, s = quant.quantize_multiplier(real)
    consts: list[CArray] = []
    ptrs, acts = _binary_inputs(model, op, consts)
    p = dict(batches=dims, lhs_bstrides=ls, rhs_bstrides=rs, rows=rows, cols=cols, depth=depth,
             lhs_row_stride=1 if adj_x else lc, lhs_k_stride=lc if adj_x else 1,
             rhs_k_stride=1 if adj_y else rc, rhs_col_stride=rc if adj_y else 1,
             lhs_offset=-int(lhs.zero_point[0]), rhs_offset=-int(rhs.zero_point[0]), out_offset=int(y.zero_point[0]),
             mult=m, shift=s, act_min=-128, act_max=127)
    return Layer(op.index, op.name, acts, [y.index], "ecg_bmm_params", p,
                 "ecg_bmm_ref({p}, %s, %s, {t%d});" % (ptrs[0], ptrs[1], y.index), consts,
                 macs=int(np.prod(dims)) * rows * cols * depth, summary=f"batch matmul {rows}x{depth}x{cols}")


# ---------------------------------------------------------------- int8 LSTM

# (input weights, recurrent weights, bias) positions of the gates in TFLite's order: forget, input, cell, output
LSTM_GATES = ((2, 6, 13), (1, 5, 12), (3, 7, 14), (4, 8, 15))


@_register("UNIDIRECTIONAL_SEQUENCE_LSTM")
def _lstm(model, op):
    ins = op.inputs + [-1] * (24 - len(op.inputs))
    x = _int8_act(model, op, ins[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    absent = [k for k in (9, 10, 11, 16, 17, 20, 21, 22, 23) if ins[k] >= 0]
    if absent:
        _fail(op, f"optional inputs {absent} present (peephole, projection or layer norm); supported: the plain "
                  "int8 LSTM tflite-micro runs (no CIFG, no peephole, no projection, no layer norm)")
    if any(ins[k] < 0 for k in range(1, 9)) or any(ins[k] < 0 for k in range(12, 16)):
        _fail(op, "a gate's weights or bias are missing (CIFG); supported: all four gates")
    h, c = model.tensors[ins[18]], model.tensors[ins[19]]
    if h.type_name != "int8" or c.type_name != "int16":
        _fail(op, f"state tensors are {h.type_name}/{c.type_name}; supported: int8 hidden, int16 cell state")
    act = int(op.options.get("fusedActivationFunction", 4))
    if act not in (4, 6):      # TANH, SIGMOID
        _fail(op, f"cell activation {act}; supported: TANH (4), SIGMOID (6)")
    time_major = bool(op.options.get("timeMajor", False))
    if len(x.shape) != 3:
        _fail(op, f"input of rank {len(x.shape)}; supported: 3")
    batch, time = (int(x.shape[1]), int(x.shape[0])) if time_major else (int(x.shape[0]), int(x.shape[1]))
    in_dim, state = int(x.shape[2]), int(model.tensors[ins[2]].shape[0])
    sx, sh, sc = (np.float32(t.scale[0]) for t in (x, h, c))
    gate_in = np.float32(2.0 ** -12)
    pre = f"L{op.index}"
    consts, p = [], dict(batch=batch, time=time, in_dim=in_dim, state=state, time_major=int(time_major),
                         cell_tanh=int(act == 4), x_offset=-int(x.zero_point[0]), h_offset=-int(h.zero_point[0]))
    wx, wh, bias, xm, xs, hm, hs = [], [], [], [], [], [], []
    for g, (iw, rw, ib) in enumerate(LSTM_GATES):
        for k, (pos, arr) in enumerate(((iw, wx), (rw, wh))):
            w = model.tensors[ins[pos]]
            if w.type_name != "int8" or not w.is_const or w.scale.size != 1 or int(w.zero_point[0]) != 0:
                _fail(op, f"weights tensor {w.index} is not constant symmetric per-tensor int8")
            name = f"{pre}_w{'xh'[k]}{g}"
            consts.append(CArray(name, "int8_t", w.data.reshape(-1)))
            arr.append(name)
            product = np.float32((sx if k == 0 else sh) * np.float32(w.scale[0]))     # float32, as tflite-micro
            m, s = quant.quantize_multiplier(float(np.float64(product) / np.float64(gate_in)))
            (xm if k == 0 else hm).append(m)
            (xs if k == 0 else hs).append(s)
        b = model.tensors[ins[ib]]
        if b.type_name != "int32" or not b.is_const:
            _fail(op, f"bias tensor {b.index} is {b.type_name}; supported: constant int32")
        consts.append(CArray(f"{pre}_b{g}", "int32_t", b.data.reshape(-1).astype(np.int64)))
        bias.append(f"{pre}_b{g}")
    q15 = np.float64(np.float32(2.0 ** -15))

    def mul(s1, s2, so):
        return quant.quantize_multiplier(float(np.float64(s1) * np.float64(s2) / np.float64(so)))

    fc, ic, oh = mul(q15, sc, sc), mul(q15, q15, sc), mul(q15, q15, sh)
    left = 15 + quant.checked_log2(float(sc)) - 3
    cell_tanh = (3 << left, 0) if left >= 0 else (3, -left)
    clip_f = float(op.options.get("cellClip", 0.0))
    clip = int(min(max(float(np.float32(clip_f)) / float(sc), -32768.0), 32767.0)) if clip_f > 0 else 0
    consts.append(CArray(f"{pre}_sig", "uint16_t", quant.sigmoid_table_uint16()))
    n = batch * state
    h_off, c_off = 0, (n + 3) // 4 * 4
    s_off = c_off + 2 * ((n + 1) // 2 * 2)
    p.update(w_x=wx, w_h=wh, bias=bias, x_mult=xm, x_shift=xs, h_mult=hm, h_shift=hs, fc_mult=fc[0], fc_shift=fc[1],
             ic_mult=ic[0], ic_shift=ic[1], oh_mult=oh[0], oh_shift=oh[1], oh_zp=int(h.zero_point[0]),
             cell_tanh_mult=cell_tanh[0], cell_tanh_shift=cell_tanh[1], clip=clip, sigmoid=f"{pre}_sig",
             hidden=f"(int8_t *)({{scratch}} + {h_off})", cell=f"(int16_t *)({{scratch}} + {c_off})",
             scratch=f"(int16_t *)({{scratch}} + {s_off})")
    macs = batch * time * 4 * state * (in_dim + state)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_lstm_params", p,
                 "ecg_lstm_ref({p}, {t%d}, {t%d});" % (x.index, y.index), consts, macs=macs,
                 scratch_bytes=s_off + 2 * 4 * n, summary=f"lstm {in_dim}->{state} x{time}")

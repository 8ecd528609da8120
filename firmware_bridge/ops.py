"""Op-support registry: which TFLite builtins (and quantisation schemes) the C engine runs, and how
each lowers to a kernel call. Anything else fails at generation time with a FirmwareError naming the
op, its index and what is supported."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ecgedge.errors import FirmwareError
from ecgedge.firmware_bridge import quant
from ecgedge.firmware_bridge.tflite_model import Operator, Tensor, TfliteModel


@dataclass
class CArray:
    name: str
    ctype: str          # int8_t, int32_t
    values: np.ndarray


@dataclass
class Layer:
    index: int
    op: str
    inputs: list[int]                 # activation tensors read
    outputs: list[int]                # activation tensors written
    params_type: str | None = None    # C struct type of the static const params
    params: dict = field(default_factory=dict)   # field -> C expression (may use {t<id>}, {scratch})
    call: str = ""                    # C statement; {p} = &params, {t<id>} = tensor pointer
    consts: list[CArray] = field(default_factory=list)
    macs: int = 0
    alias_of: int | None = None       # output shares the buffer of this input (RESHAPE)
    scratch_bytes: int = 0            # optimised-path scratch (im2col), in the arena for this op only
    summary: str = ""


SUPPORTED: dict[str, Callable] = {}


def supported_ops() -> list[str]:
    return sorted(SUPPORTED)


KERNELS_TOML = Path(__file__).resolve().parent / "kernels.toml"


def kernel_table() -> dict[str, dict]:
    """op -> {"paths": [kernel paths with an optimised kernel], "what": ...} (kernels.toml); ops not listed run
    their reference kernel on every core. Checked: every op registered, every path one of cores.KERNEL_PATHS."""
    from ecgedge.firmware_bridge.cores import KERNEL_PATHS

    table = tomllib.loads(KERNELS_TOML.read_text())
    for op, row in table.items():
        if op not in SUPPORTED:
            raise FirmwareError(f"{KERNELS_TOML.name}: {op} is not an op of the registry")
        bad = [k for k in row.get("paths", []) if k not in KERNEL_PATHS]
        if bad:
            raise FirmwareError(f"{KERNELS_TOML.name}: {op} paths {bad}; expected some of {', '.join(KERNEL_PATHS)}")
    return table


def _register(*names):
    def deco(fn):
        for n in names:
            SUPPORTED[n] = fn
        return fn
    return deco


def _fail(op: Operator, why: str):
    raise FirmwareError(f"op {op.index} ({op.name}): {why}")


def _act(model, op, out: Tensor):
    try:
        return quant.activation_range(int(op.options.get("fusedActivationFunction", 0)),
                                      float(out.scale[0]), int(out.zero_point[0]))
    except ValueError as e:
        _fail(op, str(e))


def _int8_act(model: TfliteModel, op: Operator, idx: int, what: str) -> Tensor:
    t = model.tensors[idx]
    if t.type_name != "int8":
        _fail(op, f"{what} tensor {idx} is {t.type_name}; supported: int8 (full-INT8 models only)")
    if t.scale.size != 1:
        _fail(op, f"{what} tensor {idx} has {t.scale.size} scales; supported: per-tensor activations")
    return t


def _same_pad(in_size, k, stride, dil, out_size, padding):
    if padding == 1:  # VALID
        return 0
    eff = (k - 1) * dil + 1
    total = max(0, (out_size - 1) * stride + eff - in_size)
    return total // 2


def _nhwc(shape):
    s = list(shape)
    while len(s) < 4:
        s.insert(0, 1)
    return s


def _conv_common(model, op, depthwise: bool):
    x = _int8_act(model, op, op.inputs[0], "input")
    w = model.tensors[op.inputs[1]]
    y = _int8_act(model, op, op.outputs[0], "output")
    if w.type_name != "int8" or not w.is_const:
        _fail(op, f"filter tensor {w.index} is {w.type_name}{'' if w.is_const else ' (not constant)'}; supported: constant int8")
    if np.any(w.zero_point != 0):
        _fail(op, "filter zero point is not 0; supported: symmetric int8 filters")
    b = model.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if b is not None and (b.type_name != "int32" or not b.is_const):
        _fail(op, f"bias tensor {b.index} is {b.type_name}; supported: constant int32")
    _, ih, iw, ic = _nhwc(x.shape)
    _, oh, ow, oc = _nhwc(y.shape)
    o = op.options
    sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
    dh, dw = int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1))
    if depthwise:
        _, kh, kw, wc = w.shape
        fic = 1
    else:
        wc, kh, kw, fic = w.shape
        if ic % fic or oc % (ic // fic):
            _fail(op, f"input channels {ic} / filter channels {fic} / output channels {oc} do not form groups")
    ns = w.scale.size
    if ns not in (1, wc):
        _fail(op, f"filter has {ns} scales for {wc} channels; supported: per-tensor or per-output-channel")
    fscales = np.broadcast_to(w.scale, (wc,))
    mult, shift = zip(*[quant.quantize_multiplier(float(np.float64(np.float32(x.scale[0])) * np.float64(fs)
                                                      / np.float64(np.float32(y.scale[0]))))
                        for fs in fscales])
    lo, hi = _act(model, op, y)
    pad_h = _same_pad(ih, kh, sh, dh, oh, int(o.get("padding", 0)))
    pad_w = _same_pad(iw, kw, sw, dw, ow, int(o.get("padding", 0)))
    p = dict(in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw, filter_in_c=fic,
             stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_h=pad_h, pad_w=pad_w,
             depth_multiplier=int(o.get("depthMultiplier", 1)) if depthwise else 1,
             in_offset=-int(x.zero_point[0]), out_offset=int(y.zero_point[0]), act_min=lo, act_max=hi)
    pre = f"L{op.index}"
    consts = [CArray(f"{pre}_filter", "int8_t", w.data.reshape(-1)),
              CArray(f"{pre}_mult", "int32_t", np.asarray(mult, np.int64)),
              CArray(f"{pre}_shift", "int32_t", np.asarray(shift, np.int64))]
    p.update(filter=f"{pre}_filter", mult=f"{pre}_mult", shift=f"{pre}_shift", bias="NULL")
    if b is not None:
        consts.append(CArray(f"{pre}_bias", "int32_t", b.data.reshape(-1).astype(np.int64)))
        p["bias"] = f"{pre}_bias"
    macs = oh * ow * oc * kh * kw * fic
    return x, y, p, consts, macs


@_register("CONV_2D")
def _conv2d(model, op):
    x, y, p, consts, macs = _conv_common(model, op, depthwise=False)
    groups = p["in_c"] // p["filter_in_c"]
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_conv_params", p,
                 "ECG_CONV2D({p}, {t%d}, {t%d});" % (x.index, y.index), consts, macs,
                 summary=f"conv {p['k_h']}x{p['k_w']} s{p['stride_w']} {p['in_c']}->{p['out_c']} g{groups} "
                         f"w{p['in_w']}->{p['out_w']}")


@_register("DEPTHWISE_CONV_2D")
def _depthwise(model, op):
    x, y, p, consts, macs = _conv_common(model, op, depthwise=True)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_conv_params", p,
                 "ECG_DEPTHWISE({p}, {t%d}, {t%d});" % (x.index, y.index), consts, macs,
                 summary=f"dwconv {p['k_h']}x{p['k_w']} s{p['stride_w']} {p['in_c']}x{p['depth_multiplier']}")


@_register("FULLY_CONNECTED")
def _fc(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    w = model.tensors[op.inputs[1]]
    y = _int8_act(model, op, op.outputs[0], "output")
    if w.type_name != "int8" or not w.is_const:
        _fail(op, f"weights tensor {w.index} is {w.type_name}; supported: constant int8")
    b = model.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if b is not None and (b.type_name != "int32" or not b.is_const):
        _fail(op, f"bias tensor {b.index} is {b.type_name}; supported: constant int32")
    n_out, depth = w.shape
    total = int(np.prod(x.shape))
    if total % depth:
        _fail(op, f"input size {total} is not a multiple of the weights' depth {depth}")
    xs, ys = np.float32(x.scale[0]), np.float32(y.scale[0])
    if w.scale.size > 1:
        mults = [quant.quantize_multiplier(float(np.float64(xs) * np.float64(fs) / np.float64(ys)))
                 for fs in w.scale]
    else:
        mults = [quant.quantize_multiplier(float(np.float64(np.float32(xs * np.float32(w.scale[0])))
                                                 / np.float64(ys)))]
    lo, hi = _act(model, op, y)
    pre = f"L{op.index}"
    consts = [CArray(f"{pre}_filter", "int8_t", w.data.reshape(-1)),
              CArray(f"{pre}_mult", "int32_t", np.asarray([m for m, _ in mults], np.int64)),
              CArray(f"{pre}_shift", "int32_t", np.asarray([s for _, s in mults], np.int64))]
    p = dict(batches=total // depth, in_depth=depth, out_depth=n_out, in_offset=-int(x.zero_point[0]),
             filter_offset=-int(w.zero_point[0]) if w.zero_point.size else 0,
             out_offset=int(y.zero_point[0]), act_min=lo, act_max=hi, per_channel=int(w.scale.size > 1),
             filter=f"{pre}_filter", bias="NULL", mult=f"{pre}_mult", shift=f"{pre}_shift")
    if b is not None:
        consts.append(CArray(f"{pre}_bias", "int32_t", b.data.reshape(-1).astype(np.int64)))
        p["bias"] = f"{pre}_bias"
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_fc_params", p,
                 "ECG_FC({p}, {t%d}, {t%d});" % (x.index, y.index), consts,
                 macs=(total // depth) * depth * n_out, summary=f"fc {depth}->{n_out}")


def _broadcast(op, a_shape, b_shape, out_shape):
    out = _nhwc(out_shape)
    res = {}
    for key, shp in (("in1_strides", a_shape), ("in2_strides", b_shape)):
        s = _nhwc(shp)
        strides, acc = [0] * 4, 1
        for d in range(3, -1, -1):
            if out[d] == 1:
                strides[d] = 0
            elif s[d] == out[d]:
                strides[d] = acc
            elif s[d] == 1:
                strides[d] = 0
            else:
                _fail(op, f"shapes {list(a_shape)} and {list(b_shape)} do not broadcast to {list(out_shape)}")
            acc *= s[d]
        res[key] = strides
    flat = int(list(_nhwc(a_shape)) == out and list(_nhwc(b_shape)) == out)
    return dict(out_dims=out, flat=flat, size=int(np.prod(out)), **res)


def _binary_inputs(model, op, layer_consts):
    """Activation tensors of a binary op; constant operands become const arrays."""
    ptrs, acts = [], []
    for k, idx in enumerate(op.inputs[:2]):
        t = _int8_act(model, op, idx, f"input {k}")
        if t.is_const:
            name = f"L{op.index}_const{k}"
            layer_consts.append(CArray(name, "int8_t", t.data.reshape(-1)))
            ptrs.append(name)
        else:
            ptrs.append("{t%d}" % idx)
            acts.append(idx)
    return ptrs, acts


# a flat ADD's 64 KiB pair table (optimised path) only where it pays: on tiny tensors (an unrolled recurrent
# cell's gates) it would cost 64 KiB of flash per op to save a few instructions
PAIR_TABLE_MIN_ELEMENTS = 1024
# below this many elements an ADD runs the reference kernel on every path and carries no tables at all (the two
# 1 KiB per-input tables would be most of a tiny recurrent cell's flash)
ADD_TABLES_MIN_ELEMENTS = 64


@_register("ADD")
def _add(model, op):
    a, b = (model.tensors[i] for i in op.inputs[:2])
    y = _int8_act(model, op, op.outputs[0], "output")
    consts = []
    ptrs, acts = _binary_inputs(model, op, consts)
    sa, sb, so = (np.float64(np.float32(t.scale[0])) for t in (a, b, y))
    left_shift = 20
    twice_max = 2 * max(sa, sb)
    m1, s1 = quant.quantize_multiplier(float(sa / twice_max))
    m2, s2 = quant.quantize_multiplier(float(sb / twice_max))
    mo, s_o = quant.quantize_multiplier(float(twice_max / ((1 << left_shift) * so)))
    lo, hi = _act(model, op, y)
    p = _broadcast(op, a.shape, b.shape, y.shape)
    p.update(in1_offset=-int(a.zero_point[0]), in2_offset=-int(b.zero_point[0]), out_offset=int(y.zero_point[0]),
             act_min=lo, act_max=hi, left_shift=left_shift, in1_mult=m1, in1_shift=s1, in2_mult=m2,
             in2_shift=s2, out_mult=mo, out_shift=s_o, mult=0, shift=0)
    if p["size"] < ADD_TABLES_MIN_ELEMENTS:    # the reference kernel on every path, no tables (kernel_params)
        return Layer(op.index, op.name, acts, [y.index], "ecg_binary_params", p,
                     "ecg_add_ref({p}, %s, %s, {t%d});" % (ptrs[0], ptrs[1], y.index), consts,
                     summary=f"add {list(a.shape)}+{list(b.shape)}")
    return Layer(op.index, op.name, acts, [y.index], "ecg_binary_params", p,
                 "ECG_ADD({p}, %s, %s, {t%d});" % (ptrs[0], ptrs[1], y.index), consts,
                 summary=f"add {list(a.shape)}+{list(b.shape)}")


@_register("MUL")
def _mul(model, op):
    a, b = (model.tensors[i] for i in op.inputs[:2])
    y = _int8_act(model, op, op.outputs[0], "output")
    consts = []
    ptrs, acts = _binary_inputs(model, op, consts)
    sa, sb, so = (np.float64(np.float32(t.scale[0])) for t in (a, b, y))
    m, s = quant.quantize_multiplier(float(sa * sb / so))
    lo, hi = _act(model, op, y)
    p = _broadcast(op, a.shape, b.shape, y.shape)
    p.update(in1_offset=-int(a.zero_point[0]), in2_offset=-int(b.zero_point[0]), out_offset=int(y.zero_point[0]),
             act_min=lo, act_max=hi, left_shift=0, in1_mult=0, in1_shift=0, in2_mult=0, in2_shift=0,
             out_mult=0, out_shift=0, mult=m, shift=s)
    return Layer(op.index, op.name, acts, [y.index], "ecg_binary_params", p,
                 "ECG_MUL({p}, %s, %s, {t%d});" % (ptrs[0], ptrs[1], y.index), consts,
                 summary=f"mul {list(a.shape)}*{list(b.shape)}")


def _pool(model, op, fn):
    x = _int8_act(model, op, op.inputs[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    if (x.scale[0], x.zero_point[0]) != (y.scale[0], y.zero_point[0]):
        _fail(op, "input and output quantisation differ; supported: equal (as the converter emits)")
    _, ih, iw, c = _nhwc(x.shape)
    _, oh, ow, _ = _nhwc(y.shape)
    o = op.options
    fh, fw = int(o["filterHeight"]), int(o["filterWidth"])
    sh, sw = int(o["strideH"]), int(o["strideW"])
    lo, hi = _act(model, op, y)
    p = dict(in_h=ih, in_w=iw, channels=c, out_h=oh, out_w=ow, f_h=fh, f_w=fw, stride_h=sh, stride_w=sw,
             pad_h=_same_pad(ih, fh, sh, 1, oh, int(o.get("padding", 0))),
             pad_w=_same_pad(iw, fw, sw, 1, ow, int(o.get("padding", 0))), act_min=lo, act_max=hi)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_pool_params", p,
                 "%s({p}, {t%d}, {t%d});" % (fn, x.index, y.index), summary=f"pool {fh}x{fw} s{sw}")


@_register("MAX_POOL_2D")
def _maxpool(model, op):
    return _pool(model, op, "ECG_MAXPOOL")


@_register("AVERAGE_POOL_2D")
def _avgpool(model, op):
    return _pool(model, op, "ECG_AVGPOOL")


@_register("MEAN")
def _mean(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    ax = model.tensors[op.inputs[1]]
    if not ax.is_const:
        _fail(op, "axis tensor is not constant")
    nd = len(x.shape)
    axes = sorted({int(a) % nd for a in np.asarray(ax.data).reshape(-1)})
    keep = bool(op.options.get("keepDims", False))
    # contiguous reduced axes (after dropping size-1 axes) -> [outer][reduce][inner]
    red_axes = [a for a in axes if x.shape[a] > 1]
    if red_axes and red_axes != list(range(red_axes[0], red_axes[-1] + 1)):
        from ecgedge.firmware_bridge.ops_general import lower_reduce   # any axes: the general reduction
        return lower_reduce(model, op, is_sum=False)
    if not red_axes:
        outer, reduce_n, inner = 1, 1, int(np.prod(x.shape))
    else:
        outer = int(np.prod(x.shape[: red_axes[0]]))
        reduce_n = int(np.prod([x.shape[a] for a in red_axes]))
        inner = int(np.prod(x.shape[red_axes[-1] + 1:]))
    m, s = quant.quantize_multiplier(float(np.float64(np.float32(x.scale[0])) / np.float64(np.float32(y.scale[0]))))
    special = nd == 4 and axes == [1, 2] and keep
    # tflite-micro's int8 MEAN is QuantizedMeanOrSum in every case (1/n folded into the multiplier), also when
    # input and output share their quantisation: the plain-division variant 1 is not emitted (it was off by one
    # step on ~70 % of such outputs)
    variant = 0 if special else 2
    p = dict(outer=outer, reduce=reduce_n, inner=inner, variant=variant, in_zp=int(x.zero_point[0]),
             out_zp=int(y.zero_point[0]), mult=m, shift=s)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_mean_params", p,
                 "ECG_MEAN({p}, {t%d}, {t%d});" % (x.index, y.index), summary=f"mean axes {axes}")


@_register("PAD", "PADV2")
def _pad(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    pads = model.tensors[op.inputs[1]]
    if not pads.is_const:
        _fail(op, "paddings tensor is not constant")
    pv = int(y.zero_point[0])
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        pv = int(np.asarray(model.tensors[op.inputs[2]].data).reshape(-1)[0])
    pd = np.asarray(pads.data).reshape(-1, 2)
    before = [0] * (4 - len(x.shape)) + [int(v) for v in pd[:, 0]]
    p = dict(in_dims=_nhwc(x.shape), out_dims=_nhwc(y.shape), pad_before=before, pad_value=pv)
    return Layer(op.index, op.name, [x.index], [y.index], "ecg_pad_params", p,
                 "ECG_PAD({p}, {t%d}, {t%d});" % (x.index, y.index), summary=f"pad {pd.tolist()}")


@_register("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    return Layer(op.index, op.name, [x.index], [y.index], call="", alias_of=x.index, summary="reshape (alias)")


def _lut_layer(model, op, lut, what, input_index=None):
    x = _int8_act(model, op, op.inputs[0] if input_index is None else input_index, "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    name = f"L{op.index}_lut"
    return Layer(op.index, op.name, [x.index], [y.index], call="ECG_LUT(%s, %d, {t%d}, {t%d});" % (
        name, int(np.prod(x.shape)), x.index, y.index), consts=[CArray(name, "int8_t", lut)], summary=what)


@_register("LOGISTIC")
def _logistic(model, op):
    x = _int8_act(model, op, op.inputs[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    if int(y.zero_point[0]) != -128 or not np.isclose(y.scale[0], 1 / 256):
        _fail(op, f"output quantisation {y.scale[0]}/{y.zero_point[0]}; supported: 1/256, -128")
    return _lut_layer(model, op, quant.logistic_lut(float(x.scale[0]), int(x.zero_point[0])), "logistic (LUT)")


def _requantize(model, op):
    """int8 -> int8 QUANTIZE (registered with the float cases in ops_general)."""
    x = _int8_act(model, op, op.inputs[0], "input")
    y = _int8_act(model, op, op.outputs[0], "output")
    return _lut_layer(model, op, quant.requantize_lut(float(x.scale[0]), int(x.zero_point[0]),
                                                      float(y.scale[0]), int(y.zero_point[0])), "requantize (LUT)")


def lower(model: TfliteModel, fuse: bool = True, kernels: str = "dsp", optimize: str = "speed") -> list[Layer]:
    """Lower every operator; the first unsupported one raises FirmwareError. fuse=False: the reference
    lowering (one reference kernel call per op); fuse=True: the optimised lowering for the kernel path
    `kernels` of cores.toml (table fusions, then each layer's precomputed parameters, kernel_params.py)."""
    from ecgedge.firmware_bridge.ops_general import prepare_model

    for i in model.inputs + model.outputs:
        t = model.tensors[i]
        if t.type_name not in ("int8", "float32"):
            raise FirmwareError(f"model {'input' if i in model.inputs else 'output'} tensor {i} ({t.name!r}) is "
                                f"{t.type_name}; supported: int8 in/out (full-INT8 export), or float32 quantised "
                                "by the first op / dequantised by the last op")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise FirmwareError(f"model has {len(model.inputs)} inputs / {len(model.outputs)} outputs; supported: 1 / 1")
    model = prepare_model(model)
    layers = []
    for op in model.operators:
        fn = SUPPORTED.get(op.name)
        if fn is None:
            raise FirmwareError(f"op {op.index} ({op.name}) is not supported by the ecgedge C engine; "
                                f"supported: {', '.join(supported_ops())}")
        layers.append(fn(model, op))
    if not fuse:
        return layers
    from ecgedge.firmware_bridge.kernel_params import specialise
    return [specialise(l, kernels, optimize) for l in fuse_channel_luts(model, fuse_swish(model, layers))]


def _channel_lut_layer(layer: Layer, tables: np.ndarray, out_index: int, what: str) -> Layer:
    rows = layer.params["in_h"] * layer.params["in_w"]
    ch = layer.params["in_c"]
    name = f"L{layer.index}_chlut"
    return Layer(layer.index, layer.op, [layer.inputs[0]], [out_index],
                 call="ecg_channel_lut_opt(%s, %d, %d, {t%d}, {t%d});" % (name, rows, ch, layer.inputs[0], out_index),
                 consts=[CArray(name, "int8_t", tables.reshape(-1))], macs=layer.macs, summary=what)


def fuse_channel_luts(model: TfliteModel, layers: list[Layer]) -> list[Layer]:
    """A 1x1 depthwise conv (the converter's per-channel affine) maps each int8 value of a channel to an
    int8 value: one 256-entry table per channel, computed with the reference kernel's integer arithmetic.
    A following Swish table (sole consumer) composes into the same tables. Exact."""
    consumers: dict[int, list[Layer]] = {}
    for layer in layers:
        for t in layer.inputs:
            consumers.setdefault(t, []).append(layer)
    drop, out = set(), []

    def sole_lut_consumer(y):
        nxt = consumers.get(y, [])
        if len(nxt) == 1 and y not in model.outputs and nxt[0].call.startswith("ECG_LUT(") and nxt[0].inputs == [y]:
            return nxt[0]
        return None

    for layer in layers:
        p = layer.params
        lut_layer = sole_lut_consumer(layer.outputs[0]) if layer.op == "CONV_2D" else None
        if lut_layer is not None:
            # the conv kernels look their int8 results up in the following table (Swish) before storing
            x_idx, y_idx = layer.inputs[0], lut_layer.outputs[0]
            q = dict(p, post_lut=f"({lut_layer.consts[0].name} + 128)")
            out.append(Layer(layer.index, layer.op, [x_idx], [y_idx], layer.params_type, q,
                             "ECG_CONV2D({p}, {t%d}, {t%d});" % (x_idx, y_idx), layer.consts + lut_layer.consts,
                             layer.macs, scratch_bytes=layer.scratch_bytes,
                             summary=layer.summary + " + " + lut_layer.summary))
            drop.add(id(lut_layer))
            continue
        if not (layer.op == "DEPTHWISE_CONV_2D" and p["k_h"] == 1 and p["k_w"] == 1 and p["depth_multiplier"] == 1
                and p["stride_h"] == 1 and p["stride_w"] == 1 and p["pad_h"] == 0 and p["pad_w"] == 0
                and p["in_c"] == p["out_c"] and p["in_h"] == p["out_h"] and p["in_w"] == p["out_w"]):
            out.append(layer)
            continue
        c = {a.name.rsplit("_", 1)[-1]: np.asarray(a.values, np.int64) for a in layer.consts}
        w, mult, shift = c["filter"], c["mult"], c["shift"]
        bias = c.get("bias", np.zeros(p["out_c"], np.int64))
        xs = np.arange(-128, 128)
        tables = np.array([[min(max(quant.mbqm(int(bias[k] + (x + p["in_offset"]) * w[k]), int(mult[k]), int(shift[k]))
                                    + p["out_offset"], p["act_min"]), p["act_max"]) for x in xs]
                           for k in range(p["out_c"])], np.int64)
        y = layer.outputs[0]
        nxt = consumers.get(y, [])
        what = "per-channel affine (1x1 depthwise) as channel tables"
        if (len(nxt) == 1 and y not in model.outputs and nxt[0].call.startswith("ECG_LUT(")
                and nxt[0].inputs == [y]):
            lut = np.asarray(nxt[0].consts[0].values, np.int64)
            tables = lut[tables + 128]
            drop.add(id(nxt[0]))
            out.append(_channel_lut_layer(layer, tables, nxt[0].outputs[0], what + " + " + nxt[0].summary))
        else:
            out.append(_channel_lut_layer(layer, tables, y, what))
    return [l for l in out if id(l) not in drop]


def _mul_lut(model: TfliteModel, mul: Operator, x_idx: int, s_idx: int, sig_lut: np.ndarray) -> np.ndarray:
    """y[x] of MUL(x, LOGISTIC(x)) for every int8 x, with the MUL kernel's exact integer arithmetic."""
    a, b = (model.tensors[i] for i in mul.inputs[:2])
    y = model.tensors[mul.outputs[0]]
    sa, sb, so = (np.float64(np.float32(t.scale[0])) for t in (a, b, y))
    m, sh = quant.quantize_multiplier(float(sa * sb / so))
    lo, hi = _act(model, mul, y)
    out = np.empty(256, np.int8)
    for raw in range(-128, 128):
        sig = int(sig_lut[raw + 128])
        va, vb = (raw, sig) if mul.inputs[0] == x_idx else (sig, raw)
        v = quant.mbqm((va - int(a.zero_point[0])) * (vb - int(b.zero_point[0])), m, sh) + int(y.zero_point[0])
        out[raw + 128] = min(max(v, lo), hi)
    return out


def fuse_swish(model: TfliteModel, layers: list[Layer]) -> list[Layer]:
    """MUL(x, LOGISTIC(x)) -> one int8 lookup table (Swish). Exact: both ops are functions of x alone."""
    consumers: dict[int, list[int]] = {}
    for op in model.operators:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op.index)
    by_out = {op.outputs[0]: op for op in model.operators}
    drop, out = set(), []
    for layer in layers:
        op = model.operators[layer.index]
        if op.name == "MUL" and len(op.inputs) == 2:
            for x_idx, s_idx in (op.inputs, op.inputs[::-1]):
                prod = by_out.get(s_idx)
                if (prod is not None and prod.name == "LOGISTIC" and prod.inputs[0] == x_idx
                        and consumers.get(s_idx) == [op.index] and s_idx not in model.outputs
                        and model.tensors[x_idx].shape == model.tensors[op.outputs[0]].shape):
                    sig = next(l for l in layers if l.index == prod.index).consts[0].values
                    lut = _mul_lut(model, op, x_idx, s_idx, sig)
                    fused = _lut_layer(model, op, lut, "swish x*sigmoid(x) (fused LUT)", x_idx)
                    drop.add(prod.index)
                    layer = fused
                    break
        out.append(layer)
    return [l for l in out if l.index not in drop]


from ecgedge.firmware_bridge import ops_general  # noqa: E402,F401  (registers the general ops)

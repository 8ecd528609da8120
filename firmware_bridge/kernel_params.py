"""The optimised lowering's per-kernel-path parameters: what each core's kernels need beyond the
reference lowering (ops.py), precomputed at generation time. Keyed by the kernel path of cores.toml
("c", "dsp", "mve") and the optimisation goal ("speed": widened weights and lookup tables where the
kernels use them; "size": int8 weights only).

- CONV_2D: scratch for the im2col block of the kernel path; "dsp" + speed: the widened, doubled,
  pair-reordered int16 filter with its fast-requantiser triples (`_conv_wide`); "mve": the bias with
  the input offset folded in (sum (x + off) w = sum x w + off sum w: the im2col pads with the zero
  point, so padded taps add nothing), the filter as it is (VMLADAVA.S8 takes int8).
- DEPTHWISE_CONV_2D: scratch for padded input planes (with the offset added: int16 on "dsp", int32 on "c"; four
  channels at a time when the input channels are a multiple of 4; int8 padded with the zero point on
  "mve", eight channels at a time when they are a multiple of 8); the taps are gathered per channel at
  run time.
- FULLY_CONNECTED: the bias with the input offset folded in.
- ADD (from ops.ADD_TABLES_MIN_ELEMENTS elements): each input's rescaled value for every int8 value
  (tables); speed: the result for every (a, b) byte pair of a flat ADD of two activations of at least
  ops.PAIR_TABLE_MIN_ELEMENTS elements (64 KiB).
Everything here is exact: the kernels produce the reference lowering's integers."""

from __future__ import annotations

import numpy as np

from ecgedge.firmware_bridge import quant
from ecgedge.firmware_bridge.ops import PAIR_TABLE_MIN_ELEMENTS, CArray, Layer

FAST_RIGHT_SHIFTS = range(1, 23)   # c/ecg_kernels_opt.c rq_fast: right shift 1..22, no left shift
NCOL = 4                           # output columns per conv block (c/ecg_kernels_*.c)
MVE_LANES = 16


def _consts(layer: Layer) -> dict[str, np.ndarray]:
    return {c.name.rsplit("_", 1)[-1]: np.asarray(c.values, np.int64) for c in layer.consts}


def _conv_wide(index: int, p: dict, consts: dict[str, np.ndarray], col: int) -> list[CArray]:
    """"dsp" speed constants, one packed record per output channel (int32 words, one pointer walks them):
    the doubled bias four times (one LDM sets the four column accumulators), the filter x2 widened to
    int16 and pair-reordered (0,2,1,3) per 4 taps like the im2col columns (LDRD + SMLAD), then the fast
    requantiser's (multiplier, right shift, rounding bias with the output offset). The doubled
    accumulator feeds SMMULR directly. Only when every channel's shift and accumulator range suit the
    exact fast requantiser."""
    mult, shift = consts["mult"], consts["shift"]
    bias = consts.get("bias", np.zeros(p["out_c"], np.int64))
    oo = p["out_offset"]
    if not all(-s in FAST_RIGHT_SHIFTS for s in shift) or \
            np.abs(bias).max(initial=0) + col * 255 * 128 >= 2**29:
        return []
    col4 = (col + 3) // 4 * 4
    w = np.zeros((p["out_c"], col4), np.int64)
    w[:, :col] = consts["filter"].reshape(p["out_c"], col)
    w = w.reshape(p["out_c"], col4 // 4, 4)[:, :, [0, 2, 1, 3]].reshape(p["out_c"], col4) * 2
    words = (w[:, 0::2] & 0xFFFF) | ((w[:, 1::2] & 0xFFFF) << 16)          # int16 pairs, little-endian
    words = np.where(words >= 2**31, words - 2**32, words)
    right = -shift
    rbias = (1 << (right - 1)) + oo * (1 << right)
    tail = np.stack([mult, right, rbias], axis=1)
    pre = f"L{index}"
    per_group = p["out_c"] // (p["in_c"] // p["filter_in_c"])
    if col4 > 16 and per_group % 2 == 0:
        # longer columns: records per pair of output channels A, B for the 2-channel x 2-column kernel:
        # biases A, A, B, B; per 4 taps A (w02, w13), B (w02, w13); A's and B's requantiser
        a, b = slice(0, None, 2), slice(1, None, 2)
        taps = np.stack([words[a].reshape(-1, col4 // 4, 2), words[b].reshape(-1, col4 // 4, 2)], axis=2)
        pack = np.concatenate([np.repeat((2 * bias)[a, None], 2, axis=1), np.repeat((2 * bias)[b, None], 2, axis=1),
                               taps.reshape(-1, col4), tail[a], tail[b]], axis=1)
        p.update(wide2=f"{pre}_wide2", filter="NULL")
        return [CArray(f"{pre}_wide2", "int32_t", pack.reshape(-1))]
    pack = np.concatenate([np.repeat((2 * bias)[:, None], 4, axis=1), words, tail], axis=1)
    p.update(wide=f"{pre}_wide", filter="NULL")
    return [CArray(f"{pre}_wide", "int32_t", pack.reshape(-1))]


WIDE_HEAD, WIDE_TAIL = 4, 3    # words before / after the filter in a packed channel record (c/ecg_kernels_dsp.c)


def _offset_bias(layer: Layer, rows: int, depth: int, offset: int) -> np.ndarray | None:
    """bias + offset * (row sums of the filter), or None when it leaves int32."""
    c = _consts(layer)
    bias = c.get("bias", np.zeros(rows, np.int64))
    beff = bias + offset * c["filter"].reshape(rows, depth).sum(axis=1)
    return beff if np.abs(beff).max(initial=0) < 2**31 else None


def _conv(layer: Layer, kernels: str, optimize: str) -> Layer:
    p = dict(layer.params)
    col = p["k_h"] * p["k_w"] * p["filter_in_c"]
    consts = list(layer.consts)
    if kernels == "mve":
        col16 = (col + MVE_LANES - 1) // MVE_LANES * MVE_LANES
        scratch = NCOL * col16                                  # int8 columns (edges, grouped convs)
        beff = _offset_bias(layer, p["out_c"], col, p["in_offset"])
        if beff is not None:
            consts.append(CArray(f"L{layer.index}_beff", "int32_t", beff))
            p["bias_eff"] = f"L{layer.index}_beff"
    else:
        col4 = (col + 3) // 4 * 4
        if kernels == "dsp" and optimize == "speed":
            consts += _conv_wide(layer.index, p, _consts(layer), col)
        ncol = 2 if "wide2" in p else NCOL                      # the channel-pair kernel takes 2 columns
        elem = 4 if kernels == "c" else 2                       # c: int32 columns (LDM + MLA), dsp: int16
        scratch = elem * ncol * col4
    p["col_buf"] = "(void *)({scratch})"
    return Layer(layer.index, layer.op, layer.inputs, layer.outputs, layer.params_type, p, layer.call, consts,
                 layer.macs, layer.alias_of, scratch, layer.summary)


def _depthwise(layer: Layer, kernels: str, optimize: str) -> Layer:
    p = dict(layer.params)
    ph = (p["out_h"] - 1) * p["stride_h"] + (p["k_h"] - 1) * p["dil_h"] + 1
    pw = (p["out_w"] - 1) * p["stride_w"] + (p["k_w"] - 1) * p["dil_w"] + 1
    pw_alloc = (pw + MVE_LANES + 1) // 2 * 2     # reads of a 16-lane (or 2-tap) vector may run past the last tap
    elem = {"mve": 1, "dsp": 2, "c": 4}[kernels]
    # c/dsp: four channel planes filled from one word load per pixel (input channels a multiple of 4)
    # speed: several planes filled from one load per pixel (mve: eight int8 planes when the input channels
    # are a multiple of 8; c/dsp: four when a multiple of 4); size: one plane (the smallest scratch)
    planes = (8 if p["in_c"] % 8 == 0 else 1) if kernels == "mve" else (4 if p["in_c"] % 4 == 0 else 1)
    if optimize == "size" or ph > 1:
        # a 2-D layer's padded planes are whole images: four of them would outgrow tflite-micro's whole
        # arena on small image/audio models (9,184 vs 7,424 B), so 2-D takes one plane at a time
        planes = 1
    scratch = ph * pw_alloc * elem * planes
    p.update(col_buf="(void *)({scratch})", plane_h=ph, plane_w=pw_alloc, depthwise_planes=planes)
    return Layer(layer.index, layer.op, layer.inputs, layer.outputs, layer.params_type, p, layer.call, layer.consts,
                 layer.macs, layer.alias_of, scratch, layer.summary)


def _fc(layer: Layer, kernels: str, optimize: str) -> Layer:
    p = dict(layer.params)
    consts = list(layer.consts)
    if p["filter_offset"] == 0:
        beff = _offset_bias(layer, p["out_depth"], p["in_depth"], p["in_offset"])
        if beff is not None:
            consts.append(CArray(f"L{layer.index}_beff", "int32_t", beff))
            p["bias_eff"] = f"L{layer.index}_beff"
    return Layer(layer.index, layer.op, layer.inputs, layer.outputs, layer.params_type, p, layer.call, consts,
                 layer.macs, layer.alias_of, layer.scratch_bytes, layer.summary)


def _add(layer: Layer, kernels: str, optimize: str) -> Layer:
    if not layer.call.startswith("ECG_ADD("):      # a tiny ADD runs the reference kernel, tables-free (ops.py)
        return layer
    p = dict(layer.params)
    consts = list(layer.consts)
    tables = []
    for k in (1, 2):
        zp = -p[f"in{k}_offset"]
        tab = np.asarray([quant.mbqm((raw - zp) << p["left_shift"], p[f"in{k}_mult"], p[f"in{k}_shift"])
                          for raw in range(-128, 128)], np.int64)
        consts.append(CArray(f"L{layer.index}_add{k}", "int32_t", tab))
        p[f"lut{k}"] = f"L{layer.index}_add{k}"
        tables.append(tab)
    if optimize == "speed" and p["flat"] and len(layer.inputs) == 2 and p["size"] >= PAIR_TABLE_MIN_ELEMENTS:
        # the int8 result of each (a, b) pair, one 64 KiB table indexed by (b << 8) | a
        sums = tables[0][None, :] + tables[1][:, None]                 # [b + 128][a + 128]
        res = quant.mbqm_array(sums, p["out_mult"], p["out_shift"]) + p["out_offset"]
        res = np.clip(res, p["act_min"], p["act_max"]).reshape(256, 256)
        order = (np.arange(256) + 128) % 256       # byte value u -> row/column of int8 value u - 256*(u>127)
        pair = res[np.ix_(order, order)]           # [b byte][a byte]
        consts.append(CArray(f"L{layer.index}_pair", "int8_t", pair.reshape(-1)))
        p["pair"] = f"L{layer.index}_pair"
    return Layer(layer.index, layer.op, layer.inputs, layer.outputs, layer.params_type, p, layer.call, consts,
                 layer.macs, layer.alias_of, layer.scratch_bytes, layer.summary)


SPECIALISE = {"CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fc, "ADD": _add}


def specialise(layer: Layer, kernels: str, optimize: str) -> Layer:
    """The layer as the optimised kernels of `kernels` take it (reference layers pass through)."""
    fn = SPECIALISE.get(layer.op)
    if fn is None or layer.params_type is None:
        return layer
    return fn(layer, kernels, optimize)

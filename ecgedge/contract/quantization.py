"""How a window becomes the model's int8 input, and how its int8 outputs become scores and decisions.

The rule, once (docs/architecture.md, "window"):

    x_model = filtered µV / scale_uv                      (the input contract's model units)
    q       = clip(round(x_model / scale) + zero_point, -128, 127)          (int8)
    value   = (q_out - zero_point_out) * scale_out      (dequantised output)

Logit outputs become probabilities: one softmax over all logits when the task is "multiclass" (the
decision is the most probable class), otherwise a sigmoid each with its own threshold (0.5 when none).
Regression outputs keep their value. The runtime, export validation, the HIL bench and the simulator
all call these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ecgedge.contract.metrics import sigmoid, softmax
from ecgedge.errors import PackageError

DEFAULT_SCALE_UV = 1000.0   # model input = filtered µV / 1000 (mV) unless the contract says otherwise
DEFAULT_THRESHOLD = 0.5
MULTICLASS = "multiclass"


# ------------------------------------------------------------------------------------------- int8 rule

def int8_qparams(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's asymmetric per-tensor int8 (scale, zero point) for the range (lo, hi), widened to hold 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    return scale, int(min(127, max(-128, round(-128 - lo / scale))))


def quantize_input(x, scale: float, zero_point: int) -> np.ndarray:
    """The package contract: q = clip(round(x / scale) + zp, -128, 127), x in model units."""
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """float64 values of int8 q: (q - zero_point) * scale."""
    return (np.asarray(q).astype(np.float64) - zero_point) * scale


# ------------------------------------------------------------------------------------- input contract

def _get(contract, key: str, default=None):
    if isinstance(contract, Mapping):
        return contract.get(key, default)
    return getattr(contract, key, default)


def scale_uv(input_contract) -> float:
    """µV per model unit of an input contract (manifest "input" dict or InputContract)."""
    return float(_get(input_contract, "scale_uv", None) or DEFAULT_SCALE_UV)


def input_qparams(input_contract) -> tuple[float, int]:
    """(tflite_scale, tflite_zero_point) of a package's input contract."""
    scale = _get(input_contract, "tflite_scale")
    if scale is None:
        raise PackageError("the input contract has no tflite_scale (not an INT8 package)")
    return float(scale), int(_get(input_contract, "tflite_zero_point", 0) or 0)


def model_units(uv, input_contract) -> np.ndarray:
    """Filtered microvolts in the model's units (float64): µV / scale_uv."""
    return np.asarray(uv, np.float64) / scale_uv(input_contract)


def window_int8(filtered_uv, input_contract) -> np.ndarray:
    """The INT8 model input (int8, same shape) for filtered µV under a package's input contract."""
    return quantize_input(model_units(filtered_uv, input_contract), *input_qparams(input_contract))


# ------------------------------------------------------------------------------------------- outputs

def _kind(o) -> str:
    return _get(o, "kind", "regression") or "regression"


def _threshold(o) -> float:
    t = _get(o, "threshold", None)
    return DEFAULT_THRESHOLD if t is None else float(t)


def logit_columns(outputs: Sequence) -> list[int]:
    """Positions (in output order) of the logit outputs."""
    return [i for i, o in enumerate(outputs) if _kind(o) == "logit"]


def probabilities(outputs: Sequence, raw, task: str | None) -> np.ndarray:
    """[N, n_logits] probabilities of the logit outputs of raw values [N, n_outputs]: one softmax over
    them for a multiclass task, else a sigmoid each."""
    raw = np.atleast_2d(np.asarray(raw, np.float64))
    z = raw[:, logit_columns(outputs)]
    if task == MULTICLASS and z.shape[1]:
        return softmax(z, axis=1)
    return sigmoid(z)


def decisions(outputs: Sequence, raw, task: str | None) -> np.ndarray:
    """Boolean [N, n_logits]: for a multiclass task the one class the argmax names (one-hot), else each
    logit's probability at its own threshold."""
    raw = np.atleast_2d(np.asarray(raw, np.float64))
    cols = logit_columns(outputs)
    if not cols:
        return np.zeros((len(raw), 0), bool)
    p = probabilities(outputs, raw, task)
    if task == MULTICLASS:
        return np.eye(len(cols), dtype=bool)[p.argmax(axis=1)]
    thresholds = np.array([_threshold(outputs[i]) for i in cols])
    return p >= thresholds[None, :]


def interpret_values(values, outputs: Sequence, task: str | None, raw_int8=None) -> dict:
    """One window's result record: {"scores", "decisions", "values"[, "raw_int8"]} keyed by output name.
    `values`: raw output values in output order (a sequence) or by name (a mapping)."""
    if isinstance(values, Mapping):
        row = np.array([float(values[_get(o, "name")]) for o in outputs])
    else:
        row = np.asarray(values, np.float64).reshape(-1)
    cols = logit_columns(outputs)
    p = probabilities(outputs, row[None, :], task)[0]
    d = decisions(outputs, row[None, :], task)[0]
    scores, decided = {}, {}
    for j, i in enumerate(cols):
        name = _get(outputs[i], "name")
        scores[name] = float(p[j])
        decided[name] = bool(d[j])
    for i, o in enumerate(outputs):
        if _kind(o) != "logit":
            scores[_get(o, "name")] = float(row[i])
    out = {"scores": scores, "decisions": decided,
           "values": {_get(o, "name"): float(row[i]) for i, o in enumerate(outputs)}}
    if raw_int8 is not None:
        out["raw_int8"] = [int(v) for v in raw_int8]
    return out


def dequantize_outputs(q, outputs: Sequence) -> np.ndarray:
    """float64 [N, n_outputs] of raw INT8 outputs [N, >= n_outputs] (or one row): each output read at its
    index and dequantised with its own tflite_scale / tflite_zero_point (the manifest's outputs)."""
    q = np.atleast_2d(np.asarray(q))
    out = np.empty((q.shape[0], len(outputs)), np.float64)
    for j, o in enumerate(outputs):
        out[:, j] = dequantize(q[:, int(_get(o, "index", j))], float(_get(o, "tflite_scale", None) or 1.0),
                               int(_get(o, "tflite_zero_point", None) or 0))
    return out


def interpret_int8(raw_int8, outputs: Sequence, task: str | None) -> dict:
    """interpret_values of one window's raw INT8 outputs (a device's RESULT or a runner's), dequantised
    per output (dequantize_outputs)."""
    raw = [int(v) for v in raw_int8]
    return interpret_values(dequantize_outputs(raw, outputs)[0], outputs, task, raw_int8=raw)

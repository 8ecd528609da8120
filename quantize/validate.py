"""Validation of the exported models: runners (torch, LiteRT, tflite-micro), metrics (AUROC, MAE,
decision agreement), per-layer SQNR of INT8 vs float intermediate tensors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable

import numpy as np

from ecgedge.contract.metrics import auroc, sigmoid, softmax, sqnr_db
from ecgedge.errors import DataError, ExportError


# ------------------------------------------------------------------------------------------- metrics

def labels_for(spec, data: dict) -> dict[str, np.ndarray | None]:
    """Ground truth per output from generated windows (which carry serum K+ as `k`), None if unknown.

    Output names follow the zoo's convention: p_k_gt_X_Y -> k > X.Y, p_k_ge_X_Y -> k >= X.Y,
    k_mmol -> k itself. Other outputs have no ground truth in generated data.
    """
    k = data.get("k")
    out: dict[str, np.ndarray | None] = {}
    for o in spec.outputs:
        m = re.fullmatch(r"p_k_(gt|ge)_(\d+)_(\d+)", o.name)
        if k is None:
            out[o.name] = None
        elif m:
            thr = float(f"{m.group(2)}.{m.group(3)}")
            out[o.name] = (k > thr) if m.group(1) == "gt" else (k >= thr)
        elif o.name == "k_mmol":
            out[o.name] = np.asarray(k, np.float64)
        else:
            out[o.name] = None
    return out


def output_metrics(spec, raw: np.ndarray, truth: dict) -> dict[str, dict]:
    """Per output: AUROC (logits) or MAE (regression) against the ground truth."""
    res = {}
    for i, o in enumerate(spec.outputs):
        y = truth.get(o.name)
        if o.kind == "logit":
            res[o.name] = {"auroc": None if y is None else auroc(y, raw[:, i])}
        else:
            res[o.name] = {"mae": None if y is None else float(np.mean(np.abs(raw[:, i] - y)))}
    return res


def _multiclass(spec) -> bool:
    return getattr(spec, "task", None) == "multiclass"


def probabilities(spec, raw: np.ndarray) -> np.ndarray:
    """Probabilities of the logit outputs: one softmax over them for a multi-class spec, else a sigmoid each."""
    z = np.asarray(raw, np.float64)[:, [i for i, o in enumerate(spec.outputs) if o.kind == "logit"]]
    if _multiclass(spec) and z.shape[1]:
        return softmax(z, axis=1)
    return sigmoid(z)


def decisions(spec, raw: np.ndarray) -> np.ndarray:
    """Boolean decisions [N, n_logit_outputs]: each logit output at its probability threshold, or for a
    multi-class spec the one class the argmax names (one-hot)."""
    logit = [o for o in spec.outputs if o.kind == "logit"]
    if not logit:
        return np.zeros((len(raw), 0), bool)
    p = probabilities(spec, raw)
    if _multiclass(spec):
        return np.eye(len(logit), dtype=bool)[p.argmax(axis=1)]
    thresholds = np.array([o.threshold if o.threshold is not None else 0.5 for o in logit])
    return p >= thresholds[None, :]


def compare(spec, reference: np.ndarray, test: np.ndarray) -> dict:
    """Decision agreement (all logit outputs of a window agree), max |delta probability|, max |delta| raw."""
    d_ref, d_test = decisions(spec, reference), decisions(spec, test)
    logit = [i for i, o in enumerate(spec.outputs) if o.kind == "logit"]
    reg = [i for i, o in enumerate(spec.outputs) if o.kind != "logit"]
    out = {
        "agreement": float(np.mean(np.all(d_ref == d_test, axis=1))) if logit else None,
        "max_abs_delta_probability": float(np.max(np.abs(probabilities(spec, reference) - probabilities(spec, test))))
        if logit else None,
        "max_abs_delta_regression": float(np.max(np.abs(reference[:, reg] - test[:, reg]))) if reg else None,
    }
    return out


# ------------------------------------------------------------------------------------------- runners

def run_torch(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Raw outputs of a torch model on windows x [N, W] (model units)."""
    import torch
    model = model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[i:i + batch], np.float32)[:, None, :])
            outs.append(model(xb).numpy().astype(np.float64))
    return np.concatenate(outs)


def int8_qparams(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's asymmetric per-tensor int8 (scale, zero point) for the range (lo, hi), widened to hold 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    return scale, int(min(127, max(-128, round(-128 - lo / scale))))


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """The package contract: q = clip(round(x / scale) + zp, -128, 127)."""
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero_point, -128, 127).astype(np.int8)


def _progress(it: Iterable, total: int, label: str, progress):
    if progress is None:
        return it
    task = progress.add_task(label, total=total)

    def gen():
        for v in it:
            yield v
            progress.advance(task)
    return gen()


def run_litert(tflite: bytes, x: np.ndarray, progress=None, label: str = "INT8 LiteRT") -> tuple[np.ndarray, np.ndarray]:
    """(int8 outputs [N, n], dequantised outputs [N, n]) of an INT8 TFLite on windows x [N, W]."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=tflite, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    s_in, z_in = i["quantization"]
    s_out, z_out = o["quantization"]
    q = np.zeros((len(x), int(np.prod(o["shape"]))), np.int8)
    for n in _progress(range(len(x)), len(x), label, progress):
        it.set_tensor(i["index"], quantize_input(x[n], s_in, z_in).reshape(i["shape"]))
        it.invoke()
        q[n] = it.get_tensor(o["index"]).ravel()
    return q, (q.astype(np.float64) - z_out) * s_out


@contextlib.contextmanager
def silence_fds():
    """tflite-micro prints allocation failures from C++ straight to fd 1/2."""
    import sys
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def tflm_interpreter(tflite: bytes, arena_size: int):
    from tflite_micro import runtime
    with silence_fds():
        return runtime.Interpreter.from_bytes(tflite, arena_size=int(arena_size))


def tflm_allocates(tflite: bytes, arena_size: int) -> bool:
    try:
        tflm_interpreter(tflite, arena_size)
        return True
    except RuntimeError:
        return False


def run_tflm(tflite: bytes, x: np.ndarray, arena_size: int, progress=None,
             label: str = "INT8 tflite-micro") -> tuple[np.ndarray, np.ndarray]:
    """(int8 outputs, dequantised outputs) from tflite-micro's Python interpreter."""
    it = tflm_interpreter(tflite, arena_size)
    det_in = it.get_input_details(0)
    det_out = it.get_output_details(0)
    s_in = float(det_in["quantization_parameters"]["scales"][0])
    z_in = int(det_in["quantization_parameters"]["zero_points"][0])
    s_out = float(det_out["quantization_parameters"]["scales"][0])
    z_out = int(det_out["quantization_parameters"]["zero_points"][0])
    shape = tuple(int(s) for s in det_in["shape"])
    q = np.zeros((len(x), int(np.prod(det_out["shape"]))), np.int8)
    for n in _progress(range(len(x)), len(x), label, progress):
        it.set_input(quantize_input(x[n], s_in, z_in).reshape(shape), 0)
        it.invoke()
        q[n] = np.asarray(it.get_output(0)).ravel()
    return q, (q.astype(np.float64) - z_out) * s_out


# ---------------------------------------------------------------------------------------- per-layer SQNR

def layer_name(tensor_name: str) -> str:
    """'net1d_1/s2b0_conv2_1/BiasAdd;...' -> 's2b0_conv2' (the Keras layer that produced it)."""
    first = tensor_name.split(";")[0]
    if first.startswith("StatefulPartitionedCall"):
        return "output"
    parts = first.split("/")
    name = parts[1] if len(parts) > 1 else parts[0]
    return re.sub(r"_\d+$", "", name)


def per_layer_sqnr(calibrated_float: bytes, int8: bytes, x: np.ndarray) -> list[dict]:
    """SQNR (dB) of every INT8 activation tensor against the same tensor of the float model.

    `calibrated_float` is the float TFLite the INT8 model was quantised from (same graph, same tensor
    names), run on the same windows; both interpreters keep all intermediate tensors. One row per
    Keras layer (its last tensor), in graph order.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ecgedge.quantize.tflite_export import op_list
    if len(x) == 0:
        raise DataError("per-layer SQNR needs at least one window")
    kw = dict(experimental_preserve_all_tensors=True, num_threads=1,
              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    f_it = Interpreter(model_content=calibrated_float, **kw)
    q_it = Interpreter(model_content=int8, **kw)
    op_names = op_list(int8)
    f_it.allocate_tensors()
    q_it.allocate_tensors()
    f_tensors = {d["name"]: d for d in f_it.get_tensor_details()}
    q_in = q_it.get_input_details()[0]
    f_in = f_it.get_input_details()[0]
    s_in, z_in = q_in["quantization"]

    # Output tensors of ops, in execution order, present in both graphs and int8 in the quantised one.
    pairs = []
    for d in q_it._get_ops_details():  # noqa: SLF001 - op order and outputs are what per-layer means
        for t in d["outputs"]:
            det = q_it._get_tensor_details(t, 0)  # noqa: SLF001
            if det["dtype"] == np.int8 and det["name"] in f_tensors and det["quantization"][0] > 0:
                pairs.append((det, f_tensors[det["name"]], op_names[d["index"]]))
    if not pairs:
        raise ExportError("per-layer SQNR: no tensor of the INT8 model matches the float model by name")
    ref = {p[0]["name"]: [] for p in pairs}
    got = {p[0]["name"]: [] for p in pairs}
    for n in range(len(x)):
        xf = np.asarray(x[n], np.float32).reshape(f_in["shape"])
        f_it.set_tensor(f_in["index"], xf)
        f_it.invoke()
        q_it.set_tensor(q_in["index"], quantize_input(x[n], s_in, z_in).reshape(q_in["shape"]))
        q_it.invoke()
        for qd, fd, _ in pairs:
            s, z = qd["quantization"]
            got[qd["name"]].append((q_it.get_tensor(qd["index"]).astype(np.float64) - z) * s)
            ref[qd["name"]].append(f_it.get_tensor(fd["index"]).astype(np.float64))
    rows: dict[str, dict] = {}
    for qd, _, op in pairs:
        name = qd["name"]
        layer = layer_name(name)
        rows[layer] = {"layer": layer, "op": op, "tensor": name,
                       "sqnr_db": sqnr_db(np.concatenate([a.ravel() for a in ref[name]]),
                                          np.concatenate([a.ravel() for a in got[name]]))}
    return list(rows.values())

"""Validation of the exported models: the torch runner, labels of generated windows, metrics per output
(AUROC, MAE), decision agreement and per-layer SQNR of INT8 vs float intermediate tensors.

The INT8 runners, the input quantisation, the interpretation of outputs and the metrics themselves are
the contract's (ecgedge.contract); `run_int8` only adds the export's progress bars."""

from __future__ import annotations

import re

import numpy as np

from ecgedge.contract.metrics import auroc, sqnr_db
from ecgedge.contract.quantization import decisions, probabilities, quantize_input
from ecgedge.contract.runners import open_int8_runner
from ecgedge.errors import DataError, ExportError


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


def compare(spec, reference: np.ndarray, test: np.ndarray) -> dict:
    """Decision agreement (all logit outputs of a window agree), max |delta probability|, max |delta| raw."""
    d_ref, d_test = decisions(spec.outputs, reference, spec.task), decisions(spec.outputs, test, spec.task)
    logit = [i for i, o in enumerate(spec.outputs) if o.kind == "logit"]
    reg = [i for i, o in enumerate(spec.outputs) if o.kind != "logit"]
    out = {
        "agreement": float(np.mean(np.all(d_ref == d_test, axis=1))) if logit else None,
        "max_abs_delta_probability": float(np.max(np.abs(probabilities(spec.outputs, reference, spec.task)
                                                         - probabilities(spec.outputs, test, spec.task))))
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


def run_int8(tflite: bytes, x: np.ndarray, runtime: str, progress=None, label: str = "INT8",
             **runner_options) -> tuple[np.ndarray, np.ndarray]:
    """(int8 outputs [N, n], dequantised outputs [N, n]) of an INT8 TFLite on windows x [N, W] in model
    units, through the contract's runner for `runtime` ("litert", "tflm"), with a rich progress bar."""
    runner = open_int8_runner(tflite, runtime, **runner_options)
    step = None
    if progress is not None:
        task = progress.add_task(label, total=len(x))
        step = lambda: progress.advance(task)  # noqa: E731
    return runner.run_model_units(x, step)


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

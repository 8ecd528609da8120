"""edge-analyze's logic: any single-lead model (a zoo name, .pt2, .onnx float or QDQ, .tflite float or full
INT8) read as the full-INT8 model it is or would become, in seconds and without training.

A float model goes through the export's own route (ecgedge.quantize.convert_graph -> convert_keras ->
TFLiteConverter, full INT8, calibrated on a few seeded noise windows: the scales do not change sizes,
ops or arenas) — not pruned, so the figures say whether it fits as it is. Per layer
(TFLite op): the torch module it comes from, output shape, MACs, parameter bytes, activation bytes and
which backends run it: our C engine (firmware_bridge.ops lowers it), tflite-micro (its interpreter
allocates the model), onnxruntime (the model has an ONNX form that ONNX Runtime loads). Per target:
MACs, flash, our engine's planned arena (for the target core's kernel path) and tflite-micro's smallest
arena, a latency estimate from MACs, `fits`, and the ops our engine lacks with the layers that use them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, ModelError

CALIBRATION_WINDOWS = 8


# ------------------------------------------------------------------------------------------- per op

def _op_macs(model, op) -> int:
    t = model.tensors
    out = t[op.outputs[0]].shape if op.outputs else ()
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
        w = t[op.inputs[1]].shape           # CONV: [out, kh, kw, in/g]; DEPTHWISE: [1, kh, kw, out]
        if op.name == "CONV_2D":
            return int(np.prod(out)) * int(w[1] * w[2] * w[3])
        return int(np.prod(out)) * int(w[1] * w[2])
    if op.name == "FULLY_CONNECTED" and len(op.inputs) > 1:
        return int(np.prod(out)) * int(t[op.inputs[1]].shape[-1])
    if op.name in ("UNIDIRECTIONAL_SEQUENCE_LSTM",):
        return int(sum(t[i].data.size for i in op.inputs if i >= 0 and t[i].is_const and t[i].data.ndim == 2)
                   * (t[op.inputs[0]].shape[-2] if len(t[op.inputs[0]].shape) > 2 else 1))
    return 0


def engine_support(model) -> list[tuple[bool, str]]:
    """Per operator: (our C engine lowers it, why not)."""
    from ecgedge.errors import FirmwareError
    from ecgedge.firmware_bridge.ops import SUPPORTED
    out = []
    for op in model.operators:
        fn = SUPPORTED.get(op.name)
        if fn is None:
            out.append((False, f"no {op.name} kernel"))
            continue
        try:
            fn(model, op)
            out.append((True, ""))
        except FirmwareError as e:
            out.append((False, str(e)))
        except Exception as e:   # a lowering that trips on an unexpected layout: say so, do not crash
            out.append((False, f"{type(e).__name__}: {e}"))
    return out


def engine_arena(tflite: bytes, model=None, kernels: str = "dsp") -> int | None:
    """Our engine's planned arena (bytes) for a core's kernel path (cores.toml: "dsp", "c", "mve"), as its
    firmware reserves it (codegen.planned_arena), None when it cannot lower every op; `model`: tflite
    already loaded."""
    from ecgedge.errors import FirmwareError
    from ecgedge.firmware_bridge.codegen import planned_arena
    try:
        return planned_arena(tflite, kernels, model=model)
    except FirmwareError:
        return None


def _target_kernels(tgt) -> str | None:
    """The kernel path of an MCU target's engine core (None: no firmware build for it)."""
    from ecgedge.errors import FirmwareError
    from ecgedge.firmware_bridge.build import firmware_core
    try:
        return firmware_core(tgt).kernels
    except FirmwareError:
        return None


def tflm_arena(tflite: bytes) -> tuple[int | None, str]:
    """(tflite-micro's smallest working arena, why not) for a full-INT8 model."""
    from ecgedge.errors import ExportError
    from ecgedge.contract.runners import smallest_arena
    try:
        return smallest_arena(tflite), ""
    except ExportError as e:
        return None, str(e)


def _tflm_missing(tflite: bytes) -> str | None:
    """The builtin tflite-micro's resolver lacks, if that is why the model does not allocate."""
    import os
    import re
    import subprocess
    import sys
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(tflite)
    try:
        code = ("import sys\nfrom tflite_micro import runtime\n"
                "runtime.Interpreter.from_file(sys.argv[1], arena_size=64 * 1024 * 1024)\n")
        r = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(f.name)
    m = re.search(r"Didn't find op for builtin opcode '(\w+)'", r.stdout + r.stderr)
    return m.group(1) if m else None


def _module_of(tensor_names, layers: dict) -> str | None:
    """The torch module an op was built from: of the Keras layers named in its tensors (its output, and
    its weights for a layer the converter renamed), the earliest in the graph (a conv, not its fused ReLU)."""
    from ecgedge.quantize.validate import layer_name
    if isinstance(tensor_names, str):
        tensor_names = [tensor_names]
    found = [layers[k] for n in tensor_names for part in n.split(";") if (k := layer_name(part)) in layers]
    if not found:
        return None
    return min(found, key=lambda info: info.get("order", 0))["path"] or "(model)"


def layer_table(tflite: bytes, layers: dict | None = None, onnx_ok: bool | None = None,
                model=None) -> tuple[list[dict], dict]:
    """(rows per TFLite op, totals) of a TFLite model; `layers` maps Keras layer names to torch modules;
    `model`: the tflite already loaded (firmware_bridge.tflite_model.load_model)."""
    from ecgedge.firmware_bridge.tflite_model import load_model
    model = model if model is not None else load_model(tflite)
    support = engine_support(model)
    rows, params_seen = [], set()
    for op, (eng, why) in zip(model.operators, support):
        outs = [model.tensors[i] for i in op.outputs]
        consts = [model.tensors[i] for i in op.inputs if i >= 0 and model.tensors[i].is_const
                  and model.tensors[i].data.size > 1 and model.tensors[i].type_name in ("int8", "int32", "float32")]
        pbytes = sum(c.nbytes for c in consts if c.index not in params_seen)
        params_seen.update(c.index for c in consts)
        names = [t.name for t in outs] + [c.name for c in consts]
        rows.append({
            "index": op.index, "op": op.name,
            "module": _module_of(names, layers) if layers else None,
            "output_shape": list(outs[0].shape) if outs else [], "macs": _op_macs(model, op),
            "param_bytes": int(pbytes), "activation_bytes": int(sum(t.nbytes for t in outs)),
            "backends": {"ecgedge_c": eng, "tflite_micro": None, "onnxruntime": onnx_ok},
            "engine_note": why or None,
        })
    totals = {"macs": int(sum(r["macs"] for r in rows)), "n_ops": len(rows), "flash_bytes": model.size,
              "full_int8": _full_int8(model)}
    return rows, totals


def _full_int8(model) -> bool:
    types = {model.tensors[i].type_name for op in model.operators for i in op.inputs + op.outputs if i >= 0}
    return not ({"float32", "float16"} & types) and model.tensors[model.inputs[0]].type_name == "int8"


# ------------------------------------------------------------------------------------------- sources

def _calibration_windows(window: int, n: int = CALIBRATION_WINDOWS) -> np.ndarray:
    """Seeded unit-scale noise windows (model units). The ranges they calibrate change none of what the
    analysis reads from the INT8 model (ops, shapes, sizes, arenas), and they need no signal library:
    importing scipy.signal for generated ECG cost ~4 s of CPU, a third of an analysis."""
    return np.random.default_rng(123).normal(0.0, 1.0, (n, window)).astype(np.float32)


def _float_to_int8(gm, window: int, name: str) -> tuple[bytes, dict]:
    """The INT8 TFLite a float canonical graph becomes (the export's route, not pruned)."""
    from ecgedge.quantize import tflite_export as te
    from ecgedge.quantize.convert_keras import to_keras
    keras_model, info = to_keras(gm, window, name=name)
    x = _calibration_windows(window)
    tflite = te.quantize_calibrated(te.calibrate_only(keras_model, x))
    return te.schedule(tflite, {k: v["order"] for k, v in info["layers"].items()}), info


def _read(model, contract) -> dict:
    """Everything analyse needs from a model source: the INT8 TFLite, Keras layer map, params, ..."""
    from ecgedge.models.specs import load_contract
    spec = load_contract(contract) if contract is not None else None
    out = {"contract": spec.name if spec else None}
    if isinstance(model, str) and not Path(model).suffix and not Path(model).exists():
        from ecgedge.models.zoo import load_model
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_model, zspec, meta = load_model(model)
        spec = spec or zspec
        out.update(name=model, format="zoo", source=f"zoo model {model}", torch=torch_model)
    elif isinstance(model, (str, Path)):
        p = Path(model)
        suffix = p.suffix.lower()
        if suffix not in (".pt2", ".onnx", ".tflite"):
            raise ModelError(f"{str(p)!r} is not a model: expected a zoo name, .pt2, .onnx or .tflite")
        if not p.is_file():
            raise ModelError(f"model file {str(p)!r} not found")
        out.update(name=spec.name if spec else p.stem, format=suffix.lstrip("."), source=str(p))
        if suffix == ".tflite":
            raw = p.read_bytes()
            if len(raw) < 8 or raw[4:8] != b"TFL3":
                raise ModelError(f"{str(p)!r} is not a TFLite flatbuffer (identifier {raw[4:8]!r}, expected b'TFL3')")
            out["tflite"] = raw
        else:
            from ecgedge.quantize.convert_graph import canonical
            out["torch"] = canonical(p)
            if suffix == ".onnx":
                out["onnx_path"] = p
    else:
        if spec is None:
            raise ConfigError("analysing a live module needs its contract (the window length)")
        out.update(name=spec.name, format="module", source=type(model).__name__, torch=model)
    out["spec"] = spec
    return out


def analyze(model, target: str | None = None, all_targets: bool = False, contract=None,
            targets_file: str | None = None) -> dict:
    """The analysis of `model` (zoo name, path, or live nn.Module with a contract) as a dict (see module
    docstring); `target` / `all_targets` choose the targets (default: every target)."""
    from ecgedge.contract.runners import probe_server
    t0 = time.perf_counter()
    with probe_server():     # started first, while this process is small: tflite-micro's probes fork from it
        return _analyze(model, target, contract, targets_file, t0)


def _analyze(model, target, contract, targets_file, t0) -> dict:
    from ecgedge.targets import get_target, load_targets
    src = _read(model, contract)
    spec = src["spec"]
    layers_map, params, float_macs, onnx_ok = None, None, None, None
    if "tflite" in src:
        tflite = src["tflite"]
        analysed_as = "the given TFLite model"
        if not layer_table(tflite)[1]["full_int8"]:
            analysed_as += (" (float: its INT8 form needs the graph it came from — analyse the .pt2 / .onnx; "
                            "sizes here are float, no INT8 arena)")
    else:
        from ecgedge.quantize.convert_graph import canonical, check_io, macs
        gm = canonical(src["torch"], spec.input.window_samples if spec else None) if spec or src["format"] != "module" \
            else None
        window = int(spec.input.window_samples) if spec else int((gm.meta.get("ecgedge_input_shape") or (1, 0))[-1])
        if window <= 0:
            raise ConfigError("the model's window length is unknown: give --contract")
        if spec is not None:
            check_io(gm, window, spec.n_outputs)
        params = int(sum(p.numel() for p in gm.parameters()))
        float_macs = macs(gm, window)
        tflite, info = _float_to_int8(gm, window, src["name"])
        layers_map = info["layers"]
        analysed_as = (f"the full-INT8 TFLite the export's route makes of it (not pruned; calibrated on "
                       f"{CALIBRATION_WINDOWS} seeded noise windows)")
    from concurrent.futures import ThreadPoolExecutor

    from ecgedge.firmware_bridge.tflite_model import load_model
    fb = load_model(tflite)
    full_int8 = _full_int8(fb)
    # tflite-micro's arena search (interpreter builds in the probe server's children, another process) runs
    # while this one does the rest: on 2 cores the CRNN's ~1.4 s of probes overlap its ~1 s of op lowering
    with ThreadPoolExecutor(1) as pool:
        tflm = pool.submit(tflm_arena, tflite) if full_int8 else None
        if "tflite" not in src:
            onnx_ok = _onnx_runs(src.get("onnx_path"), gm, window)
        rows, totals = layer_table(tflite, layers_map, onnx_ok, model=fb)
        arena_engine = engine_arena(tflite, model=fb) if full_int8 else None
        arena_tflm, tflm_why = tflm.result() if tflm is not None else (None, "not a full-INT8 model")
    if params is None:
        params = int(sum(r["param_bytes"] for r in rows if r["op"] != "RESHAPE"))
    missing = _tflm_missing(tflite) if full_int8 and arena_tflm is None else None
    for r in rows:
        r["backends"]["tflite_micro"] = (arena_tflm is not None) or (missing is not None and r["op"] != missing)
    macs_total = float_macs if float_macs is not None else totals["macs"]
    unsupported = sorted({(r["op"], r["module"] or f"op {r['index']}") for r in rows if not r["backends"]["ecgedge_c"]})
    if target is not None:
        chosen = {target: get_target(target, targets_file)}
    else:
        chosen = load_targets(targets_file)
    targets = {}
    per_kernels = {"dsp": arena_engine}   # the arena differs a little by kernel path (scratch buffers)
    for name, tgt in chosen.items():
        mcu = tgt.is_mcu
        kernels = _target_kernels(tgt) if mcu and arena_engine is not None else None
        if kernels is not None and kernels not in per_kernels:
            per_kernels[kernels] = engine_arena(tflite, model=fb, kernels=kernels)
        target_engine = per_kernels.get(kernels, arena_engine) if mcu else arena_engine
        arena = (target_engine if target_engine is not None else arena_tflm) if mcu else None
        uns = [{"op": op, "layer": layer} for op, layer in unsupported] if mcu else []
        problems = []
        if totals["flash_bytes"] > tgt.model_flash_budget:
            problems.append(f"flash {totals['flash_bytes']:,} B > {tgt.model_flash_budget:,} B")
        if arena is not None and arena > tgt.model_ram_budget:
            problems.append(f"arena {arena:,} B > {tgt.model_ram_budget:,} B")
        if macs_total > tgt.mac_budget:
            problems.append(f"{macs_total:,} MACs > budget {tgt.mac_budget:,}")
        if mcu and arena_tflm is None and arena_engine is None:
            problems.append("no INT8 arena: " + (tflm_why or "not full INT8"))
        targets[name] = {"board": tgt.board, "kind": tgt.kind, "runtime": tgt.runtime,
                         "macs": macs_total, "flash_bytes": totals["flash_bytes"], "arena_bytes": target_engine,
                         "arena_bytes_tflm": arena_tflm, "latency_ms_estimate": tgt.estimate_latency_ms(macs_total),
                         "latency_kind": "estimate from MACs x cycles per MAC / clock",
                         "fits": not problems, "overflows": problems, "unsupported_ops": uns,
                         "engine_runs_all_ops": not uns}
    return {
        "model": src["name"], "source": src["source"], "format": src["format"], "contract": src["contract"],
        "analysed_as": analysed_as, "full_int8": full_int8, "macs": macs_total, "params": params,
        "flash_bytes": totals["flash_bytes"], "arena_bytes": arena_engine, "arena_bytes_tflm": arena_tflm,
        "n_ops": totals["n_ops"], "ops": _counts([r["op"] for r in rows]),
        "tflite_micro_missing_op": missing, "layers": rows, "targets": targets,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _counts(items) -> dict:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


def _onnx_runs(onnx_path, gm, window: int) -> bool:
    """Whether ONNX Runtime loads the model's ONNX form (the given .onnx, or the float export's)."""
    import io

    import onnxruntime as ort
    try:
        if onnx_path is not None:
            ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            return True
        import torch
        buf = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(gm.eval(), torch.zeros(1, 1, window), buf, dynamo=False, opset_version=17,
                              input_names=["ecg"], output_names=["outputs"])
        ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        return True
    except Exception:
        return False

"""Bring your own model: what the export road needs for a model that is not in the zoo.

- `load_user_model(source, spec)`: a .pt2 / .onnx file or a live nn.Module as the canonical graph
  (ecgedge.quantize.convert_graph), checked against the contract's window and output count;
- `user_datasets(spec, opts)`: windows of the user's records (--data), filtered and windowed the way the
  runtime does it, split by record into calibration, calibrator-selection and validation sets, with the
  truth of each window when the contract names labels ([labels]); the same dict the af_lead1 road gives;
- `prune_and_distil(...)`: structured pruning to the target's budget with torch-pruning's dependency graph
  (any nn.Module), then distillation from the user's float model on their windows (no labels needed);
- `export_tflite(...)`: a full-INT8 .tflite taken as it is (no re-quantisation): validated, checked
  against our C engine, packaged.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, DataError, ModelError

MODEL_SUFFIXES = (".pt2", ".onnx", ".tflite")
LABEL_FILES = ("REFERENCE.csv", "labels.csv")
RECORD_SUFFIXES = (".hea", ".edf", ".csv", ".npy")
SPLIT_SEED_OFFSET = 11
PRUNE_RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 19))   # torch-pruning channel ratios tried, in order


def is_model_file(name) -> bool:
    """True for something edge-export should read as a model file rather than a zoo name."""
    if not isinstance(name, (str, Path)):
        return False
    p = Path(name)
    return p.suffix.lower() in MODEL_SUFFIXES or p.exists() or "/" in str(name)


def check_model_file(path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(f"{str(p)!r} is not a model file: expected a .pt2 (torch.export.save), .onnx or .tflite")
    if not p.is_file():
        raise ModelError(f"model file {str(p)!r} not found")
    return p


def load_user_model(source, spec):
    """(canonical GraphModule in eval mode, meta) of a .pt2 / .onnx path or a live module."""
    from ecgedge.quantize.convert_graph import canonical, check_io
    window = int(spec.input.window_samples)
    if isinstance(source, (str, Path)):
        check_model_file(source)
        fmt = Path(source).suffix.lower().lstrip(".")
        where = str(source)
    else:
        fmt, where = "module", type(source).__name__
    gm = canonical(source, window)
    check_io(gm, window, spec.n_outputs)
    meta = {"model": spec.name, "source": where, "format": fmt, "demo": False, "untrained": False,
            "user": True, "card": {}}
    meta["notice"] = user_label(meta).notice
    return gm.eval(), meta


def user_label(meta: dict):
    """The label of a user's model (ecgedge.labels' "user" kind, naming its file)."""
    from ecgedge import labels
    return labels.from_meta(meta)


def count_macs(model, window: int) -> int:
    """MACs of one window: the canonical graph's count (recurrent cells included) or the zoo's."""
    from ecgedge.quantize.convert_graph import is_canonical
    if is_canonical(model):
        from ecgedge.quantize.convert_graph import macs
        return macs(model, window)
    from ecgedge.models.zoo import count_macs as zoo_macs
    return zoo_macs(model, window)


# ------------------------------------------------------------------------------------------------ data

def _record_files(folder: Path, skip: set[str]) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in RECORD_SUFFIXES and p.name not in skip and p.is_file():
            files.setdefault(p.stem, p)
    return files


def _read_reference(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"labels file {str(path)!r} not found (the contract's [labels] reference)")
    out = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].strip() and not row[0].startswith("#"):
                out[row[0].strip()] = row[1].strip()
    if not out:
        raise DataError(f"labels file {str(path)!r} holds no record,label rows")
    return out


def load_signal(path: Path, spec) -> tuple[np.ndarray, float]:
    """A record's signal (µV) at the contract's rate, filtered as the runtime filters, and its own rate."""
    from ecgedge.signals import StreamingFilter, load_record
    from ecgedge.signals.io import resample
    rate = float(spec.input.sampling_rate_hz)
    rec = load_record(path)
    signal = np.asarray(rec.signal_uv, np.float64)
    if signal.ndim != 1:
        raise DataError(f"record {str(path)!r}: signal shape {signal.shape}, expected one lead")
    native = float(rec.sampling_rate)
    if abs(native - rate) > 1e-6:
        signal = resample(signal, native, rate)
    pre = spec.input.preprocessing
    return (StreamingFilter(rate, pre).process(signal) if pre else signal), native


def signal_windows(signal: np.ndarray, spec) -> tuple[np.ndarray, list[int]]:
    """(windows [n, W] in model units, their start samples): non-overlapping, or every record_hop_samples
    plus one ending at the record's end (the contract's record rule)."""
    from ecgedge.signals import record_window_starts
    w = int(spec.input.window_samples)
    starts = record_window_starts(len(signal), w, spec.input.record_hop_samples)
    return (np.stack([signal[s:s + w] for s in starts]) / float(spec.input.scale_uv)).astype(np.float32), starts


def _annotation_classes(path: Path, ext: str, classes: list[str], starts: list[int], native: float,
                        spec) -> np.ndarray:
    """Class index of each window from a WFDB annotation file: the class whose beat symbol or rhythm label
    (aux note without its '(') is annotated most often inside the window; -1 when none is."""
    import wfdb
    try:
        ann = wfdb.rdann(str(path.with_suffix("")), ext)
    except Exception as e:
        raise DataError(f"record {path.stem}: no readable .{ext} annotations ({type(e).__name__}: {e})") from None
    samples = np.asarray(ann.sample, np.float64) * float(spec.input.sampling_rate_hz) / native
    aux = ann.aux_note or [""] * len(ann.symbol)
    names = [((a or "").strip("(\x00 ") or s) for s, a in zip(ann.symbol, aux)]
    w = int(spec.input.window_samples)
    out = np.full(len(starts), -1, np.int64)
    for i, s in enumerate(starts):
        inside = [n for n, t in zip(names, samples) if s <= t < s + w and n in classes]
        if inside:
            out[i] = classes.index(max(set(inside), key=inside.count))
    return out


def user_datasets(spec, opts, select_windows: int) -> dict:
    """Windows of the user's records split BY RECORD (seeded order) into calibration, calibrator selection
    and validation, with per-window truth when the contract has [labels]. Keys as the af_lead1 road's:
    calibration, calibration_source, selection, selection_truth, validation, truth, validation_source,
    validation_records, record_metrics (None without multi-class labels), notes."""
    from ecgedge.quantize.validate import labels_for
    folder = Path(opts.data)
    if not folder.is_dir():
        raise DataError(f"--data {opts.data!r} is not a folder")
    labels_cfg = spec.labels or {}
    ref_path = None
    if labels_cfg.get("reference"):
        ref_path = Path(labels_cfg["reference"])
        ref_path = ref_path if ref_path.is_absolute() else folder / ref_path
    skip = set(LABEL_FILES) | ({ref_path.name} if ref_path else set())
    files = _record_files(folder, skip)
    if not files:
        raise DataError(f"--data {opts.data!r} holds no WFDB (.hea), EDF, CSV or .npy records")
    reference = _read_reference(ref_path) if ref_path else None
    logit = [o.name for o in spec.outputs if o.kind == "logit"]
    classes = list(labels_cfg.get("classes") or [o.name for o in spec.outputs])
    names = sorted(files)
    if reference is not None:
        names = [n for n in names if n in reference]
        if not names:
            raise DataError(f"no record in {opts.data} has a label in {ref_path}")
    order = [names[i] for i in np.random.default_rng(opts.seed + SPLIT_SEED_OFFSET).permutation(len(names))]
    quotas = [("calibration", opts.calib_windows), ("selection", select_windows), ("validation", opts.val_windows)]
    need = sum(q for _, q in quotas)
    loaded: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    total, resampled, short, longest, unlabelled = 0, set(), 0, 0, 0
    for name in order:
        if total >= need:
            break
        signal, native = load_signal(files[name], spec)
        if abs(native - float(spec.input.sampling_rate_hz)) > 1e-6:
            resampled.add(native)
        longest = max(longest, len(signal))
        if len(signal) < int(spec.input.window_samples):
            short += 1
            continue
        x, starts = signal_windows(signal, spec)
        cls = None
        if reference is not None:
            label = reference[name]
            if spec.task == "regression" or (len(spec.outputs) == 1 and spec.outputs[0].kind == "regression"):
                cls = np.full(len(x), float(label))
            elif label not in classes:
                unlabelled += 1
                continue
            else:
                cls = np.full(len(x), classes.index(label))
        elif labels_cfg.get("annotations"):
            cls = _annotation_classes(files[name], labels_cfg["annotations"], classes, starts, native, spec)
        loaded.append((name, x, cls))
        total += len(x)
    if not loaded:
        raise DataError(f"--data {opts.data!r}: no record holds one {spec.input.window_samples}-sample window at "
                        f"{spec.input.sampling_rate_hz:g} Hz (longest: {longest} samples)")
    if len(loaded) < 3:
        raise DataError(f"--data {opts.data!r}: {len(loaded)} usable record(s); calibration, calibrator choice and "
                        "validation need at least 3 records (split by record)")
    # split by record: in order while the quotas can all be met, else by shares of the records
    if total >= need:
        bounds, running, assign = np.cumsum([q for _, q in quotas]), 0, []
        for item in loaded:
            assign.append(0 if running < bounds[0] else (1 if running < bounds[1] else 2))
            running += len(item[1])
    else:
        n = len(loaded)
        n_cal = max(1, min(n - 2, int(round(0.5 * n))))
        n_sel = max(1, min(n - n_cal - 1, int(round(0.15 * n))))
        assign = [0] * n_cal + [1] * n_sel + [2] * (n - n_cal - n_sel)
    sets: dict[str, list] = {k: [it for it, a in zip(loaded, assign) if a == j] for j, (k, _) in enumerate(quotas)}

    def join(items, limit):
        x = np.concatenate([it[1] for it in items])[:limit]
        owner = np.concatenate([np.full(len(it[1]), j) for j, it in enumerate(items)])[:limit]
        cls = None if reference is None and not labels_cfg.get("annotations") else \
            np.concatenate([it[2] for it in items])[:limit]
        return x, owner, cls, [it[0] for it in items]

    def truth_of(cls):
        if cls is None:
            return labels_for(spec, {})
        out = {}
        for j, o in enumerate(spec.outputs):
            if o.kind == "regression":
                out[o.name] = np.asarray(cls, np.float64) if spec.task in ("regression",) or len(spec.outputs) == 1 \
                    else None
            else:
                valid = cls >= 0
                out[o.name] = np.where(valid, cls == j, False) if valid.all() else None
        return out

    x_cal, _, _, cal_names = join(sets["calibration"], opts.calib_windows)
    x_sel, _, cls_sel, _ = join(sets["selection"], select_windows)
    x_val, owner, cls_val, val_names = join(sets["validation"], opts.val_windows)
    notes = []
    if resampled:
        notes.append(f"records at {', '.join(f'{r:g}' for r in sorted(resampled))} Hz were resampled to the contract's "
                     f"{spec.input.sampling_rate_hz:g} Hz")
    if short:
        notes.append(f"{short} record(s) shorter than one {spec.input.window_samples}-sample window were skipped")
    if unlabelled:
        notes.append(f"{unlabelled} record(s) whose label is not one of {classes} were skipped")
    record_metrics = None
    if cls_val is not None and spec.task == "multiclass" and len(logit) == len(spec.outputs):
        from ecgedge.contract.metrics import classification_metrics
        from ecgedge.contract.quantization import probabilities
        keep = cls_val >= 0

        def record_metrics(raw, _keep=keep, _cls=cls_val, _owner=owner):
            return classification_metrics(probabilities(spec.outputs, raw[_keep], spec.task), _cls[_keep], classes, groups=_owner[_keep])
    source = f"records in {opts.data}"
    return {
        "calibration": {"x": x_cal}, "calibration_source": f"{source} ({len(cal_names)} records, {len(x_cal)} windows)",
        "selection": {"x": x_sel}, "selection_truth": truth_of(cls_sel),
        "validation": {"x": x_val}, "truth": truth_of(cls_val),
        "validation_source": f"{source}, held out by record ({len(val_names)} records)",
        "validation_records": val_names, "record_metrics": record_metrics, "notes": notes,
        "labels": None if cls_val is None else {"classes": classes, "source": str(ref_path or labels_cfg.get("annotations"))},
    }


# --------------------------------------------------------------------------------------------- pruning

def _has_recurrent(model) -> bool:
    import torch
    return any(isinstance(m, (torch.nn.GRU, torch.nn.LSTM)) for m in model.modules())


def _output_layers(model) -> list:
    """Layers whose output channels are the model's outputs (never pruned)."""
    outs = []
    for node in model.graph.nodes:
        if node.op == "output":
            src = node.args[0]
            while src is not None and src.op == "call_function" and src.args and hasattr(src.args[0], "op"):
                src = src.args[0]
            if src is not None and src.op == "call_module":
                outs.append(model.get_submodule(src.target))
    return outs


def _pruned_copy(model, ratio: float, example):
    import torch_pruning as tp
    m = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(m, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=_output_layers(m), round_to=4)
    pruner.step()
    return m.eval()


def prune_to_budget(model, spec, budget: dict, example_windows: np.ndarray) -> tuple[object, dict]:
    """Channels pruned (torch-pruning: dependency graph, L2 magnitude, groups of 4) by the smallest ratio
    of PRUNE_RATIOS that brings MACs and the INT8 weight estimate inside the budget. ConfigError when none
    does."""
    import torch

    from ecgedge.quantize.prune import INT8_WEIGHT_BYTES
    window = int(spec.input.window_samples)
    example = torch.from_numpy(np.asarray(example_windows[:2], np.float32).reshape(-1, 1, window))

    def footprint(m):
        params = sum(p.numel() for p in m.parameters())
        return count_macs(m, window), params * INT8_WEIGHT_BYTES

    def fits(m):
        macs, flash = footprint(m)
        return macs <= budget["macs"] and flash <= budget["flash_bytes"]

    before = footprint(model)
    # torch-pruning's result is not monotonic in the ratio (a group that would empty is left whole): scan
    # upwards and keep the first ratio that fits
    best, smallest = None, None
    for ratio in PRUNE_RATIOS:
        cand = _pruned_copy(model, ratio, example)
        size = footprint(cand)
        if smallest is None or size[0] < smallest[1][0]:
            smallest = (ratio, size)
        if fits(cand):
            best, chosen = cand, ratio
            break
    if best is None:
        ratio, (macs, flash) = smallest
        raise ConfigError(f"the model does not fit even pruned: at best {macs:,} MACs (channel ratio {ratio:.2f}; "
                          f"budget {budget['macs']:,}) and ~{flash:,} B of weights (budget {budget['flash_bytes']:,})")
    after = footprint(best)
    return best, {"method": "torch-pruning MetaPruner, L2 magnitude, channel groups of 4 (dependency graph)",
                  "ratio": round(float(chosen), 4), "macs_before": before[0], "macs_after": after[0],
                  "weights_before": before[1], "weights_after": after[1]}


def prune_and_distil(opts, spec, model, budget: dict, cal_data: dict, held_out, input_range, distil_epochs: int):
    """A user model to its budget: pruned with torch-pruning, then distilled from the float model on the
    calibration windows (the teacher's outputs are the targets; labels are not used). A model inside its
    budget is returned as it is (no training)."""
    window = int(spec.input.window_samples)
    macs = count_macs(model, window)
    weights = sum(p.numel() for p in model.parameters())
    if macs <= budget["macs"] and weights <= budget["flash_bytes"]:
        return copy.deepcopy(model).eval(), {"pruned": False, "reason": "within budget"}
    if _has_recurrent(model):
        raise ConfigError(f"the model ({macs:,} MACs, {weights:,} weights) is over the budget ({budget['macs']:,} "
                          f"MACs, {budget['flash_bytes']:,} B) and has a GRU/LSTM, which torch-pruning's dependency "
                          "graph cannot prune: make it smaller, or give --latency-ms / --flash-budget")
    x_cal = cal_data["x"]
    student, info = prune_to_budget(model, spec, budget, x_cal[:, None, :])
    from ecgedge.quantize.distill import finetune_distill
    train = {"x": x_cal[:, None, :]}
    held = {"x": np.asarray(held_out.get()["x"])[:, None, :]}
    pruned, history = finetune_distill(student, model, train, held, spec, epochs=distil_epochs, seed=opts.seed,
                                       progress=opts.progress, time_budget_s=None, qat_epochs=0,
                                       freeze_prefix=False, input_range=input_range)
    info = {"pruned": True, **info,
            "distillation": {"train_windows": len(train["x"]), "held_out_windows": len(held["x"]),
                             "train_source": "the calibration windows (teacher outputs only)", "history": history}}
    return pruned.eval(), info


# ---------------------------------------------------------------------------------------------- report

def engine_check(tflite: bytes, layers: dict | None = None) -> dict:
    """Which ops our C engine lowers (per op, with the torch module using it when known)."""
    from ecgedge.firmware_bridge.tflite_model import load_model
    from ecgedge.quantize.analyze import _module_of, engine_support
    model = load_model(tflite)
    missing = []
    for op, (ok, why) in zip(model.operators, engine_support(model)):
        if not ok:
            names = [model.tensors[i].name for i in op.outputs + op.inputs if i >= 0]
            missing.append({"op": op.name, "index": op.index, "layer": _module_of(names, layers or {}) or f"op {op.index}",
                            "why": why})
    return {"runs_all_ops": not missing, "unsupported_ops": missing}


def user_report(meta: dict, real: dict | None, keras_info: dict, tflite: bytes, opts) -> dict:
    """The report keys a user model adds to the zoo's: where it came from, data notes, labels, what the
    model itself asked for (TRANSPOSEs) and which ops our C engine lacks."""
    return {
        "source": {"model": Path(str(meta.get("source"))).name, "format": meta.get("format")},
        "data_notes": real["notes"] if real is not None else
        ["no --data: calibrated and validated on generated ECG at the contract's rate (fidelity only)"],
        "labels": real.get("labels") if real is not None else None,
        "transposes_requested": keras_info["transposes"],
        "engine": engine_check(tflite, keras_info["layers"]),
    }


def c_library(tmp: Path, target, manifest: dict, engine: dict) -> dict:
    """The package's drop-in C library (c/, docs/integrate.md) for an MCU target, as a zoo package has it;
    skipped, with the reason in c_library_build, when our C engine lacks one of the model's ops (the package
    then runs in tflite-micro only)."""
    if not target.is_mcu:
        return {}
    if not engine.get("runs_all_ops", False):
        ops = sorted({m["op"] for m in engine.get("unsupported_ops", [])})
        return {"c_library": {}, "c_library_build": {"skipped": "our C engine does not run " + ", ".join(ops) +
                                                     " (the package runs in tflite-micro; see report engine)"}}
    from ecgedge.firmware_bridge.clib import package_library
    return package_library(tmp, target, manifest)


def output_errors(spec, reference: np.ndarray, test: np.ndarray) -> dict:
    """Per output: mean and max |test - reference| of the raw outputs."""
    d = np.abs(np.asarray(test, np.float64) - np.asarray(reference, np.float64))
    return {o.name: {"mean_abs": float(d[:, i].mean()), "max_abs": float(d[:, i].max())}
            for i, o in enumerate(spec.outputs)}


# -------------------------------------------------------------------------------------- a given .tflite

ENGINE_CHECK_WINDOWS = 20


def _engine_bit_exact(tflite: bytes, q: np.ndarray, tflm_q: np.ndarray, folder: Path) -> dict:
    """Our C engine (host build) on the validation windows' int8 inputs vs tflite-micro's outputs."""
    import subprocess

    from ecgedge.firmware_bridge.build import build_host
    path = folder / "model_int8.tflite"
    path.write_bytes(tflite)
    exe = build_host(path, folder / "host", "run")
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(q).tobytes(), capture_output=True, timeout=600)
    if r.returncode != 0:
        return {"ran": False, "error": r.stderr.decode(errors="replace")[-300:]}
    got = np.frombuffer(r.stdout, np.int8).reshape(len(q), -1)
    return {"ran": True, "windows": int(len(q)),
            "bit_exact_fraction": float(np.mean(np.all(got == tflm_q, axis=1)))}


def build_from_tflite(opts, spec, target, tmp: Path) -> dict:
    """A full-INT8 .tflite packaged as it is: checked (full INT8, the contract's window and outputs),
    validated (LiteRT vs tflite-micro, task metrics when labelled), run in our C engine where it supports
    every op, footprint; the same package files as the road's (no model.onnx: there is no float model)."""
    import tempfile
    import time

    from ecgedge.firmware_bridge.tflite_model import load_model
    from ecgedge.contract.package import FORMAT, sha256_file
    from ecgedge.contract.quantization import quantize_input
    from ecgedge.contract.runners import smallest_arena
    from ecgedge.quantize import footprint, tflite_export as te, tflm_array
    from ecgedge.quantize import validate as val
    from ecgedge.quantize.analyze import layer_table
    from ecgedge.quantize.pipeline import (SELECT_WINDOWS, VALID_SEED_OFFSET, _all_targets, _headline,
                                           class_labels, finish_package, labelled_windows,
                                           toolchain_versions)
    t0 = time.perf_counter()
    path = check_model_file(opts.model)
    user = user_label({"user": True, "source": str(path)})
    tflite = path.read_bytes()
    if len(tflite) < 8 or tflite[4:8] != b"TFL3":
        raise ModelError(f"{str(path)!r} is not a TFLite flatbuffer (identifier {tflite[4:8]!r}, expected b'TFL3')")
    model = load_model(tflite)
    inp, out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    if inp.type_name != "int8" or out.type_name != "int8":
        raise ModelError(f"{str(path)!r} has {inp.type_name} input and {out.type_name} output; a .tflite is taken as "
                         "full INT8 (int8 in and out) as it is: give the float model (.pt2 / .onnx) to quantise it")
    window = int(spec.input.window_samples)
    if int(np.prod(inp.shape)) != window:
        raise ModelError(f"{str(path)!r} takes an input of shape {list(inp.shape)} ({int(np.prod(inp.shape))} values); "
                         f"the contract's window is {window} samples")
    if int(np.prod(out.shape)) != spec.n_outputs:
        raise ModelError(f"{str(path)!r} gives {int(np.prod(out.shape))} outputs; the contract lists {spec.n_outputs}")
    ops_info = te.check_int8_only(tflite, transposes_allowed=te.op_list(tflite).count("TRANSPOSE"))
    rows, totals = layer_table(tflite)
    arena = smallest_arena(tflite)
    budget = footprint.budgets(target, opts.latency_ms, opts.flash_budget, opts.ram_budget, spec.target_caps)
    arena_engine, ram_check, problems = footprint.check_fit(target, tflite, arena, totals["macs"], budget,
                                                            opts.optimize)
    real = user_datasets(spec, opts, min(SELECT_WINDOWS, opts.val_windows)) if opts.data else None
    if real is not None:
        x_val, truth = real["validation"]["x"], real["truth"]
    else:
        valid = labelled_windows(spec, opts.val_windows, opts.seed + VALID_SEED_OFFSET)
        x_val, truth = valid["x"], val.labels_for(spec, valid)
    q_lite, raw_int8 = val.run_int8(tflite, x_val, "litert")
    n_tflm = len(x_val) if opts.tflm_windows is None else min(opts.tflm_windows, len(x_val))
    q_tflm, raw_tflm = val.run_int8(tflite, x_val[:n_tflm], "tflm", arena_size=arena)
    lsb = np.abs(q_lite[:n_tflm].astype(int) - q_tflm.astype(int))
    engine = engine_check(tflite)
    if engine["runs_all_ops"]:
        s_in, z_in = float(inp.scale[0]), int(inp.zero_point[0])
        n = min(ENGINE_CHECK_WINDOWS, n_tflm)
        q_in = np.stack([quantize_input(x, s_in, z_in) for x in x_val[:n]])
        with tempfile.TemporaryDirectory(prefix="ecgedge-engine-") as d:
            engine["host_check"] = _engine_bit_exact(tflite, q_in, q_tflm[:n], Path(d))
    quant = te.io_quant(tflite)
    metrics = {"int8": val.output_metrics(spec, raw_int8, truth),
               "int8_tflm": val.output_metrics(spec, raw_tflm, {k: None if v is None else v[:n_tflm]
                                                                  for k, v in truth.items()})}
    (tmp / "model_int8.tflite").write_bytes(tflite)
    model_sha = sha256_file(tmp / "model_int8.tflite")
    (tmp / "model_data.cc").write_text(tflm_array.model_data_cc(tflite, model_sha))
    (tmp / "model_data.h").write_text(tflm_array.model_data_h(model_sha))
    ops = te.op_list(tflite)
    (tmp / "ops.txt").write_text(tflm_array.ops_txt(ops))
    latency = {name: {"ms": tgt.estimate_latency_ms(totals["macs"]), "kind": "estimate"}
               for name, tgt in _all_targets(opts).items()}
    rep = {
        "model": spec.name, "target": target.name, "board": target.board, "demo": False,
        "label": user.kind, "notice": user.notice, "int8_only": True, "fits": not problems, "overflows": problems,
        "params_float": None, "params_pruned": None, "macs_float": totals["macs"], "macs_pruned": totals["macs"],
        "flash_bytes": len(tflite), "arena_bytes": arena, "arena_bytes_engine": arena_engine,
        "ram_check": ram_check, "budget": budget,
        "auroc_float": None, "auroc_pruned": None, "auroc_int8": _headline(metrics["int8"], spec),
        "auroc_int8_tflm": _headline(metrics["int8_tflm"], spec),
        "agreement_int8": None, "agreement_int8_vs_float": None, "agreement_tflm": val.compare(spec, raw_int8[:n_tflm], raw_tflm)["agreement"],
        "agreement_input_int8": None,   # no float model to feed the input grid
        "max_abs_delta_probability": None, "max_abs_delta_probability_vs_float": None,
        "tflm_vs_litert": {"windows": n_tflm, "bit_exact_fraction": float(np.mean(np.all(lsb == 0, axis=1))),
                           "max_lsb": int(lsb.max()) if lsb.size else 0},
        "headline_output": next((o.name for o in spec.outputs if o.kind == "logit"), None),
        "metrics": metrics, "calibrator": None, "calibrator_requested": None, "calibrator_selection": None,
        "input_range": None, "calibration": {"windows": 0, "source": "none: the given .tflite is full INT8 already",
                                             "method": "none (no re-quantisation)"},
        "validation": {"windows": len(x_val), "source": real["validation_source"] if real else "generated",
                       "tflm_windows": n_tflm},
        "keras_max_abs_diff": None, "sqnr": [], "sqnr_worst_layer": None,
        "ops": ops_info["ops"], "n_ops": ops_info["n_ops"],
        "latency_estimates_ms": latency, "latency_ms_estimate": target.estimate_latency_ms(totals["macs"]),
        "pruning": {"pruned": False, "reason": "a full-INT8 .tflite is packaged as it is"},
        "quantization": quant, "seed": opts.seed, "timings_s": {},
        "source": {"model": path.name, "format": "tflite"},
        "data_notes": real["notes"] if real else ["no --data: validated on generated ECG (LiteRT vs tflite-micro only)"],
        "labels": real.get("labels") if real else None, "transposes_requested": [], "engine": engine,
        "fidelity_note": "no float model was given: fidelity is LiteRT vs tflite-micro and our engine vs tflite-micro",
    }
    manifest = {
        "format": FORMAT, "model": spec.name, "task": spec.task, "target": target.name, "demo": False,
        "label": user.kind, "notice": user.notice, "model_sha256": model_sha, "artifacts": {},
        "input": {**spec.to_dict()["input"], "tflite_scale": quant["input"]["scale"],
                  "tflite_zero_point": quant["input"]["zero_point"], "tflite_shape": quant["input"]["shape"]},
        "outputs": [{**o, "index": i, "tflite_scale": quant["outputs"][0]["scale"],
                     "tflite_zero_point": quant["outputs"][0]["zero_point"]}
                    for i, o in enumerate(spec.to_dict()["outputs"])],
        "arena_bytes": arena, "ops": sorted(set(ops)), "toolchain": toolchain_versions(), "seed": opts.seed,
        "source": rep["source"], **class_labels(spec),
    }
    if real is not None and real.get("record_metrics") is not None:
        rep["classification"] = {"int8": real["record_metrics"](raw_int8)}
    if real is not None and real.get("validation_records"):
        (tmp / "validation_records.txt").write_text("\n".join(real["validation_records"]) + "\n")
        manifest["validation_records"] = "validation_records.txt"
    rep.update(c_library(tmp, target, manifest, engine))
    return finish_package(tmp, rep, manifest, spec, truth, None, raw_int8, target, t0)

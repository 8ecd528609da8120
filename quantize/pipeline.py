"""The export road: float reference -> pruned + distilled -> calibrated full INT8 -> validated package.

`export_package(ExportOptions(...))` writes dist/<model>-<target>/ (a package, docs/architecture.md:
manifest.json, report.json, report.html, model_int8.tflite, model.onnx, ...; the manifest through the
contract's one writer, ecgedge.contract.package) into a temporary folder beside the destination and
renames it only when everything is written.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgedge.contract.package import FORMAT, json_default, sha256_file, write_manifest
from ecgedge.contract.runners import smallest_arena
from ecgedge.errors import ConfigError, DataError, EdgeError, ExportError

# Window seeds: calibration, auto-selection and validation subjects never overlap training's (seed 0..).
CALIB_SEED_OFFSET = 7001
SELECT_SEED_OFFSET = 8001
VALID_SEED_OFFSET = 9001
TRAIN_SEED_OFFSET = 6001
WINDOWS_PER_SUBJECT = 5
DISTIL_EPOCHS = 4
QAT_EPOCHS = 3              # quantisation-aware epochs after the float distillation (0: off)
REAL_FINETUNE_WINDOWS = 8000   # labelled real records (af_lead1 --data): fine-tuning windows drawn from them
SELF_QAT_LR = 1e-4          # QAT of a model that is its own teacher: small steps, it is trained already
KERAS_TOLERANCE = 1e-3      # max |torch - keras| on raw outputs before quantising (seen ~1e-7)
SQNR_WINDOWS = 16
COLLECT_BATCH = 25
SELECT_WINDOWS = 300
INPUT_RANGE_PERCENTILES = (99.5, 99.8, 99.9, 99.95, 99.99, 100.0)   # per side; 100: min/max
INPUT_RANGE_WINDOWS = 500   # 128 windows moved the optimum between neighbours of this grid (af_lead1)


@dataclass
class ExportOptions:
    model: str                              # a zoo name, or a model file (.pt2 / .onnx / .tflite) with a contract
    target: str
    contract: object = None                 # contract TOML path or ModelSpec (a user's own model)
    module: object = field(default=None, repr=False)   # a live nn.Module (the Python API)
    checkpoint: str | None = None
    data: str | None = None
    out: str | None = None
    calibrator: str = "auto"
    calib_windows: int = 500
    val_windows: int = 1000
    tflm_windows: int | None = None        # None: all validation windows
    finetune_windows: int | None = None    # passed to distillation when it is available
    finetune_epochs: int | None = None
    qat_epochs: int | None = None          # None: QAT_EPOCHS
    qat_lr: float | None = None            # None: SELF_QAT_LR for a model inside its budget, else distill's
    latency_ms: float | None = None
    flash_budget: int | None = None
    ram_budget: int | None = None
    targets_file: str | None = None
    seed: int = 0
    sign_key: str | None = None
    firmware: bool = False
    optimize: str = "speed"                # firmware: "speed" (widened weights, tables) or "size" (int8 weights)
    progress: bool = True
    log: object = field(default=None, repr=False)   # rich Console or None


def set_seeds(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    import tensorflow as tf
    tf.random.set_seed(seed)


def toolchain_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import ecgedge
    out = {"ecgedge": ecgedge.__version__, "python": platform.python_version()}
    # key -> distribution names it may be installed under (tensorflow ships as tensorflow-cpu here)
    for key, dists in (("torch", ["torch"]), ("tensorflow", ["tensorflow", "tensorflow-cpu"]), ("keras", ["keras"]),
                       ("onnx", ["onnx"]), ("onnxruntime", ["onnxruntime"]), ("ai-edge-litert", ["ai-edge-litert"]),
                       ("tflite-micro", ["tflite-micro"]), ("numpy", ["numpy"]), ("torch-pruning", ["torch-pruning"])):
        for dist in dists:
            try:
                out[key] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


# ------------------------------------------------------------------------------------------------ data

def _data_files(folder: str) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"--data {folder!r} is not a folder")
    exts = {".hea", ".edf", ".csv", ".npy"}
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise DataError(f"--data {folder!r} holds no WFDB (.hea), EDF, CSV or .npy records")
    return files


def calibration_windows(spec, opts: ExportOptions) -> tuple[dict, str]:
    """Representative windows {"x": [N, W] model units, ("k": [N] for generated ones)} for calibration and
    fine-tuning, and a description of their source."""
    from ecgedge.calibration import windows_from_recordings
    if opts.data:
        x = windows_from_recordings(_data_files(opts.data), spec.input)[:, 0, :]
        if len(x) == 0:
            raise DataError(f"--data {opts.data!r}: no complete {spec.input.window_samples}-sample window")
        return {"x": x[:opts.calib_windows]}, f"records in {opts.data} ({len(x)} windows)"
    seed = opts.seed + CALIB_SEED_OFFSET
    return labelled_windows(spec, opts.calib_windows, seed), f"generated (seed {seed})"


def labelled_windows(spec, n: int, seed: int) -> dict:
    """Generated held-out windows with ground truth: x [N, W] in model units, k [N] ..."""
    from ecgedge.signals import make_windows
    rate = spec.input.sampling_rate_hz
    d = make_windows(-(-n // WINDOWS_PER_SUBJECT), WINDOWS_PER_SUBJECT, seed=seed, sampling_rate=rate,
                     window_s=spec.input.window_samples / rate, filters=spec.input.preprocessing)
    d = {k: np.asarray(v)[:n] for k, v in d.items()}
    d["x"] = (d["x"] / float(spec.input.scale_uv)).astype(np.float32)
    return d


# --------------------------------------------------------------------------------------- calibration

def collect_tflite_ranges(calibrated: bytes, x: np.ndarray, calibrators: dict, progress=None) -> dict:
    """Feed every recorded activation tensor of the calibrated float TFLite, over windows x, to each
    calibrator; returns {calibrator name: {tensor name: (min, max)}}."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ecgedge.quantize.tflite_export import calibrated_ranges
    names = set(calibrated_ranges(calibrated))
    it = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    tensors = [d for d in it.get_tensor_details() if d["name"] in names and d["dtype"] == np.float32]
    task = progress.add_task("calibration", total=len(x)) if progress is not None else None
    # Values are batched per tensor so that each calibrator sees a few large arrays, not many small ones.
    for start in range(0, len(x), COLLECT_BATCH):
        stop = min(start + COLLECT_BATCH, len(x))
        batch: dict[str, list[np.ndarray]] = {d["name"]: [] for d in tensors}
        for n in range(start, stop):
            it.set_tensor(inp["index"], np.asarray(x[n], np.float32).reshape(inp["shape"]))
            it.invoke()
            for d in tensors:
                batch[d["name"]].append(it.get_tensor(d["index"]).copy())
            if task is not None:
                progress.advance(task)
        for name, values in batch.items():
            stacked = np.stack(values)
            for cal in calibrators.values():
                cal.collect(name, stacked)
    return {name: cal.compute_ranges() for name, cal in calibrators.items()}


def int8_round_trip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """x quantised to int8 (the package's input contract) and back, for the range (lo, hi)."""
    from ecgedge.contract.quantization import dequantize, int8_qparams, quantize_input
    scale, zero_point = int8_qparams(lo, hi)
    return dequantize(quantize_input(x, scale, zero_point), scale, zero_point).astype(np.float32)


def choose_input_range(model, x: np.ndarray) -> dict:
    """The model input's int8 range: among the calibration windows' per-side percentiles, the one whose
    rounding and clipping change the float model's outputs least (mean squared error per output, over the
    output's variance). The input is where an ECG's small waves live: af_lead1's percentile-99.99 range
    (+-3.8 mV, 30 uV steps) cost 0.005 of record F1 on the float model alone; +-1.9 mV (15 uV steps)
    clips a few R peaks and costs 0.001. The activation calibrators judge ranges by the tensor's own
    error, which keeps the R peaks and loses the P waves."""
    from ecgedge.quantize.validate import run_torch
    x = np.asarray(x[:INPUT_RANGE_WINDOWS], np.float32)
    reference = run_torch(model, x)
    spread = np.maximum(reference.var(axis=0), 1e-12)
    rows = []
    for p in INPUT_RANGE_PERCENTILES:
        lo, hi = float(np.percentile(x, 100.0 - p)), float(np.percentile(x, p))
        out = run_torch(model, int8_round_trip(x, lo, hi))
        rows.append({"percentile": p, "min": lo, "max": hi,
                     "output_error": float(np.mean(np.mean((out - reference) ** 2, axis=0) / spread))})
    best = min(rows, key=lambda r: (r["output_error"], -r["percentile"]))
    return {"min": best["min"], "max": best["max"], "percentile": best["percentile"], "windows": len(x),
            "rule": "least float-model output error over per-side percentiles of the calibration windows",
            "candidates": rows}


def _score(spec, raw: np.ndarray, truth: dict, reference: np.ndarray) -> tuple:
    """Selection key for --calibrator auto: decision agreement with the pruned float model first (the
    INT8 model's job is to be that model: the HIL bench gates on it), then mean AUROC over the labelled
    logit outputs. AUROC first picked ranges that scored a little higher on a few hundred windows and
    flipped 4-5 % of the decisions (minmax 0.95 vs percentile 0.985 agreement on pocket_k)."""
    from ecgedge.quantize.validate import compare, output_metrics
    m = output_metrics(spec, raw, truth)
    aurocs = [v["auroc"] for v in m.values() if v.get("auroc") is not None]
    agreement = compare(spec, reference, raw)["agreement"] or 0.0
    return (agreement, float(np.mean(aurocs)) if aurocs else 0.0)


# ------------------------------------------------------------------------------------------------ road

def is_user_model(opts: ExportOptions) -> bool:
    """A user's own model (a file or a live module with a contract), not a zoo name."""
    from ecgedge.quantize.byom import is_model_file
    return opts.module is not None or opts.contract is not None or is_model_file(opts.model)


def _resolve(opts: ExportOptions):
    from ecgedge.calibration import calibrator_names
    from ecgedge.models.specs import get_spec, load_contract
    from ecgedge.targets import get_target
    if is_user_model(opts):
        from ecgedge.quantize.byom import check_model_file
        if opts.contract is None:
            raise ConfigError(f"{opts.model!r} is not a zoo model: give its contract (--contract C.toml; "
                              "docs/byom.md), or a zoo name")
        spec = load_contract(opts.contract)
        if opts.module is None:
            check_model_file(opts.model)
    else:
        spec = get_spec(opts.model)
    target = get_target(opts.target, opts.targets_file)
    if opts.calibrator != "auto" and opts.calibrator not in calibrator_names():
        raise ConfigError(f"unknown calibrator {opts.calibrator!r}; valid: auto, {', '.join(calibrator_names())}")
    for name in ("calib_windows", "val_windows"):
        if getattr(opts, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(opts, name)}: expected >= 1")
    if opts.qat_epochs is not None and opts.qat_epochs < 0:
        raise ConfigError(f"--qat-epochs {opts.qat_epochs}: expected >= 0")
    if opts.qat_lr is not None and not opts.qat_lr > 0:
        raise ConfigError(f"--qat-lr {opts.qat_lr}: expected a learning rate > 0")
    if opts.sign_key is not None and not Path(opts.sign_key).is_file():
        raise ConfigError(f"--sign-key {opts.sign_key!r}: no such key file")
    if opts.firmware:   # refuse before the export's work, not after it
        from ecgedge.firmware_bridge.build import check_optimize, firmware_core
        check_optimize(opts.optimize)
        firmware_core(target)
    return spec, target


def destination(opts: ExportOptions, spec=None) -> Path:
    name = spec.name if spec is not None else opts.model
    return Path(opts.out) if opts.out else Path("dist") / f"{name}-{opts.target}"


def export_package(opts: ExportOptions) -> tuple[Path, dict]:
    """Run the whole road; returns (package folder, report dict). EdgeError on any failure, with no
    (half-written) package left behind."""
    spec, target = _resolve(opts)
    dest = destination(opts, spec).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        if opts.module is None and str(opts.model).lower().endswith(".tflite"):
            from ecgedge.quantize.byom import build_from_tflite
            report = build_from_tflite(opts, spec, target, tmp)
        else:
            report = _build(opts, spec, target, tmp)
        if opts.firmware:
            report["firmware"] = _firmware(tmp, target, opts)
            (tmp / "report.json").write_text(json.dumps(report, indent=2, default=json_default) + "\n")
            write_manifest(tmp, report["_manifest"])
        if opts.sign_key:
            from ecgedge.contract.package import sign_package
            sign_package(tmp, opts.sign_key)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except EdgeError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise ExportError(f"export failed: {type(e).__name__}: {e}") from e
    report.pop("_manifest", None)
    return dest, report


def _progress(opts: ExportOptions):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not opts.progress, transient=False)


STAGE_TEXT = {"load_and_data": "float model and windows", "input_range": "input range chosen",
              "prune_distil": "pruned, distilled, quantisation-aware epochs", "keras_rebuild": "Keras rebuild checked",
              "calibrate_quantize": "calibrated and quantised to INT8", "validate": "validated (LiteRT, tflite-micro)",
              "sqnr": "per-layer SQNR", "artefacts": "package files written"}


def _say(opts: ExportOptions, text: str) -> None:
    if opts.log is not None:
        opts.log.print(text)


def _build(opts: ExportOptions, spec, target, tmp: Path) -> dict:
    import torch

    from ecgedge import labels
    from ecgedge.models.zoo import UntrainedWeightsWarning, count_params, load_model
    from ecgedge.quantize import footprint, tflm_array, onnx_export, report as report_mod, tflite_export as te
    from ecgedge.quantize import validate as val
    from ecgedge.quantize.byom import count_macs, output_errors
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import max_abs_difference, to_keras

    t0 = time.perf_counter()
    set_seeds(opts.seed)
    timings: dict[str, float] = {}

    def lap(name, since):
        timings[name] = round(time.perf_counter() - since, 2)
        _say(opts, f"[dim]{STAGE_TEXT.get(name, name)}: {timings[name]:.0f} s[/]")  # progress without bars too
        return time.perf_counter()

    # 1. float reference
    t = time.perf_counter()
    user = is_user_model(opts)
    if user:
        from ecgedge.quantize.byom import load_user_model
        model, meta = load_user_model(opts.module if opts.module is not None else opts.model, spec)
    else:
        with warnings.catch_warnings():  # the label below says it once, and says what is true
            warnings.simplefilter("ignore", UntrainedWeightsWarning)
            model, spec, meta = load_model(opts.model, opts.checkpoint)
    label = labels.from_meta(meta)
    demo = label.demo
    _say(opts, f"[bold yellow]{label.notice}[/]")
    window = int(spec.input.window_samples)
    real = _user_data(spec, opts) if user else _real_data(spec, opts, meta)
    if real is not None:  # labelled real records: calibrate on training records, validate on the card's
        cal_data, cal_source = real["calibration"], real["calibration_source"]
        held_out = _GivenHeldOut(real["selection"], real["selection_truth"])
        valid, truth = real["validation"], real["truth"]
    else:
        cal_data, cal_source = calibration_windows(spec, opts)
        held_out = _HeldOut(spec, min(SELECT_WINDOWS, opts.val_windows), opts.seed + SELECT_SEED_OFFSET)
        valid = labelled_windows(spec, opts.val_windows, opts.seed + VALID_SEED_OFFSET)
        truth = val.labels_for(spec, valid)
    x_cal = cal_data["x"]
    x_val = valid["x"]
    budget = footprint.budgets(target, opts.latency_ms, opts.flash_budget, opts.ram_budget, spec.target_caps)
    t = lap("load_and_data", t)

    # 2. the model input's int8 range (used by the QAT epochs and by every calibrator's candidate)
    input_range = choose_input_range(model, x_cal)
    t = lap("input_range", t)

    # 3. prune + distil to the target's budget
    finetune = (real["finetune"], real["finetune_source"]) if real is not None and "finetune" in real else None
    if user:
        from ecgedge.quantize.byom import prune_and_distil
        pruned, prune_info = prune_and_distil(opts, spec, model, budget, cal_data, held_out,
                                              (input_range["min"], input_range["max"]),
                                              opts.finetune_epochs or DISTIL_EPOCHS)
    else:
        pruned, prune_info = _prune_and_distil(opts, spec, model, budget, cal_data, held_out, finetune,
                                               (input_range["min"], input_range["max"]))
    t = lap("prune_distil", t)

    # 4. Keras rebuild (the general route: ecgedge.quantize.convert_graph + convert_keras), checked against torch
    keras_model, keras_info = to_keras(canonical(pruned, window), window, name=spec.name)
    diff = max_abs_difference(pruned, keras_model, x_val[:4, None, :])
    scale = max(1.0, float(np.max(np.abs(val.run_torch(pruned, x_val[:4])))))
    if not diff <= KERAS_TOLERANCE * scale:
        raise ExportError(f"Keras rebuild differs from torch by {diff:.3g} (> {KERAS_TOLERANCE} x {scale:.3g})")
    transposes = len(keras_info["transposes"])
    t = lap("keras_rebuild", t)

    with _progress(opts) as progress:
        # 5. calibration (per-tensor activation ranges; weights per-channel in the quantiser)
        from ecgedge.calibration import calibrator_names, get_calibrator
        calibrated = te.calibrate_only(keras_model, x_cal)
        names = calibrator_names() if opts.calibrator == "auto" else [opts.calibrator]
        if names == ["minmax"]:  # calibrate-only already recorded min/max over the same windows
            ranges = {"minmax": te.calibrated_ranges(calibrated)}
        else:
            ranges = collect_tflite_ranges(calibrated, x_cal, {n: get_calibrator(n) for n in names}, progress)
        input_name = te.input_tensor_name(calibrated)
        for r in ranges.values():
            r[input_name] = (input_range["min"], input_range["max"])
        candidates = {n: te.quantize_calibrated(te.override_ranges(calibrated, r)) for n, r in ranges.items()}
        selection = None
        if len(candidates) > 1:
            sel = held_out.get()
            sel_truth = held_out.truth()
            sel_ref = val.run_torch(pruned, sel["x"])
            scores = {}
            for n, tfl in candidates.items():
                try:
                    te.check_int8_only(tfl, transposes)
                except ExportError:
                    continue
                _, deq = val.run_int8(tfl, sel["x"], "litert", progress, f"select calibrator: {n}")
                scores[n] = _score(spec, deq, sel_truth, sel_ref)
            if not scores:
                raise ExportError("no calibrator produced a full-INT8 model")
            chosen = max(sorted(scores), key=lambda n: scores[n])
            selection = {"windows": len(sel["x"]), "seed": opts.seed + SELECT_SEED_OFFSET,
                         "key": "agreement with the pruned float model, then mean AUROC",
                         "scores": {n: {"agreement": s[0], "auroc_mean": s[1]} for n, s in scores.items()}}
        else:
            chosen = names[0]
        tflite = te.schedule(candidates[chosen], {k: v["order"] for k, v in keras_info["layers"].items()})
        ops_info = te.check_int8_only(tflite, transposes)
        ops = te.op_list(tflite)
        quant = te.io_quant(tflite)
        # 6. footprint, checked before the (long) validation: a model that cannot fit stops here
        arena = smallest_arena(tflite)
        macs_float = count_macs(model, window)
        macs_pruned = count_macs(pruned, window)
        flash = len(tflite)
        problems = footprint.overflows(flash, arena, macs_pruned, budget)
        footprint.require_fit(target.name, flash, arena, macs_pruned, budget)
        t = lap("calibrate_quantize", t)

        # 7. validation
        raw_float = val.run_torch(model, x_val)
        raw_pruned = val.run_torch(pruned, x_val)
        q_lite, raw_int8 = val.run_int8(tflite, x_val, "litert", progress, "validate INT8 (LiteRT)")
        n_tflm = len(x_val) if opts.tflm_windows is None else min(opts.tflm_windows, len(x_val))
        q_tflm, raw_tflm = val.run_int8(tflite, x_val[:n_tflm], "tflm", progress, "validate INT8 (tflite-micro)",
                                        arena_size=arena)
        t = lap("validate", t)
    sqnr = val.per_layer_sqnr(calibrated, tflite, x_val[:SQNR_WINDOWS])
    for row in sqnr:   # the torch module each Keras layer was built from
        row["module"] = keras_info["layers"].get(row["layer"], {}).get("path")
    finite = [r for r in sqnr if np.isfinite(r["sqnr_db"])]
    worst = min(finite, key=lambda r: r["sqnr_db"]) if finite else None
    t = lap("sqnr", t)

    metrics = {"float": val.output_metrics(spec, raw_float, truth),
               "pruned": val.output_metrics(spec, raw_pruned, truth),
               "int8": val.output_metrics(spec, raw_int8, truth),
               "int8_tflm": val.output_metrics(spec, raw_tflm, {k: None if v is None else v[:n_tflm]
                                                                  for k, v in truth.items()})}
    cmp_int8 = val.compare(spec, raw_pruned, raw_int8)
    cmp_float = val.compare(spec, raw_float, raw_int8)
    cmp_tflm = val.compare(spec, raw_pruned[:n_tflm], raw_tflm)
    lsb = np.abs(q_lite[:n_tflm].astype(int) - q_tflm.astype(int))

    # 8. artefacts
    (tmp / "model_int8.tflite").write_bytes(tflite)
    model_sha = sha256_file(tmp / "model_int8.tflite")
    (tmp / "model_data.cc").write_text(tflm_array.model_data_cc(tflite, model_sha))
    (tmp / "model_data.h").write_text(tflm_array.model_data_h(model_sha))
    (tmp / "ops.txt").write_text(tflm_array.ops_txt(ops))
    onnx_export.export_float(pruned, window, tmp / "model.onnx")
    onnx_info = {}
    if not target.is_mcu:
        cal_onnx = get_calibrator(chosen)
        onnx_ranges = onnx_export.activation_ranges(tmp / "model.onnx", x_cal[:min(len(x_cal), 100)], cal_onnx)
        onnx_export.export_int8(tmp / "model.onnx", tmp / "model_int8.onnx", x_cal[:min(len(x_cal), 100)],
                                onnx_ranges)
        raw_onnx_int8 = onnx_export.run_onnx(tmp / "model_int8.onnx", x_val)
        raw_onnx_float = onnx_export.run_onnx(tmp / "model.onnx", x_val[:64])
        onnx_info = {
            "latency_ms_onnx_float": onnx_export.latency_ms(tmp / "model.onnx", x_val),
            "latency_ms_onnx_int8": onnx_export.latency_ms(tmp / "model_int8.onnx", x_val),
            "auroc_onnx_int8": _headline(val.output_metrics(spec, raw_onnx_int8, truth), spec),
            "agreement_onnx_int8": val.compare(spec, raw_pruned, raw_onnx_int8)["agreement"],
            "onnx_float_max_abs_diff": float(np.max(np.abs(raw_onnx_float - raw_pruned[:64]))),
            "latency_note": "measured on the export machine, one thread, median of 30 runs",
        }
    t = lap("artefacts", t)

    head = _headline
    latency = {name: {"ms": tgt.estimate_latency_ms(macs_pruned), "kind": "estimate"}
               for name, tgt in _all_targets(opts).items()}
    rep = {
        "model": spec.name, "target": target.name, "board": target.board,
        "demo": demo, "label": label.kind, "notice": label.notice,
        "int8_only": True, "fits": not problems, "overflows": problems,
        "params_float": count_params(model), "params_pruned": count_params(pruned),
        "macs_float": macs_float, "macs_pruned": macs_pruned,
        "flash_bytes": flash, "arena_bytes": arena,
        "budget": budget,
        "auroc_float": head(metrics["float"], spec), "auroc_pruned": head(metrics["pruned"], spec),
        "auroc_int8": head(metrics["int8"], spec), "auroc_int8_tflm": head(metrics["int8_tflm"], spec),
        "agreement_int8": cmp_int8["agreement"], "agreement_int8_vs_float": cmp_float["agreement"],
        "agreement_tflm": cmp_tflm["agreement"],
        "max_abs_delta_probability": cmp_int8["max_abs_delta_probability"],
        "max_abs_delta_probability_vs_float": cmp_float["max_abs_delta_probability"],
        "output_error": output_errors(spec, raw_pruned, raw_int8),
        "tflm_vs_litert": {"windows": n_tflm, "bit_exact_fraction": float(np.mean(np.all(lsb == 0, axis=1))),
                           "max_lsb": int(lsb.max()) if lsb.size else 0},
        "headline_output": _headline_name(spec),
        "metrics": metrics,
        "calibrator": chosen, "calibrator_requested": opts.calibrator, "calibrator_selection": selection,
        "input_range": input_range,
        "calibration": {"windows": len(x_cal), "source": cal_source,
                        "method": "TFLite calibrate-only; activation (min, max) replaced by the calibrator's "
                                  "ranges, then the converter's MLIR quantiser; weights per-channel"},
        "validation": {"windows": len(x_val), "seed": opts.seed + VALID_SEED_OFFSET, "source": "generated",
                       "tflm_windows": n_tflm} if real is None else
                      {"windows": len(x_val), "records": len(real.get("validation_records", [])),
                       "source": real["validation_source"], "tflm_windows": n_tflm},
        "keras_max_abs_diff": diff,
        "sqnr": sqnr, "sqnr_worst_layer": worst,
        "ops": ops_info["ops"], "n_ops": ops_info["n_ops"],
        "latency_estimates_ms": latency,
        "latency_ms_estimate": target.estimate_latency_ms(macs_pruned),
        "pruning": prune_info,
        "quantization": quant,
        "seed": opts.seed, "timings_s": timings,
        **onnx_info,
    }
    manifest = {
        "format": FORMAT, "model": spec.name, "task": spec.task, "target": target.name, "demo": demo,
        "label": label.kind, "notice": label.notice, "model_sha256": model_sha, "artifacts": {},
        "input": {**spec.to_dict()["input"], "tflite_scale": quant["input"]["scale"],
                  "tflite_zero_point": quant["input"]["zero_point"], "tflite_shape": quant["input"]["shape"]},
        "outputs": [{**o, "index": i, "tflite_scale": quant["outputs"][0]["scale"],
                     "tflite_zero_point": quant["outputs"][0]["zero_point"]}
                    for i, o in enumerate(spec.to_dict()["outputs"])],
        "arena_bytes": arena, "ops": sorted(set(ops)),
        "toolchain": toolchain_versions(), "seed": opts.seed,
    }
    if user:
        from ecgedge.quantize.byom import user_report
        rep.update(user_report(meta, real, keras_info, tflite, opts))
        manifest["source"] = rep["source"]
    if real is not None and real.get("record_metrics") is not None:
        # record level (af_lead1, a user's labelled records: per-class F1 and the Challenge's F1)
        rep["classification"] = {"float": real["record_metrics"](raw_float), "pruned": real["record_metrics"](raw_pruned),
                                 "int8": real["record_metrics"](raw_int8),
                                 "agreement_argmax_int8": float(np.mean(raw_int8.argmax(1) == raw_pruned.argmax(1)))}
        if n_tflm == len(x_val):
            rep["classification"]["int8_tflm"] = real["record_metrics"](raw_tflm)
    if real is not None and real.get("validation_records"):
        (tmp / "validation_records.txt").write_text("\n".join(real["validation_records"]) + "\n")
        manifest["validation_records"] = "validation_records.txt"
    if user:   # the C library when our engine runs every op the user's model has (else skipped, said why)
        from ecgedge.quantize.byom import c_library
        rep.update(c_library(tmp, target, manifest, rep["engine"]))
    elif target.is_mcu:   # the package as a drop-in C library: c/ (docs/integrate.md)
        from ecgedge.firmware_bridge.clib import package_library
        rep.update(package_library(tmp, target, manifest))
    return finish_package(tmp, rep, manifest, spec, truth, raw_float, raw_int8, target, t0)


def finish_package(tmp: Path, rep: dict, manifest: dict, spec, truth, raw_float, raw_int8, target, t0: float) -> dict:
    """The last files of a package: report.html, report.json (with the seconds the build took), then the
    manifest; returns the report with `_manifest`."""
    from ecgedge.quantize import report as report_mod
    rep["seconds"] = time.perf_counter() - t0
    report_mod.write_html(tmp / "report.html", rep, spec, truth, raw_float, raw_int8, target)
    rep["seconds"] = time.perf_counter() - t0
    (tmp / "report.json").write_text(json.dumps(rep, indent=2, default=json_default) + "\n")
    write_manifest(tmp, manifest)
    rep["_manifest"] = manifest
    return rep


def _all_targets(opts):
    from ecgedge.targets import load_targets
    return load_targets(opts.targets_file)


def _headline_name(spec) -> str | None:
    for o in spec.outputs:
        if o.kind == "logit":
            return o.name
    return None


def _headline(metrics: dict, spec) -> float | None:
    """AUROC of the first logit output (pocket_k: K+ > 5.5)."""
    name = _headline_name(spec)
    return None if name is None else metrics[name].get("auroc")


class _HeldOut:
    """Generated held-out windows (calibrator selection, distillation early-stopping), made on first use."""

    def __init__(self, spec, n: int, seed: int):
        self.spec, self.n, self.seed, self.data = spec, n, seed, None

    def get(self) -> dict:
        if self.data is None:
            self.data = labelled_windows(self.spec, self.n, self.seed)
        return self.data

    def truth(self) -> dict:
        from ecgedge.quantize.validate import labels_for
        return labels_for(self.spec, self.get())


class _GivenHeldOut:
    """Held-out windows given with their truth (labelled real records)."""

    def __init__(self, data: dict, truth: dict):
        self.data, self._truth = data, truth

    def get(self) -> dict:
        return self.data

    def truth(self) -> dict:
        return self._truth


def _user_data(spec, opts: ExportOptions) -> dict | None:
    """A user's records (--data) split by record, or None (generated windows at the contract's rate)."""
    if not opts.data:
        return None
    from ecgedge.quantize.byom import user_datasets
    return user_datasets(spec, opts, min(SELECT_WINDOWS, opts.val_windows))


def _real_data(spec, opts: ExportOptions, meta: dict) -> dict | None:
    """Labelled real windows for a model trained on real records (af_lead1): from the records with --data,
    else the real windows shipped beside its checkpoint (a real-data checkpoint with neither: DataError).
    None for other models and for untrained or demo weights (generated windows)."""
    from ecgedge.models.af_export import REAL_DATA_MODELS, export_datasets, shipped_datasets
    from ecgedge.models.zoo import is_demo
    if spec.name not in REAL_DATA_MODELS:
        return None
    if opts.data:
        return export_datasets(spec, opts.data, opts.calib_windows, opts.val_windows, opts.seed,
                               card=meta.get("card"), select_windows=min(SELECT_WINDOWS, opts.val_windows),
                               finetune_windows=_real_finetune_windows(opts), progress=opts.progress)
    if is_demo(meta) or (meta.get("card") or {}).get("demo") is not False:
        return None
    return shipped_datasets(spec, meta.get("checkpoint"))


def _real_finetune_windows(opts: ExportOptions) -> int:
    """Fine-tuning windows from real training records: the option, else REAL_FINETUNE_WINDOWS when there
    are quantisation-aware epochs to run (with none, a model inside its budget is not fine-tuned)."""
    if opts.finetune_windows is not None:
        return opts.finetune_windows
    return REAL_FINETUNE_WINDOWS if _qat_epochs(opts) else 0


def _qat_epochs(opts: ExportOptions) -> int:
    return QAT_EPOCHS if opts.qat_epochs is None else opts.qat_epochs


def _prune_and_distil(opts, spec, model, budget: dict, cal_data: dict, held_out: _HeldOut,
                      finetune: tuple[dict, str] | None = None, input_range: tuple[float, float] | None = None):
    """Prune to the MAC / flash / RAM budget and fine-tune by distillation (ecgedge.quantize.prune /
    .distill) on the representative windows, or on `finetune` = (windows, source) when given (real
    training records). A model already inside the budget only gets the quantisation-aware epochs."""
    import copy

    from ecgedge.models.zoo import count_macs
    from ecgedge.quantize.prune import estimate_int8_bytes, prune_to_budget
    window = int(spec.input.window_samples)
    x_cal = cal_data["x"]
    macs = count_macs(model, window)
    qat = _qat_epochs(opts)
    if macs <= budget["macs"] and estimate_int8_bytes(model, window) <= budget["flash_bytes"]:
        info = {"pruned": False, "reason": "within budget"}
        if not qat:
            return copy.deepcopy(model).eval(), info
        # nothing to prune: the quantisation-aware epochs alone, end to end, the model its own teacher
        student, float_epochs, freeze = copy.deepcopy(model), 0, False
        qat_lr, freeze_bn = opts.qat_lr or SELF_QAT_LR, True
    else:
        student, info = prune_to_budget(model, spec, mac_budget=budget["macs"], flash_budget_bytes=budget["flash_bytes"],
                                        ram_budget_bytes=budget["ram_bytes"], example_windows=x_cal[:32, None, :],
                                        seed=opts.seed, progress=opts.progress)
        info = {"pruned": True, **info}
        float_epochs, freeze = opts.finetune_epochs or DISTIL_EPOCHS, True
        qat_lr, freeze_bn = opts.qat_lr, False
    from ecgedge.quantize.distill import finetune_distill
    train = dict(finetune[0] if finetune is not None else cal_data)
    source = cal_source_note = finetune[1] if finetune is not None else "the representative (calibration) windows"
    extra = (opts.finetune_windows or 0) - len(x_cal)
    if extra > 0 and not opts.data:
        more = labelled_windows(spec, extra, opts.seed + TRAIN_SEED_OFFSET)
        train = {k: np.concatenate([train[k], more[k]]) for k in train}
        source = f"{cal_source_note} + {extra} generated (seed {opts.seed + TRAIN_SEED_OFFSET})"
    train["x"] = train["x"][:, None, :]
    held = dict(held_out.get())
    held["x"] = held["x"][:, None, :]
    if not info["pruned"]:
        # its own teacher: the epochs are to carry the float model's function through INT8, so the
        # teacher's outputs are the only target and judge (labels would pull it off its own decisions)
        train = {"x": train["x"]}
        held = {"x": held["x"]}
    # No time budget: a wall-clock stop would make the model (and the .tflite) non-reproducible.
    pruned, history = finetune_distill(student, model, train, held, spec, epochs=float_epochs, seed=opts.seed,
                                       progress=opts.progress, time_budget_s=None, qat_epochs=qat,
                                       freeze_prefix=freeze, input_range=input_range, qat_lr=qat_lr,
                                       qat_freeze_bn=freeze_bn)
    info["distillation"] = {"train_windows": len(train["x"]), "held_out_windows": len(held["x"]),
                            "train_source": source, "history": history}
    return pruned.eval(), info


def _firmware(folder: Path, target, opts: ExportOptions | None = None) -> dict:
    from ecgedge.firmware_bridge.build import build_firmware
    t0 = time.perf_counter()

    def step(text: str) -> None:  # a firmware build takes tens of seconds: say what it is doing
        if opts is not None:
            _say(opts, f"firmware: {text} ({time.perf_counter() - t0:.0f} s)")

    r = build_firmware(folder, target=target.name, out_dir=folder / "firmware",
                       optimize=opts.optimize if opts is not None else "speed", progress=step)
    step(f"{Path(r.elf).name}: text {r.text:,} B, data {r.data:,} B, bss {r.bss:,} B; flash {r.flash_bytes:,} of "
         f"{target.flash_bytes:,} B, static RAM {r.ram_bytes:,} of {target.ram_bytes:,} B")
    return {"elf": str(Path(r.elf).relative_to(folder)) if Path(r.elf).is_relative_to(folder) else str(r.elf),
            "core": r.core, "kernels": r.kernels, "optimize": r.optimize, "qemu_machine": r.machine,
            "text": r.text, "data": r.data, "bss": r.bss, "flash_bytes": r.flash_bytes, "ram_bytes": r.ram_bytes,
            "arena_bytes": r.arena_bytes, "flash_budget": target.flash_bytes, "ram_budget": target.ram_bytes,
            "fits": r.flash_bytes <= target.flash_bytes and r.ram_bytes <= target.ram_bytes}

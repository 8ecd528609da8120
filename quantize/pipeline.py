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

from ecgedge.contract.package import json_default, write_manifest
from ecgedge.errors import BudgetError, ConfigError, DataError, EdgeError, ExportError

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


def class_labels(spec) -> dict:
    """{"class_labels": [...]} for a manifest when the contract's [labels] names the label each output stands
    for in the user's label files (CinC's '~' for an output named 'noisy'); {} otherwise. The HIL bench reads
    the records' labels with it."""
    classes = (spec.labels or {}).get("classes")
    return {"class_labels": list(classes)} if classes else {}


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
    """The road for a model to quantise (zoo or a user's float model), stage by stage
    (ecgedge.quantize.stages); returns the report with `_manifest`."""
    from ecgedge.quantize import stages as st

    s = st.ExportState(opts, spec, target, tmp)
    set_seeds(opts.seed)
    for stage in (st.load, st.choose_range, st.prune_distil, st.convert):
        stage(s)
    with _progress(opts) as s.progress:
        st.calibrate(s)
        st.validate(s)
    s.progress = None
    for stage in (st.sqnr, st.score, st.artefacts, st.package):
        stage(s)
    return s.report


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
    over = [f"{what} {used:,} B > {target.name}'s {have:,} B" for what, used, have in
            (("flash", r.flash_bytes, target.flash_bytes), ("static RAM", r.ram_bytes, target.ram_bytes))
            if used is not None and used > have]
    if over:   # a firmware that cannot be flashed is not a package
        hint = ("; --optimize size keeps the weights int8 (the speed build widens them)"
                if r.optimize == "speed" and r.flash_bytes > target.flash_bytes else "")
        raise BudgetError(f"the firmware does not fit: {', '.join(over)}{hint}")
    return {"elf": str(Path(r.elf).relative_to(folder)) if Path(r.elf).is_relative_to(folder) else str(r.elf),
            "core": r.core, "kernels": r.kernels, "optimize": r.optimize, "qemu_machine": r.machine,
            "text": r.text, "data": r.data, "bss": r.bss, "flash_bytes": r.flash_bytes, "ram_bytes": r.ram_bytes,
            "arena_bytes": r.arena_bytes, "flash_budget": target.flash_bytes, "ram_budget": target.ram_bytes,
            "fits": r.flash_bytes <= target.flash_bytes and r.ram_bytes <= target.ram_bytes}

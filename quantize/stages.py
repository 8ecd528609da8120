"""The export road as stages: load -> choose_range -> prune_distil -> convert -> calibrate -> validate ->
sqnr -> score -> artefacts -> package, each a function over one `ExportState` that reads what the stages
before it left there and adds its own part, so that a test can run one stage alone on a small state.

`ecgedge.quantize.pipeline._build` runs them in order; their order is the road's (the seeds are set once
before the first stage, so reordering stages changes the model bytes).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgedge.contract.package import FORMAT, sha256_file
from ecgedge.contract.runners import smallest_arena
from ecgedge.errors import ExportError
from ecgedge.quantize.pipeline import (DISTIL_EPOCHS, KERAS_TOLERANCE, SELECT_SEED_OFFSET, SELECT_WINDOWS,
                                       SELF_QAT_LR, SQNR_WINDOWS, TRAIN_SEED_OFFSET, VALID_SEED_OFFSET,
                                       ExportOptions, _all_targets, _headline, _headline_name, _qat_epochs,
                                       _real_data, _say, _score, STAGE_TEXT, _user_data, calibration_windows, class_labels,
                                       choose_input_range, collect_tflite_ranges, finish_package, int8_round_trip,
                                       is_user_model,
                                       labelled_windows, toolchain_versions)


@dataclass
class ExportState:
    """What the road knows: its inputs, then each stage's results (None until that stage has run)."""

    opts: ExportOptions
    spec: object
    target: object
    tmp: Path
    t0: float = field(default_factory=time.perf_counter)
    timings: dict = field(default_factory=dict)
    progress: object = None      # a rich Progress while calibrating and validating
    # load
    user: bool = False
    model: object = None
    meta: dict | None = None
    demo: bool = False
    notice: str | None = None
    label: object = None                    # ecgedge.labels: untrained, demo, research or user weights
    real: dict | None = None     # labelled real records (af_lead1, a user's --data), else None
    cal_data: dict | None = None
    cal_source: str | None = None
    held_out: object = None
    valid: dict | None = None
    truth: dict | None = None
    budget: dict | None = None
    input_range: dict | None = None
    # prune_distil
    pruned: object = None
    prune_info: dict | None = None
    # convert
    keras_model: object = None
    keras_info: dict | None = None
    keras_diff: float | None = None
    # calibrate
    calibrated: bytes | None = None
    chosen: str | None = None
    selection: dict | None = None
    tflite: bytes | None = None
    ops_info: dict | None = None
    ops: list | None = None
    quant: dict | None = None
    arena: int | None = None
    arena_engine: int | None = None   # our engine's planned arena for the target's core (ecgedge-c targets)
    ram_check: dict | None = None     # the arena the RAM budget was checked with, and whose it is
    macs_float: int | None = None
    macs_pruned: int | None = None
    problems: list | None = None
    # validate, sqnr, score
    raw: dict = field(default_factory=dict)   # float, pruned, int8, tflm: dequantised outputs
    q_lite: np.ndarray | None = None
    q_tflm: np.ndarray | None = None
    n_tflm: int | None = None
    sqnr: list | None = None
    sqnr_worst: dict | None = None
    metrics: dict | None = None
    compare: dict | None = None
    lsb: np.ndarray | None = None
    # artefacts, package
    model_sha: str | None = None
    onnx_info: dict = field(default_factory=dict)
    report: dict | None = None
    manifest: dict | None = None
    _mark: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def window(self) -> int:
        return int(self.spec.input.window_samples)

    @property
    def x_cal(self) -> np.ndarray:
        return self.cal_data["x"]

    @property
    def x_val(self) -> np.ndarray:
        return self.valid["x"]

    def lap(self, name: str) -> None:
        """Seconds since the previous lap, as report.json's timings_s[name]."""
        self.timings[name] = round(time.perf_counter() - self._mark, 2)
        _say(self.opts, f"[dim]{STAGE_TEXT.get(name, name)}: {self.timings[name]:.0f} s[/]")  # progress without bars too
        self._mark = time.perf_counter()


def load(s: ExportState) -> None:
    """The float reference and the windows: calibration, selection held-out, validation with its truth."""
    from ecgedge import labels
    from ecgedge.models.zoo import UntrainedWeightsWarning, load_model
    from ecgedge.quantize import footprint
    from ecgedge.quantize import validate as val
    opts, spec = s.opts, s.spec
    s._mark = time.perf_counter()
    s.user = is_user_model(opts)
    if s.user:
        from ecgedge.quantize.byom import load_user_model
        s.model, s.meta = load_user_model(opts.module if opts.module is not None else opts.model, spec)
    else:
        with warnings.catch_warnings():  # the label below says it once, and says what is true
            warnings.simplefilter("ignore", UntrainedWeightsWarning)
            s.model, spec, s.meta = load_model(opts.model, opts.checkpoint)
        s.spec = spec
    s.label = labels.from_meta(s.meta)
    s.demo, s.notice = s.label.demo, s.label.notice
    s.real = real = _user_data(spec, opts) if s.user else _real_data(spec, opts, s.meta)
    if real is not None:  # labelled real records: calibrate on training records, validate on the card's
        s.cal_data, s.cal_source = real["calibration"], real["calibration_source"]
        s.held_out = _GivenHeldOut(real["selection"], real["selection_truth"])
        s.valid, s.truth = real["validation"], real["truth"]
    else:
        s.cal_data, s.cal_source = calibration_windows(spec, opts)
        s.held_out = _HeldOut(spec, min(SELECT_WINDOWS, opts.val_windows), opts.seed + SELECT_SEED_OFFSET)
        s.valid = labelled_windows(spec, opts.val_windows, opts.seed + VALID_SEED_OFFSET)
        s.truth = val.labels_for(spec, s.valid)
    _say(opts, f"[bold yellow]{s.notice}[/]")   # once the windows are there: a refusal stays one line
    s.budget = footprint.budgets(s.target, opts.latency_ms, opts.flash_budget, opts.ram_budget, spec.target_caps)
    s.lap("load_and_data")


def choose_range(s: ExportState) -> None:
    """The model input's int8 range: used by the QAT epochs and by every calibrator's candidate."""
    s.input_range = choose_input_range(s.model, s.x_cal)
    s.lap("input_range")


def prune_distil(s: ExportState) -> None:
    """Prune to the target's budget and distil (a user's model: byom's rules)."""
    opts, real = s.opts, s.real
    bounds = (s.input_range["min"], s.input_range["max"])
    finetune = (real["finetune"], real["finetune_source"]) if real is not None and "finetune" in real else None
    if s.user:
        from ecgedge.quantize.byom import prune_and_distil
        s.pruned, s.prune_info = prune_and_distil(opts, s.spec, s.model, s.budget, s.cal_data, s.held_out, bounds,
                                                  opts.finetune_epochs or DISTIL_EPOCHS)
    else:
        s.pruned, s.prune_info = _prune_and_distil(opts, s.spec, s.model, s.budget, s.cal_data, s.held_out,
                                                   finetune, bounds, runtime=s.target.runtime)
    s.lap("prune_distil")


def convert(s: ExportState) -> None:
    """The Keras rebuild (the general route: ecgedge.quantize.convert_graph + convert_keras), checked
    against torch before anything is quantised."""
    from ecgedge.quantize import validate as val
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import max_abs_difference, to_keras
    x_val = s.x_val
    s.keras_model, s.keras_info = to_keras(canonical(s.pruned, s.window), s.window, name=s.spec.name)
    diff = max_abs_difference(s.pruned, s.keras_model, x_val[:4, None, :])
    scale = max(1.0, float(np.max(np.abs(val.run_torch(s.pruned, x_val[:4])))))
    if not diff <= KERAS_TOLERANCE * scale:
        raise ExportError(f"Keras rebuild differs from torch by {diff:.3g} (> {KERAS_TOLERANCE} x {scale:.3g})")
    s.keras_diff = diff
    s.lap("keras_rebuild")


def calibrate(s: ExportState) -> None:
    """Per-tensor activation ranges from each calibrator (weights per-channel in the quantiser), one full
    INT8 candidate each, the chosen one scheduled; the footprint is checked here, before the (long)
    validation, so that a model that cannot fit stops early."""
    from ecgedge.calibration import calibrator_names, get_calibrator
    from ecgedge.quantize import footprint, tflite_export as te
    from ecgedge.quantize.byom import count_macs
    opts, x_cal = s.opts, s.x_cal
    transposes = len(s.keras_info["transposes"])
    s.calibrated = calibrated = te.calibrate_only(s.keras_model, x_cal)
    names = calibrator_names() if opts.calibrator == "auto" else [opts.calibrator]
    if names == ["minmax"]:  # calibrate-only already recorded min/max over the same windows
        ranges = {"minmax": te.calibrated_ranges(calibrated)}
    else:
        ranges = collect_tflite_ranges(calibrated, x_cal, {n: get_calibrator(n) for n in names}, s.progress)
    input_name = te.input_tensor_name(calibrated)
    for r in ranges.values():
        r[input_name] = (s.input_range["min"], s.input_range["max"])
    candidates = {n: te.quantize_calibrated(te.override_ranges(calibrated, r)) for n, r in ranges.items()}
    if len(candidates) > 1:
        s.chosen, s.selection = _select_calibrator(s, candidates, transposes)
    else:
        s.chosen, s.selection = names[0], None
    tflite = te.schedule(candidates[s.chosen], {k: v["order"] for k, v in s.keras_info["layers"].items()})
    s.ops_info = te.check_int8_only(tflite, transposes)
    s.ops = te.op_list(tflite)
    s.quant = te.io_quant(tflite)
    s.tflite = tflite
    s.arena = smallest_arena(tflite)     # tflite-micro's: the validation runs it, the manifest carries it
    s.macs_float = count_macs(s.model, s.window)
    s.macs_pruned = count_macs(s.pruned, s.window)
    s.arena_engine, s.ram_check, s.problems = footprint.check_fit(s.target, tflite, s.arena, s.macs_pruned, s.budget,
                                                                  opts.optimize)
    s.lap("calibrate_quantize")


def _select_calibrator(s: ExportState, candidates: dict, transposes: int) -> tuple[str, dict]:
    """--calibrator auto: the candidate that scores best on the held-out selection windows."""
    from ecgedge.quantize import tflite_export as te
    from ecgedge.quantize import validate as val
    sel = s.held_out.get()
    sel_truth = s.held_out.truth()
    sel_ref = val.run_torch(s.pruned, sel["x"])
    scores = {}
    for n, tfl in candidates.items():
        try:
            te.check_int8_only(tfl, transposes)
        except ExportError:
            continue
        _, deq = val.run_int8(tfl, sel["x"], "litert", s.progress, f"select calibrator: {n}")
        scores[n] = _score(s.spec, deq, sel_truth, sel_ref)
    if not scores:
        raise ExportError("no calibrator produced a full-INT8 model")
    chosen = max(sorted(scores), key=lambda n: scores[n])
    selection = {"windows": len(sel["x"]), "seed": s.opts.seed + SELECT_SEED_OFFSET,
                 "key": "agreement with the pruned float model, then mean AUROC",
                 "scores": {n: {"agreement": v[0], "auroc_mean": v[1]} for n, v in scores.items()}}
    return chosen, selection


def validate(s: ExportState) -> None:
    """The float, pruned and INT8 (LiteRT, tflite-micro) outputs over the validation windows."""
    from ecgedge.quantize import validate as val
    x_val, opts = s.x_val, s.opts
    s.raw["float"] = val.run_torch(s.model, x_val)
    s.raw["pruned"] = val.run_torch(s.pruned, x_val)
    s.q_lite, s.raw["int8"] = val.run_int8(s.tflite, x_val, "litert", s.progress, "validate INT8 (LiteRT)")
    # The pruned float model on the INT8 model's input grid: what the input's own 256 steps cost before any
    # layer is quantised, a bound no calibration or quantiser can improve on (the report's
    # agreement_input_int8; a model that loses decisions here is sensitive to input steps of this size).
    s.raw["input_int8"] = val.run_torch(s.pruned, int8_round_trip(x_val, s.input_range["min"], s.input_range["max"]))
    s.n_tflm = len(x_val) if opts.tflm_windows is None else min(opts.tflm_windows, len(x_val))
    s.q_tflm, s.raw["tflm"] = val.run_int8(s.tflite, x_val[:s.n_tflm], "tflm", s.progress,
                                           "validate INT8 (tflite-micro)", arena_size=s.arena)
    s.lap("validate")


def sqnr(s: ExportState) -> None:
    """Per-layer SQNR of the INT8 model against the calibrated float one, each row with its torch module."""
    from ecgedge.quantize import validate as val
    rows = val.per_layer_sqnr(s.calibrated, s.tflite, s.x_val[:SQNR_WINDOWS])
    for row in rows:   # the torch module each Keras layer was built from
        row["module"] = s.keras_info["layers"].get(row["layer"], {}).get("path")
    finite = [r for r in rows if np.isfinite(r["sqnr_db"])]
    s.sqnr, s.sqnr_worst = rows, (min(finite, key=lambda r: r["sqnr_db"]) if finite else None)
    s.lap("sqnr")


def score(s: ExportState) -> None:
    """Task metrics of each model, agreement between them, LiteRT vs tflite-micro in int8 steps."""
    from ecgedge.quantize import validate as val
    spec, truth, raw, n_tflm = s.spec, s.truth, s.raw, s.n_tflm
    s.metrics = {"float": val.output_metrics(spec, raw["float"], truth),
                 "pruned": val.output_metrics(spec, raw["pruned"], truth),
                 "int8": val.output_metrics(spec, raw["int8"], truth),
                 "int8_tflm": val.output_metrics(spec, raw["tflm"], {k: None if v is None else v[:n_tflm]
                                                                     for k, v in truth.items()})}
    s.compare = {"int8": val.compare(spec, raw["pruned"], raw["int8"]),
                 "float": val.compare(spec, raw["float"], raw["int8"]),
                 "tflm": val.compare(spec, raw["pruned"][:n_tflm], raw["tflm"]),
                 "input": val.compare(spec, raw["pruned"], raw["input_int8"])}
    s.lsb = np.abs(s.q_lite[:n_tflm].astype(int) - s.q_tflm.astype(int))


def artefacts(s: ExportState) -> None:
    """The model files: INT8 TFLite with its C array, op list, float ONNX (and INT8 ONNX off-MCU)."""
    from ecgedge.quantize import onnx_export, tflm_array
    tmp, tflite = s.tmp, s.tflite
    (tmp / "model_int8.tflite").write_bytes(tflite)
    s.model_sha = model_sha = sha256_file(tmp / "model_int8.tflite")
    (tmp / "model_data.cc").write_text(tflm_array.model_data_cc(tflite, model_sha))
    (tmp / "model_data.h").write_text(tflm_array.model_data_h(model_sha))
    (tmp / "ops.txt").write_text(tflm_array.ops_txt(s.ops))
    onnx_export.export_float(s.pruned, s.window, tmp / "model.onnx")
    if not s.target.is_mcu:
        s.onnx_info = _onnx_int8(s)
    s.lap("artefacts")


def _onnx_int8(s: ExportState) -> dict:
    """The INT8 ONNX beside the float one (hosts, phones), calibrated with the chosen calibrator."""
    from ecgedge.calibration import get_calibrator
    from ecgedge.quantize import onnx_export
    from ecgedge.quantize import validate as val
    tmp, x_cal, x_val, spec = s.tmp, s.x_cal, s.x_val, s.spec
    cal_onnx = get_calibrator(s.chosen)
    onnx_ranges = onnx_export.activation_ranges(tmp / "model.onnx", x_cal[:min(len(x_cal), 100)], cal_onnx)
    onnx_export.export_int8(tmp / "model.onnx", tmp / "model_int8.onnx", x_cal[:min(len(x_cal), 100)],
                            onnx_ranges)
    raw_onnx_int8 = onnx_export.run_onnx(tmp / "model_int8.onnx", x_val)
    raw_onnx_float = onnx_export.run_onnx(tmp / "model.onnx", x_val[:64])
    return {
        "latency_ms_onnx_float": onnx_export.latency_ms(tmp / "model.onnx", x_val),
        "latency_ms_onnx_int8": onnx_export.latency_ms(tmp / "model_int8.onnx", x_val),
        "auroc_onnx_int8": _headline(val.output_metrics(spec, raw_onnx_int8, s.truth), spec),
        "agreement_onnx_int8": val.compare(spec, s.raw["pruned"], raw_onnx_int8)["agreement"],
        "onnx_float_max_abs_diff": float(np.max(np.abs(raw_onnx_float - s.raw["pruned"][:64]))),
        "latency_note": "measured on the export machine, one thread, median of 30 runs",
    }


def package(s: ExportState) -> None:
    """report.json, the manifest, the records list and the C library, then the package's last files."""
    opts, real, tmp, target = s.opts, s.real, s.tmp, s.target
    raw = s.raw
    rep, manifest = report(s), manifest_of(s)
    if s.user:
        from ecgedge.quantize.byom import user_report
        rep.update(user_report(s.meta, real, s.keras_info, s.tflite, opts))
        manifest["source"] = rep["source"]
    if real is not None and real.get("record_metrics") is not None:
        # record level (af_lead1, a user's labelled records: per-class F1 and the Challenge's F1)
        rep["classification"] = {"float": real["record_metrics"](raw["float"]),
                                 "pruned": real["record_metrics"](raw["pruned"]),
                                 "int8": real["record_metrics"](raw["int8"]),
                                 "agreement_argmax_int8": float(np.mean(raw["int8"].argmax(1) == raw["pruned"].argmax(1)))}
        if s.n_tflm == len(s.x_val):
            rep["classification"]["int8_tflm"] = real["record_metrics"](raw["tflm"])
    if real is not None and real.get("validation_records"):
        (tmp / "validation_records.txt").write_text("\n".join(real["validation_records"]) + "\n")
        manifest["validation_records"] = "validation_records.txt"
    if s.user:   # the C library when our engine runs every op the user's model has (else skipped, said why)
        from ecgedge.quantize.byom import c_library
        rep.update(c_library(tmp, target, manifest, rep["engine"]))
    elif target.is_mcu:   # the package as a drop-in C library: c/ (docs/integrate.md)
        from ecgedge.firmware_bridge.clib import package_library
        rep.update(package_library(tmp, target, manifest))
    s.manifest = manifest
    s.report = finish_package(tmp, rep, manifest, s.spec, s.truth, raw["float"], raw["int8"], target, s.t0)


def report(s: ExportState) -> dict:
    """report.json's fields (docs/architecture.md), from every stage's results."""
    from ecgedge.models.zoo import count_params
    from ecgedge.quantize.byom import output_errors
    opts, spec, target, metrics, cmp, real = s.opts, s.spec, s.target, s.metrics, s.compare, s.real
    head, x_val, n_tflm, lsb = _headline, s.x_val, s.n_tflm, s.lsb
    latency = {name: {"ms": tgt.estimate_latency_ms(s.macs_pruned), "kind": "estimate"}
               for name, tgt in _all_targets(opts).items()}
    return {
        "model": spec.name, "target": target.name, "board": target.board,
        "demo": s.demo, "label": s.label.kind, "notice": s.notice,
        "int8_only": True, "fits": not s.problems, "overflows": s.problems,
        "params_float": count_params(s.model), "params_pruned": count_params(s.pruned),
        "macs_float": s.macs_float, "macs_pruned": s.macs_pruned,
        "flash_bytes": len(s.tflite), "arena_bytes": s.arena, "arena_bytes_engine": s.arena_engine,
        "ram_check": s.ram_check,
        "budget": s.budget,
        "auroc_float": head(metrics["float"], spec), "auroc_pruned": head(metrics["pruned"], spec),
        "auroc_int8": head(metrics["int8"], spec), "auroc_int8_tflm": head(metrics["int8_tflm"], spec),
        "agreement_int8": cmp["int8"]["agreement"], "agreement_int8_vs_float": cmp["float"]["agreement"],
        "agreement_tflm": cmp["tflm"]["agreement"], "agreement_input_int8": cmp["input"]["agreement"],
        "max_abs_delta_probability": cmp["int8"]["max_abs_delta_probability"],
        "max_abs_delta_probability_vs_float": cmp["float"]["max_abs_delta_probability"],
        "output_error": output_errors(spec, s.raw["pruned"], s.raw["int8"]),
        "tflm_vs_litert": {"windows": n_tflm, "bit_exact_fraction": float(np.mean(np.all(lsb == 0, axis=1))),
                           "max_lsb": int(lsb.max()) if lsb.size else 0},
        "headline_output": _headline_name(spec),
        "metrics": metrics,
        "calibrator": s.chosen, "calibrator_requested": opts.calibrator, "calibrator_selection": s.selection,
        "input_range": s.input_range,
        "calibration": {"windows": len(s.x_cal), "source": s.cal_source,
                        "method": "TFLite calibrate-only; activation (min, max) replaced by the calibrator's "
                                  "ranges, then the converter's MLIR quantiser; weights per-channel"},
        "validation": {"windows": len(x_val), "seed": opts.seed + VALID_SEED_OFFSET, "source": "generated",
                       "tflm_windows": n_tflm} if real is None else
                      {"windows": len(x_val), "records": len(real.get("validation_records", [])),
                       "source": real["validation_source"], "tflm_windows": n_tflm},
        "keras_max_abs_diff": s.keras_diff,
        "sqnr": s.sqnr, "sqnr_worst_layer": s.sqnr_worst,
        "ops": s.ops_info["ops"], "n_ops": s.ops_info["n_ops"],
        "latency_estimates_ms": latency,
        "latency_ms_estimate": target.estimate_latency_ms(s.macs_pruned),
        "pruning": s.prune_info,
        "quantization": s.quant,
        "seed": opts.seed, "timings_s": s.timings,
        **s.onnx_info,
    }


def manifest_of(s: ExportState) -> dict:
    """manifest.json before its artifact hashes (the contract's writer adds those)."""
    spec, quant = s.spec, s.quant
    return {
        "format": FORMAT, "model": spec.name, "task": spec.task, "target": s.target.name, "demo": s.demo,
        "label": s.label.kind, "notice": s.notice, "model_sha256": s.model_sha, "artifacts": {},
        "input": {**spec.to_dict()["input"], "tflite_scale": quant["input"]["scale"],
                  "tflite_zero_point": quant["input"]["zero_point"], "tflite_shape": quant["input"]["shape"]},
        "outputs": [{**o, "index": i, "tflite_scale": quant["outputs"][0]["scale"],
                     "tflite_zero_point": quant["outputs"][0]["zero_point"]}
                    for i, o in enumerate(spec.to_dict()["outputs"])],
        "arena_bytes": s.arena, "ops": sorted(set(s.ops)),
        "toolchain": toolchain_versions(), "seed": s.opts.seed, **class_labels(spec),
    }


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



def _prune_and_distil(opts, spec, model, budget: dict, cal_data: dict, held_out: _HeldOut,
                      finetune: tuple[dict, str] | None = None, input_range: tuple[float, float] | None = None,
                      runtime: str | None = None):
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
                                        seed=opts.seed, progress=opts.progress, runtime=runtime)
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


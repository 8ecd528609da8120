"""The HIL bench: windows -> device (LOAD_INPUT + INFER per window, MLPerf-Tiny style) -> compare with the
INT8 reference (tflite-micro, bit for bit) and the float reference (torch) -> metrics -> gates -> reports.

Five stages over one small state object (BenchState), each callable alone:
    prepare (package, eval set, float references)  -> run (shards of windows through devices: shard.py,
    executed in this process, in local worker processes or as Ray tasks: farm.py)  -> score (scoring.py)
    -> gate (gates.toml)  -> report (JSON, JUnit, HTML).
A device that stops answering ends the run with a clear error and a PARTIAL report naming the window.
The report is the same, timings aside, whatever the number of shards and wherever they ran.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ecgedge import labels
from ecgedge.contract import quantization as Q
from ecgedge.contract.package import Package, json_default, load_package
from ecgedge.errors import EdgeError
from ecgedge.hil_tests import scoring as S
from ecgedge.hil_tests.devices import BenchDevice
from ecgedge.hil_tests.evalset import EvalSet, data_eval_set, synthetic_eval_set
from ecgedge.hil_tests.gates import GateResult, evaluate_gates, failed, load_gates
from ecgedge.hil_tests.reference import float_reference, onnx_float_reference
from ecgedge.hil_tests.shard import RunResult, reference_runner

DEFAULT_WINDOWS = 200
# QEMU counts instructions, not cycles: latency = instructions x CPI / clock. A Cortex-M7 dual-issues,
# so 1.0 cycle per instruction is a middle-of-the-road assumption (stated in every report).
DEFAULT_CPI = 1.0
FEED_WINDOWS = 2  # host-fed sample-integrity check: windows of samples sent to the device, the last checked
# the keys of hil_report.json that depend on the run (timings, where and how its shards ran); every other key
# is the same on the same inputs whatever the number of workers or shards
RUN_DEPENDENT_KEYS = ("seconds", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "round_trip_ms_p50",
                      "round_trip_ms_p95", "report_dir", "started", "finished", "workers", "executor", "shards",
                      "retries")


@dataclass
class BenchConfig:
    model_dir: Path
    device_url: str
    windows: int | None = DEFAULT_WINDOWS
    data_dir: Path | None = None
    labels_file: Path | None = None
    records: list[str] | None = None
    report_dir: Path | None = None
    gates_file: Path | None = None
    timeout_s: float = 10.0
    seed: int = 0
    cpi: float = DEFAULT_CPI
    trust: Path | None = None
    checkpoint: Path | None = None       # float reference checkpoint (default: the zoo's shipped weights)
    allow_unsigned: bool = True
    float_reference: bool = True
    integrity: bool = True
    progress: bool = True
    # the farm: shards over local worker processes, or Ray tasks (`ray`: "auto" or a cluster address)
    workers: int = 1
    ray: str | None = None
    shards: int | None = None            # default: one per worker (local), one per CPU of the cluster (Ray)
    max_retries: int = 2                 # a shard whose worker or node died runs again, at most this often
    # test hooks: a prebuilt/fault-injected firmware, and a callback before each window
    elf: Path | None = None
    defines: dict | None = None
    on_window: Callable[[int, BenchDevice], None] | None = None


@dataclass
class BenchOutcome:
    report: dict
    gates: list[GateResult]
    report_dir: Path
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not failed(self.gates)

    @property
    def failed_gates(self) -> list[str]:
        return [g.name for g in failed(self.gates)]


@dataclass
class BenchState:
    """What the stages hand each other. prepare fills the first block, run `run`, score `metrics`..."""
    cfg: BenchConfig
    package: Package
    outputs: list[dict]                  # the manifest's outputs in index order
    task: str
    target: Any                          # ecgedge.targets.Target or None (a package for no known target)
    es: EvalSet
    q_in: np.ndarray                     # int8 inputs of every window
    input_qparams: tuple[float, int]     # the INT8 model's input (scale, zero point)
    n_outputs: int                       # the INT8 model's outputs
    reference: str = "tflm"              # the INT8 reference's runtime (LiteRT where tflite-micro is absent)
    float_raw: np.ndarray | None = None  # float reference outputs (torch zoo model, or caller-supplied)
    float_info: dict = field(default_factory=dict)
    pruned_raw: np.ndarray | None = None  # the package's own float model (model.onnx)
    notes: list[str] = field(default_factory=list)
    started: str = ""
    t_start: float = 0.0
    run: RunResult | None = None
    metrics: dict = field(default_factory=dict)
    contract_problems: list[str] = field(default_factory=list)
    latencies: list = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    report: dict | None = None

    @property
    def manifest(self) -> dict:
        return self.package.manifest

    @property
    def error(self) -> str | None:
        return self.run.error if self.run is not None else None


def default_report_dir(model_dir: Path, device_url: str) -> Path:
    dev = "".join(c if c.isalnum() or c in "-_." else "_" for c in device_url.split("?")[0]).strip("_")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("hil_reports") / f"{Path(model_dir).name}-{dev}-{stamp}"


def _task(manifest: dict) -> str:
    if manifest.get("task"):
        return manifest["task"]
    try:
        from ecgedge.models.specs import get_spec
        return get_spec(manifest["model"]).task
    except Exception:  # a model outside the zoo: decide by its outputs
        kinds = {o.get("kind") for o in manifest["outputs"]}
        return "regression" if kinds == {"regression"} else "binary"


def _progress(enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


# ---------------------------------------------------------------------------------------------- stages
def prepare(cfg: BenchConfig, eval_set: EvalSet | None = None,
            float_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> BenchState:
    """The package (signature checked), the evaluation windows, their int8 inputs and the float references."""
    from ecgedge.hil_tests.devices import parse_device_url
    from ecgedge.targets import get_target

    parse_device_url(cfg.device_url)  # a bad URL fails before any work
    t0, started = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    package = load_package(cfg.model_dir, trust=cfg.trust, allow_unsigned=cfg.allow_unsigned)
    manifest = package.manifest
    try:
        target = get_target(manifest.get("target", ""))
    except EdgeError:
        target = None
    runner, notes = reference_runner(package)
    es = _eval_set(cfg, package, eval_set)
    x_model = Q.model_units(es.x_uv, manifest["input"])
    st = BenchState(cfg=cfg, package=package, outputs=sorted(manifest["outputs"], key=lambda o: o.get("index", 0)),
                    task=_task(manifest), target=target, es=es, q_in=runner.to_int8(x_model),
                    input_qparams=(runner.input_scale, runner.input_zero_point), n_outputs=runner.n_outputs,
                    reference="litert" if notes else "tflm", notes=notes, started=started, t_start=t0)
    _float_references(st, x_model, float_fn, (len(es), runner.n_outputs))
    return st


def _eval_set(cfg: BenchConfig, package: Package, eval_set: EvalSet | None) -> EvalSet:
    manifest = package.manifest
    if eval_set is not None:
        return eval_set if cfg.windows is None else eval_set.take(cfg.windows)
    if cfg.data_dir is None:
        return synthetic_eval_set(manifest, cfg.windows or DEFAULT_WINDOWS, cfg.seed)
    # every labelled record of the folder unless --records names some (a package validated on real records
    # lists its own in validation_records.txt: pass that file to use exactly those)
    return data_eval_set(cfg.data_dir, manifest, cfg.windows, cfg.seed, cfg.labels_file, cfg.records)


def _float_references(st: BenchState, x_model: np.ndarray, float_fn, shape: tuple[int, int]) -> None:
    """The float model's outputs (caller-supplied, or the zoo's torch model) and the package's model.onnx."""
    cfg, package, notes = st.cfg, st.package, st.notes
    if float_fn is not None:
        st.float_raw, st.float_info = np.asarray(float_fn(x_model), np.float64), {"source": "caller-supplied"}
    elif cfg.float_reference:
        try:
            st.float_raw, st.float_info = float_reference(package.manifest["model"], x_model,
                                                          checkpoint=cfg.checkpoint, manifest=package.manifest)
        except EdgeError as e:
            notes.append(f"no float reference: {e}")
    if package.has("model.onnx"):
        try:
            st.pruned_raw = onnx_float_reference(package.file("model.onnx"), x_model)
        except EdgeError as e:
            notes.append(f"package float ONNX not run: {e}")
        if st.pruned_raw is not None and st.pruned_raw.shape != shape:
            notes.append(f"package float ONNX gives shape {st.pruned_raw.shape}: not compared")
            st.pruned_raw = None
    if st.float_raw is not None and st.float_raw.shape != shape:
        notes.append(f"float reference gives {st.float_raw.shape[1]} outputs, the package {shape[1]}: "
                     "float comparison skipped")
        st.float_raw = None
    if st.float_raw is None and st.pruned_raw is not None and package.manifest.get("source"):
        # a user's own model (not in the zoo): its float form is the package's model.onnx
        st.float_raw = st.pruned_raw
        st.float_info = {"source": "the package's float model.onnx (a model outside the zoo)"}


def run(st: BenchState) -> BenchState:
    """The windows through the device(s), as shards (one in this process unless workers/ray say otherwise),
    merged in window order: golden INT8 outputs, device outputs, counters, the device's INFO."""
    from ecgedge.hil_tests import farm

    cfg = st.cfg
    integrity = (np.stack([st.es.x_uv[j % len(st.es)] for j in range(FEED_WINDOWS)])
                 if cfg.integrity and len(st.es) else None)
    with _progress(cfg.progress) as prog:
        st.run = farm.run_sharded(farm.FarmPlan(
            package=st.package, model_dir=str(cfg.model_dir), device_url=cfg.device_url, q_in=st.q_in,
            ids=st.es.ids, groups=st.es.groups, timeout_s=cfg.timeout_s, integrity_uv=integrity,
            elf=cfg.elf, defines=cfg.defines, on_window=cfg.on_window, workers=cfg.workers, ray=cfg.ray,
            shards=cfg.shards, max_retries=cfg.max_retries, reference=st.reference), n_outputs=st.n_outputs, prog=prog)
    st.notes += st.run.notes
    return st


def score(st: BenchState) -> BenchState:
    """The device's answers against the INT8 reference (bit for bit), the float references and the truth."""
    r, cfg = st.run, st.cfg
    m, st.contract_problems, notes = S.score_device(r, st.manifest, st.outputs, st.es, st.package.model_sha256,
                                                     st.input_qparams)
    st.notes += notes
    m.update(S.score_accuracy(r, st.task, st.outputs, st.es, st.float_raw, st.pruned_raw))
    lat_m, st.latencies = S.score_latency(r, st.target, cfg.cpi, cfg.device_url)
    m.update(lat_m)
    m.update(S.score_profile(r.profile))
    st.metrics = m
    return st


def gate(st: BenchState) -> BenchState:
    """The metrics against gates.toml (or the caller's gates file)."""
    st.gates = evaluate_gates(load_gates(st.cfg.gates_file), st.metrics)
    return st


def report(st: BenchState) -> BenchOutcome:
    """hil_report.json, JUnit XML, windows.json and report.html in the report folder."""
    from ecgedge.hil_tests.report import write_reports

    cfg, r = st.cfg, st.run
    report_dir = Path(cfg.report_dir) if cfg.report_dir else default_report_dir(cfg.model_dir, cfg.device_url)
    st.report = rep = _report_dict(st)
    done = r.done
    es_done = st.es.take(done)
    fl = st.float_raw[:done] if st.float_raw is not None else None
    per_window = {"ids": st.es.ids[:done], "device_q": r.dev_q.tolist(), "reference_q": r.ref_q.tolist(),
                  "float_raw": fl.tolist() if fl is not None else None,
                  "k_true": es_done.k_true.tolist() if es_done.k_true is not None else None,
                  "latency_ms": st.latencies, "round_trip_ms": [v * 1e3 for v in r.round_trips],
                  "labels": {k: v.tolist() for k, v in es_done.binary_labels.items()}}
    write_reports(report_dir, rep, st.gates, per_window, st.outputs, r.error)
    return BenchOutcome(report=rep, gates=st.gates, report_dir=report_dir, error=r.error)


def _report_dict(st: BenchState) -> dict:
    cfg, r, package, manifest, info, es = st.cfg, st.run, st.package, st.manifest, st.run.info, st.es
    fw = r.failed_window
    return {
        "device": cfg.device_url,
        "device_name": info.name if info else None,
        "emulated": r.emulated,
        "model": manifest.get("model"),
        "target": manifest.get("target"),
        "model_dir": str(cfg.model_dir),
        "model_sha256": package.model_sha256,
        "device_model_sha256": info.model_sha256 if info else None,
        "demo": bool(manifest.get("demo", False)),
        "label": getattr(labels.from_manifest(manifest), "kind", None), "notice": labels.notice_of(manifest),
        "signed": package.signed,
        "unsigned": not package.signed,
        "signature": (f"verified with {cfg.trust}" if package.signed else
                      "UNSIGNED (" + ("--allow-unsigned" if cfg.trust else "no --trust key given") + ")"),
        "windows_source": es.source,
        "seed": cfg.seed,
        **st.metrics,
        "float_reference": st.float_info or None,
        "int8_reference": r.int8_reference,
        "input_contract_problems": st.contract_problems,
        "sample_integrity": r.integrity.to_dict() if r.integrity is not None else None,
        "footprint": r.footprint.__dict__ if r.footprint else None,
        "gates": [_gate_entry(g) for g in st.gates],
        "gates_failed": [g.name for g in failed(st.gates)],
        "gates_passed": r.error is None and not failed(st.gates),
        "partial": r.error is not None,
        "error": r.error,
        "device_restarts": len(r.restarts),
        "restarts": r.restarts,
        "failed_window": fw if r.error else None,
        "failed_window_id": es.ids[fw] if r.error and fw is not None and fw < len(es) else None,
        "notes": st.notes,
        # run-dependent (timings, where and how the shards ran): the only keys that differ between runs
        "seconds": time.perf_counter() - st.t_start,
        "started": st.started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "workers": r.workers,
        "executor": r.executor,
        "shards": r.shards,
        "retries": r.retries,
    }


def _gate_entry(g: GateResult) -> dict:
    """A gate as hil_report.json lists it. A gate over a timing (latency_ms_p99) names the metric its value
    is in rather than copying it, so that only RUN_DEPENDENT_KEYS differ between runs on the same inputs."""
    d = g.to_dict()
    if g.metric in RUN_DEPENDENT_KEYS and g.value is not None:
        word = "pass" if g.passed else "FAIL"
        d.update(value=None, value_in=g.metric,
                 message=f"{word}: {g.metric} {g.op} {g.threshold} (value: see {g.metric})")
    return d


def run_bench(cfg: BenchConfig, eval_set: EvalSet | None = None,
              float_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> BenchOutcome:
    """Run the whole bench; always writes a report (PARTIAL when the device failed mid-run).

    `eval_set` / `float_fn` (raw float outputs from model-unit windows) let a caller supply its own windows
    and float model (tests with models outside the zoo)."""
    return report(gate(score(run(prepare(cfg, eval_set, float_fn)))))


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, default=json_default))


__all__ = ["BenchConfig", "BenchOutcome", "BenchState", "RUN_DEPENDENT_KEYS", "prepare", "run", "score", "gate",
           "report", "run_bench", "default_report_dir", "write_json"]

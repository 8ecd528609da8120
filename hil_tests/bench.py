"""The HIL bench: windows -> device (LOAD_INPUT + INFER per window, MLPerf-Tiny style) -> compare with the
INT8 reference (tflite-micro, bit for bit) and the float reference (torch) -> metrics -> gates -> reports.

A device that stops answering ends the run with a clear error and a PARTIAL report naming the window.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

import ecgedge
from ecgedge import labels
from ecgedge.contract import metrics as M
from ecgedge.contract import quantization as Q
from ecgedge.contract.package import json_default, load_package
from ecgedge.contract.runners import Int8Runner, open_int8_runner
from ecgedge.errors import EdgeError
from ecgedge.firmware_bridge.protocol import CounterKind
from ecgedge.hil_tests.devices import DEVICE_ERRORS, BenchDevice, DeviceInfo, open_device
from ecgedge.hil_tests.evalset import EvalSet, data_eval_set, synthetic_eval_set
from ecgedge.hil_tests.gates import GateResult, evaluate_gates, failed, load_gates
from ecgedge.hil_tests.reference import float_reference, onnx_float_reference

DEFAULT_WINDOWS = 200
# QEMU counts instructions, not cycles: latency = instructions x CPI / clock. A Cortex-M7 dual-issues,
# so 1.0 cycle per instruction is a middle-of-the-road assumption (stated in every report).
DEFAULT_CPI = 1.0
FEED_WINDOWS = 2  # host-fed sample-integrity check: windows of samples sent to the device, the last checked


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


def contract_check(info: DeviceInfo, manifest: dict, runner: Int8Runner) -> tuple[bool, list[str]]:
    """The device's INFO against the package manifest: rate, window, input quantisation, outputs."""
    inp = manifest["input"]
    problems = []
    if int(info.sample_rate_hz) != int(inp["sampling_rate_hz"]):
        problems.append(f"sampling rate {info.sample_rate_hz} Hz, manifest {inp['sampling_rate_hz']} Hz")
    if int(info.window_len) != int(inp["window_samples"]):
        problems.append(f"window {info.window_len} samples, manifest {inp['window_samples']}")
    want_scale = float(inp.get("tflite_scale", runner.input_scale))
    if not np.isclose(float(info.input_scale), want_scale, rtol=1e-6, atol=0):
        problems.append(f"input scale {info.input_scale:.9g}, manifest {want_scale:.9g}")
    want_zp = int(inp.get("tflite_zero_point", runner.input_zero_point))
    if int(info.input_zero_point) != want_zp:
        problems.append(f"input zero point {info.input_zero_point}, manifest {want_zp}")
    return not problems, problems


def output_permutation(device_q: np.ndarray, ref_q: np.ndarray) -> tuple[tuple[int, ...], float]:
    """The output permutation under which the device matches the reference most often (identity first)."""
    n = ref_q.shape[1]
    perms = itertools.permutations(range(n)) if n <= 6 else (
        [tuple(range(n))] + [tuple(_swap(n, a, b)) for a in range(n) for b in range(a + 1, n)])
    best, best_frac = tuple(range(n)), -1.0
    for p in perms:
        frac = float(np.mean(np.all(device_q[:, list(p)] == ref_q, axis=1)))
        if frac > best_frac:
            best, best_frac = tuple(p), frac
    return best, best_frac


def _swap(n, a, b):
    p = list(range(n))
    p[a], p[b] = p[b], p[a]
    return p


def latency_ms(counter_kind: int, counter: int, infer_us: int, clock_hz: float | None, cpi: float) -> float | None:
    if counter_kind == CounterKind.INSTRUCTIONS and clock_hz:
        return counter * cpi / clock_hz * 1e3
    if counter_kind == CounterKind.CYCLES and clock_hz:
        return counter / clock_hz * 1e3
    if counter_kind == CounterKind.MICROSECONDS:
        return counter / 1e3
    return infer_us / 1e3 if infer_us else None


def task_metrics(task: str, outputs: list[dict], raw: np.ndarray, es: EvalSet) -> dict:
    """Metrics of the model's task on raw outputs (logits / regression values)."""
    if task == "multiclass" and es.class_true is not None:
        return M.classification_metrics(M.softmax(raw, axis=1), es.class_true, es.classes, groups=es.groups)
    out: dict = {"windows": int(len(es))}
    for j, o in enumerate(outputs):
        if o.get("kind") == "logit" and o["name"] in es.binary_labels:
            out[f"auroc_{o['name']}"] = M.auroc(es.binary_labels[o["name"]], raw[:, j])
        if o.get("kind") == "regression" and es.k_true is not None and o["name"].startswith("k_"):
            ba = M.bland_altman(raw[:, j], es.k_true)
            out[f"{o['name']}_bias"] = ba["bias"]
            out[f"{o['name']}_mae"] = ba["mae"]
    return out


def primary_output(outputs: list[dict], es: EvalSet) -> int | None:
    for j, o in enumerate(outputs):
        if o.get("kind") == "logit" and o["name"] in es.binary_labels:
            return j
    return None


def decisions(task: str, outputs: list[dict], raw: np.ndarray, primary: int | None) -> np.ndarray | None:
    """Per window, the decision the agreement compares (the contract's): the class of a multiclass model,
    else the primary logit output's decision at its threshold."""
    if task == "multiclass":
        return Q.decisions(outputs, raw, task).argmax(axis=1)
    if primary is None:
        return None
    return Q.decisions(outputs, raw, task)[:, Q.logit_columns(outputs).index(primary)]


def _progress(enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


def run_bench(cfg: BenchConfig, eval_set: EvalSet | None = None,
              float_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> BenchOutcome:
    """Run the whole bench; always writes a report (PARTIAL when the device failed mid-run).

    `eval_set` / `float_fn` (raw float outputs from model-unit windows) let a caller supply its own windows
    and float model (tests with models outside the zoo)."""
    from ecgedge.targets import get_target
    from ecgedge.hil_tests.report import write_reports

    t_start = time.perf_counter()
    package = load_package(cfg.model_dir, trust=cfg.trust, allow_unsigned=cfg.allow_unsigned)
    manifest = package.manifest
    outputs = sorted(manifest["outputs"], key=lambda o: o.get("index", 0))
    task = _task(manifest)
    gates = load_gates(cfg.gates_file)
    report_dir = Path(cfg.report_dir) if cfg.report_dir else default_report_dir(cfg.model_dir, cfg.device_url)
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        target = get_target(manifest.get("target", ""))
    except EdgeError:
        target = None
    notes: list[str] = []
    inp = manifest["input"]
    try:  # the reference needs it anyway: import it rather than guess from a module spec
        import tflite_micro  # noqa: F401
        have_tflm = True
    except ImportError:
        have_tflm = False
    if have_tflm:
        runner = open_int8_runner(package.file("model_int8.tflite"), "tflm")
    else:  # a runtime-only install has LiteRT, not tflite-micro: say what the reference is
        runner = open_int8_runner(package.file("model_int8.tflite"), "litert")
        notes.append("INT8 reference: LiteRT, because tflite-micro is not installed (runtime-only install); "
                     "LiteRT may differ from tflite-micro by 1 LSB on some windows (TF issue 66358)")

    with _progress(cfg.progress) as prog:
        # 1. windows
        if eval_set is None:
            if cfg.data_dir is not None:
                # every labelled record of the folder unless --records names some (a package validated on
                # real records lists its own in validation_records.txt: pass that file to use exactly those)
                es = data_eval_set(cfg.data_dir, manifest, cfg.windows, cfg.seed, cfg.labels_file, cfg.records)
            else:
                es = synthetic_eval_set(manifest, cfg.windows or DEFAULT_WINDOWS, cfg.seed)
        else:
            es = eval_set if cfg.windows is None else eval_set.take(cfg.windows)
        n = len(es)
        x_model = Q.model_units(es.x_uv, inp)
        q_in = runner.to_int8(x_model)

        # 2. references
        t_ref = prog.add_task(f"INT8 reference ({runner.describe})", total=n)
        ref_q = runner.run(q_in, progress=lambda: prog.advance(t_ref))
        float_raw, float_info = None, {}
        if float_fn is not None:
            float_raw, float_info = np.asarray(float_fn(x_model), np.float64), {"source": "caller-supplied"}
        elif cfg.float_reference:
            try:
                float_raw, float_info = float_reference(manifest["model"], x_model, checkpoint=cfg.checkpoint)
            except EdgeError as e:
                notes.append(f"no float reference: {e}")
        pruned_raw = None
        if package.has("model.onnx"):
            try:
                pruned_raw = onnx_float_reference(package.file("model.onnx"), x_model)
            except EdgeError as e:
                notes.append(f"package float ONNX not run: {e}")
            if pruned_raw is not None and pruned_raw.shape != ref_q.shape:
                notes.append(f"package float ONNX gives shape {pruned_raw.shape}: not compared")
                pruned_raw = None
        if float_raw is not None and float_raw.shape != ref_q.shape:
            notes.append(f"float reference gives {float_raw.shape[1]} outputs, the package {ref_q.shape[1]}: "
                         "float comparison skipped")
            float_raw = None
        if float_raw is None and pruned_raw is not None and manifest.get("source"):
            # a user's own model (not in the zoo): its float form is the package's model.onnx
            float_raw = pruned_raw
            float_info = {"source": "the package's float model.onnx (a model outside the zoo)"}

        # 3. device
        device = open_device(cfg.device_url, package, timeout=cfg.timeout_s, elf=cfg.elf, defines=cfg.defines)
        dev_q = np.zeros_like(ref_q)
        counters, kinds, infer_us, round_trips = [], [], [], []
        error, failed_window, info, integrity = None, None, None, None
        restarts: list[dict] = []
        done = 0
        t_dev = prog.add_task(f"device {cfg.device_url}", total=n)
        try:
            info = device.open()
            if not info.has_model:
                raise _Refused(f"device {cfg.device_url} refused: it reports no valid model (its model blob "
                               "failed the device's SHA-256 check, INFO flag bit1 clear)")
            if info.model_sha256 != package.model_sha256:
                raise _Refused(f"device {cfg.device_url} refused: it runs model SHA-256 {info.model_sha256}, "
                               f"the package {cfg.model_dir} was validated with {package.model_sha256}")
            if cfg.integrity:
                t_int = prog.add_task("sample integrity (START/SAMPLES/WINDOW_INFER)", total=1)
                win = int(inp["window_samples"])
                fed_uv = np.concatenate([es.x_uv[j % n] for j in range(FEED_WINDOWS)])
                feed = np.clip(np.round(fed_uv / max(info.uv_per_lsb, 1e-9)), -32768, 32767).astype(np.int16)
                integrity = device.sample_integrity(
                    lambda counts, start, inf, filtered: device_window_input(counts, start, inf, inp, filtered),
                    win + win // 5, feed_counts=feed)
                prog.advance(t_int)
            i, hooked = 0, -1
            while i < n:
                if cfg.on_window is not None and hooked < i:
                    hooked = i
                    cfg.on_window(i, device)
                failed_window = i
                try:
                    r = device.infer(q_in[i])
                except DEVICE_ERRORS as e:
                    # a device the host runs (QEMU) that died or hung is restarted and the run resumes at the
                    # window it lost; a window that kills it again and again ends the run (partial report)
                    if not device.restartable or sum(x["window"] == i for x in restarts) >= MAX_RESTARTS_PER_WINDOW:
                        raise
                    restarts.append(_restart(device, package, cfg.device_url, i, es.ids[i], e))
                    notes.append(f"device restarted at window {i} ({es.ids[i]}) after: {restarts[-1]['error']}")
                    continue
                if r.outputs.shape[0] != ref_q.shape[1]:
                    raise _OutputCount(r.outputs.shape[0])
                dev_q[i] = r.outputs
                counters.append(r.counter)
                kinds.append(r.counter_kind)
                infer_us.append(r.infer_us)
                round_trips.append(r.round_trip_s)
                i += 1
                done = i
                failed_window = None
                prog.advance(t_dev)
        except _Refused as e:
            error = str(e)
        except _OutputCount as e:
            error = (f"device returned {e.n} outputs, the manifest lists {ref_q.shape[1]} "
                     f"(window {failed_window})")
        except DEVICE_ERRORS as e:
            error = (f"device {cfg.device_url} failed at window {failed_window} of {n} "
                     f"({es.ids[failed_window] if failed_window is not None and failed_window < n else 'setup'}): {e}"
                     if failed_window is not None else f"device {cfg.device_url} failed during setup: {e}")
        finally:
            device.close()
        profile = None
        if error is None and getattr(device, "elf", None) is not None and n:
            t_prof = prog.add_task("per-layer instructions (QEMU + plugin)", total=1)
            try:
                from ecgedge.hil_tests.devices import qemu_layer_profile
                profile = qemu_layer_profile(device.elf, q_in[0], target.qemu_machine if target else "mps2-an500",
                                             timeout=max(cfg.timeout_s, 30.0))
            except (EdgeError, OSError) as e:
                notes.append(f"no per-layer profile: {e}")
            prog.advance(t_prof)

    # 4. metrics over the windows the device answered
    m: dict = {}
    m["windows"] = done
    m["windows_requested"] = n
    m["windows_completed_fraction"] = done / n if n else 0.0
    m["model_hash_match"] = (info.has_model and info.model_sha256 == package.model_sha256) if info else None
    contract_ok, contract_problems = (contract_check(info, manifest, runner) if info else (None, []))
    m["input_contract_match"] = contract_ok
    m["output_count_match"] = (info.n_outputs == len(outputs)) if info else None
    if error and "outputs, the manifest lists" in error:
        m["output_count_match"] = False
    if info is not None and m["model_hash_match"] is False:
        notes.append(f"REFUSED: device model SHA-256 {info.model_sha256} differs from the package's "
                     f"{package.model_sha256}")
    d_q, r_q = dev_q[:done], ref_q[:done]
    exact = M.bit_exact(d_q, r_q) if done else np.zeros(0, bool)
    m["bit_exact_fraction"] = float(exact.mean()) if done else None
    m["bit_exact_windows"] = int(exact.sum())
    m["max_abs_delta_int8_lsb"] = int(np.max(np.abs(d_q.astype(np.int16) - r_q.astype(np.int16)))) if done else None
    m["first_mismatch_window"] = (es.ids[int(np.argmin(exact))] if done and not exact.all() else None)
    if done:
        perm, frac = output_permutation(d_q, r_q)
        m["output_permutation"] = list(perm)
        m["output_order_ok"] = not (perm != tuple(range(len(perm))) and frac > float(exact.mean()))
    else:
        m["output_order_ok"] = None
    m["sample_integrity_ok"] = integrity.ok if integrity is not None else None

    dev_raw = Q.dequantize_outputs(d_q, outputs)
    ref_raw = Q.dequantize_outputs(r_q, outputs)
    es_done = es.take(done)
    primary = primary_output(outputs, es_done)
    m["primary_output"] = outputs[primary]["name"] if primary is not None else None
    m["task"] = task
    fl = float_raw[:done] if float_raw is not None else None
    if fl is not None and done:
        m["max_abs_delta_float"] = float(np.max(np.abs(dev_raw - fl)))
        prob_cols = [j for j, o in enumerate(outputs) if o.get("kind") == "logit"]
        if prob_cols:
            pd = Q.probabilities(outputs, dev_raw, task) - Q.probabilities(outputs, fl, task)
            m["max_abs_delta_prob_float"] = float(np.max(np.abs(pd)))
    else:
        m["max_abs_delta_float"] = None

    def _auroc(raw):
        if raw is None or not done:
            return None
        if task == "multiclass" and es_done.class_true is not None:
            vals = [M.auroc(es_done.class_true == c, M.softmax(raw, 1)[:, c]) for c in range(raw.shape[1])]
            vals = [v for v in vals if v is not None]
            return float(np.mean(vals)) if vals else None
        if primary is None:
            return None
        return M.auroc(es_done.binary_labels[outputs[primary]["name"]], raw[:, primary])

    m["auroc_float"] = _auroc(fl)
    m["auroc_device"] = _auroc(dev_raw)
    m["auroc_int8_reference"] = _auroc(ref_raw)
    dec_dev = decisions(task, outputs, dev_raw, primary) if done else None
    dec_fl = decisions(task, outputs, fl, primary) if fl is not None and done else None
    m["agreement_float_reference"] = (float(np.mean(dec_dev == dec_fl))
                                      if dec_dev is not None and dec_fl is not None else None)
    # `agreement`: against the float model the INT8 model was quantised from (the package's model.onnx),
    # else the float reference; pruning's own effect shows in auroc_float vs auroc_device.
    pr = pruned_raw[:done] if pruned_raw is not None else None
    dec_pr = decisions(task, outputs, pr, primary) if pr is not None and done else None
    m["agreement_package_float"] = (float(np.mean(dec_dev == dec_pr))
                                    if dec_dev is not None and dec_pr is not None else None)
    if m["agreement_package_float"] is not None:
        m["agreement"], m["agreement_basis"] = m["agreement_package_float"], "package float model (model.onnx)"
    else:
        m["agreement"], m["agreement_basis"] = m["agreement_float_reference"], "float reference"
    m["auroc_package_float"] = _auroc(pr)
    if pr is not None and done:
        m["max_abs_delta_package_float"] = float(np.max(np.abs(dev_raw - pr)))
    dec_ref = decisions(task, outputs, ref_raw, primary) if done else None
    m["agreement_int8_reference"] = (float(np.mean(dec_dev == dec_ref))
                                     if dec_dev is not None and dec_ref is not None else None)

    # K+ estimate: Bland-Altman of device (and float) against the true K+
    kcol = next((j for j, o in enumerate(outputs) if o.get("kind") == "regression" and o["name"].startswith("k_")),
                None)
    ba_dev = ba_float = None
    if kcol is not None and es_done.k_true is not None and done > 1:
        ba_dev = M.bland_altman(dev_raw[:, kcol], es_done.k_true)
        if fl is not None:
            ba_float = M.bland_altman(fl[:, kcol], es_done.k_true)
    m["k_bland_altman_device"] = ba_dev
    m["k_bland_altman_float"] = ba_float

    if done and (task == "multiclass" or es_done.binary_labels or es_done.k_true is not None):
        m["metrics_device"] = task_metrics(task, outputs, dev_raw, es_done)
        m["metrics_float"] = task_metrics(task, outputs, fl, es_done) if fl is not None else None
        m["metrics_int8_reference"] = task_metrics(task, outputs, ref_raw, es_done)
    # flat copies for the gates (a multi-class task's record-level score, e.g. af_lead1's Challenge F1)
    m["f1_challenge_device"] = (m.get("metrics_device") or {}).get("f1_challenge")
    m["f1_challenge_float"] = (m.get("metrics_float") or {}).get("f1_challenge")

    # latency
    clock = target.clock_hz if target is not None else None
    lat = [latency_ms(k, c, u, clock, cfg.cpi) for k, c, u in zip(kinds, counters, infer_us)]
    lat = [v for v in lat if v is not None]
    pc = M.percentiles(lat)
    m["latency_ms_p50"], m["latency_ms_p95"], m["latency_ms_p99"] = pc["p50"], pc["p95"], pc["p99"]
    kind = kinds[0] if kinds else None
    m["counter_kind"] = CounterKind(kind).name.lower() if kind is not None and kind in {int(k) for k in CounterKind} else None
    m["instructions_per_inference"] = (int(np.median(counters)) if kind == CounterKind.INSTRUCTIONS and counters
                                       else None)
    if kind == CounterKind.INSTRUCTIONS:
        basis = (f"estimate (emulated): instructions x {cfg.cpi:g} CPI assumed / "
                 f"{clock / 1e6:g} MHz ({target.name})")
    elif kind == CounterKind.CYCLES:
        basis = f"measured CPU cycles / {clock / 1e6:g} MHz"
    elif kind == CounterKind.MICROSECONDS:
        basis = "host wall time of one inference" if cfg.device_url.startswith("host") else "device clock"
    else:
        basis = "no on-device counter"
    if getattr(device, "emulated", False) and kind != CounterKind.INSTRUCTIONS and lat:
        basis = f"estimate (emulated): {basis}"
    m["latency_basis"] = basis
    m["cpi_assumption"] = cfg.cpi if kind == CounterKind.INSTRUCTIONS else None
    rt = M.percentiles([v * 1e3 for v in round_trips], (50, 95))
    m["round_trip_ms_p50"], m["round_trip_ms_p95"] = rt["p50"], rt["p95"]
    m["latency_budget_ms"] = target.latency_budget_ms if target is not None else None
    fp = device.footprint
    m["flash_bytes"] = fp.flash_bytes if fp else None
    m["ram_bytes"] = fp.ram_bytes if fp else None
    m["target_flash_bytes"] = target.flash_bytes if target is not None and fp else None
    m["target_ram_bytes"] = target.ram_bytes if target is not None and fp else None

    if profile is not None:
        m["layer_profile"] = profile["layers"]
        m["layer_profile_total_instructions"] = profile["total"]
        m["layer_profile_source"] = "QEMU TCG instruction-count plugin, one inference (window 0)"
        macs = sum(int(l["macs"] or 0) for l in profile["layers"])
        m["macs_per_inference"] = macs or None
        m["instructions_per_mac"] = profile["total"] / macs if macs else None
    results = evaluate_gates(gates, m)
    seconds = time.perf_counter() - t_start
    report = {
        "device": cfg.device_url,
        "device_name": info.name if info else None,
        "emulated": bool(getattr(device, "emulated", False)),
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
        **m,
        "float_reference": float_info or None,
        "int8_reference": runner.describe,
        "input_contract_problems": contract_problems,
        "sample_integrity": integrity.to_dict() if integrity is not None else None,
        "footprint": fp.__dict__ if fp else None,
        "gates": [r.to_dict() for r in results],
        "gates_failed": [r.name for r in failed(results)],
        "gates_passed": error is None and not failed(results),
        "partial": error is not None,
        "error": error,
        "device_restarts": len(restarts),
        "restarts": restarts,
        "failed_window": failed_window if error else None,
        "failed_window_id": (es.ids[failed_window] if error and failed_window is not None and failed_window < n
                             else None),
        "notes": notes,
        "seconds": seconds,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    per_window = {"ids": es.ids[:done], "device_q": d_q.tolist(), "reference_q": r_q.tolist(),
                  "float_raw": fl.tolist() if fl is not None else None,
                  "k_true": es_done.k_true.tolist() if es_done.k_true is not None else None,
                  "latency_ms": lat, "round_trip_ms": [v * 1e3 for v in round_trips],
                  "labels": {k: v.tolist() for k, v in es_done.binary_labels.items()}}
    write_reports(report_dir, report, results, per_window, outputs, error)
    return BenchOutcome(report=report, gates=results, report_dir=report_dir, error=error)


class _Refused(Exception):
    pass


MAX_RESTARTS_PER_WINDOW = 2


def _restart(device: BenchDevice, package: Package, url: str, window: int, window_id: str, why: Exception) -> dict:
    """Restart a dead or hung device and check that the new boot runs the same model; the record goes into the
    report (`restarts`)."""
    t0 = time.perf_counter()
    info = device.restart()
    if not info.has_model or info.model_sha256 != package.model_sha256:
        raise _Refused(f"device {url} refused after its restart at window {window}: it runs model SHA-256 "
                       f"{info.model_sha256} (valid: {info.has_model}), the package has {package.model_sha256}")
    return {"window": int(window), "window_id": window_id, "error": f"{type(why).__name__}: {why}",
            "restart_s": round(time.perf_counter() - t0, 3),
            "at_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class _OutputCount(Exception):
    def __init__(self, n):
        self.n = n


def device_window_input(counts: np.ndarray, start: int, info: DeviceInfo, inp: dict,
                        filtered: bool = False) -> np.ndarray:
    """The INT8 input a device must build from its own samples (ADC counts since START): microvolts =
    counts x uv_per_lsb, (on a device that filters: the contract's causal filters from the first sample),
    model units = uV / scale_uv, quantised with the package's input scale."""
    from ecgedge.signals import StreamingFilter

    uv = np.asarray(counts, np.float64) * float(info.uv_per_lsb)
    if filtered and inp.get("preprocessing"):
        uv = StreamingFilter(float(inp["sampling_rate_hz"]), inp["preprocessing"]).process(uv)
    win = uv[start:start + int(inp["window_samples"])]
    return Q.window_int8(win, inp)


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, default=json_default))

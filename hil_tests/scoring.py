"""The bench's score stage: the device's answers (a RunResult) against the INT8 reference (bit for bit), the
float references and the labels -> the metrics of hil_report.json. Pure numpy over what prepare and run left
in the state; a test can call any of these alone."""

from __future__ import annotations

import itertools

import numpy as np

from ecgedge.contract import metrics as M
from ecgedge.contract import quantization as Q
from ecgedge.firmware_bridge.protocol import CounterKind
from ecgedge.hil_tests.devices import DeviceInfo
from ecgedge.hil_tests.evalset import EvalSet


def contract_check(info: DeviceInfo, manifest: dict, input_scale: float, input_zero_point: int
                   ) -> tuple[bool, list[str]]:
    """The device's INFO against the package manifest: rate, window, input quantisation, outputs.
    `input_scale` / `input_zero_point`: the INT8 model's own, used where the manifest names none."""
    inp = manifest["input"]
    problems = []
    if int(info.sample_rate_hz) != int(inp["sampling_rate_hz"]):
        problems.append(f"sampling rate {info.sample_rate_hz} Hz, manifest {inp['sampling_rate_hz']} Hz")
    if int(info.window_len) != int(inp["window_samples"]):
        problems.append(f"window {info.window_len} samples, manifest {inp['window_samples']}")
    want_scale = float(inp.get("tflite_scale", input_scale))
    if not np.isclose(float(info.input_scale), want_scale, rtol=1e-6, atol=0):
        problems.append(f"input scale {info.input_scale:.9g}, manifest {want_scale:.9g}")
    want_zp = int(inp.get("tflite_zero_point", input_zero_point))
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


def score_device(run, manifest: dict, outputs: list[dict], es: EvalSet, model_sha256: str,
                 input_qparams: tuple[float, int]) -> tuple[dict, list[str], list[str]]:
    """(metrics, input-contract problems, notes) of the device itself: contract, model hash, bit-exactness,
    output order, sample integrity. Every shard's device is checked (a farm may mix boards)."""
    m: dict = {}
    done, n, infos = run.done, len(es), [i for i in run.infos if i is not None]
    m["windows"] = done
    m["windows_requested"] = n
    m["windows_completed_fraction"] = done / n if n else 0.0
    m["model_hash_match"] = all(i.has_model and i.model_sha256 == model_sha256 for i in infos) if infos else None
    problems: list[str] = []
    for i in infos:
        problems += [p for p in contract_check(i, manifest, *input_qparams)[1] if p not in problems]
    m["input_contract_match"] = not problems if infos else None
    m["output_count_match"] = all(i.n_outputs == len(outputs) for i in infos) if infos else None
    if run.error and "outputs, the manifest lists" in run.error:
        m["output_count_match"] = False
    wrong = [i for i in infos if not (i.has_model and i.model_sha256 == model_sha256)]
    notes = [f"REFUSED: device model SHA-256 {i.model_sha256} differs from the package's {model_sha256}"
             for i in wrong[:1]]
    d_q, r_q = run.dev_q, run.ref_q
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
    m["sample_integrity_ok"] = run.integrity.ok if run.integrity is not None else None
    return m, problems, notes


class _Scorer:
    """Raw outputs of one comparison set (device, INT8 reference, float references) over the answered windows."""

    def __init__(self, task: str, outputs: list[dict], es_done: EvalSet, done: int):
        self.task, self.outputs, self.es, self.done = task, outputs, es_done, done
        self.primary = primary_output(outputs, es_done)

    def area(self, raw):
        """AUROC of raw outputs: the primary output's, or the mean one-vs-rest AUROC of a multi-class model."""
        es, task = self.es, self.task
        if raw is None or not self.done:
            return None
        if task == "multiclass" and es.class_true is not None:
            vals = [M.auroc(es.class_true == c, M.softmax(raw, 1)[:, c]) for c in range(raw.shape[1])]
            vals = [v for v in vals if v is not None]
            return float(np.mean(vals)) if vals else None
        if self.primary is None:
            return None
        return M.auroc(es.binary_labels[self.outputs[self.primary]["name"]], raw[:, self.primary])

    def decisions(self, raw):
        return decisions(self.task, self.outputs, raw, self.primary) if raw is not None and self.done else None

    @staticmethod
    def agreement(a, b):
        return float(np.mean(a == b)) if a is not None and b is not None else None


def score_accuracy(run, task: str, outputs: list[dict], es: EvalSet, float_raw: np.ndarray | None,
                   pruned_raw: np.ndarray | None) -> dict:
    """Device vs float references vs truth: AUROC, decision agreement, K+ Bland-Altman, task metrics."""
    done = run.done
    dev_raw, ref_raw = Q.dequantize_outputs(run.dev_q, outputs), Q.dequantize_outputs(run.ref_q, outputs)
    sc = _Scorer(task, outputs, es.take(done), done)
    fl = float_raw[:done] if float_raw is not None else None
    pr = pruned_raw[:done] if pruned_raw is not None else None
    m: dict = {"primary_output": outputs[sc.primary]["name"] if sc.primary is not None else None, "task": task}
    if fl is not None and done:
        m["max_abs_delta_float"] = float(np.max(np.abs(dev_raw - fl)))
        if [j for j, o in enumerate(outputs) if o.get("kind") == "logit"]:
            pd = Q.probabilities(outputs, dev_raw, task) - Q.probabilities(outputs, fl, task)
            m["max_abs_delta_prob_float"] = float(np.max(np.abs(pd)))
    else:
        m["max_abs_delta_float"] = None
    m["auroc_float"], m["auroc_device"], m["auroc_int8_reference"] = map(sc.area, (fl, dev_raw, ref_raw))
    dec_dev = sc.decisions(dev_raw)
    m["agreement_float_reference"] = sc.agreement(dec_dev, sc.decisions(fl))
    # `agreement`: against the float model the INT8 model was quantised from (the package's model.onnx),
    # else the float reference; pruning's own effect shows in auroc_float vs auroc_device.
    m["agreement_package_float"] = sc.agreement(dec_dev, sc.decisions(pr))
    if m["agreement_package_float"] is not None:
        m["agreement"], m["agreement_basis"] = m["agreement_package_float"], "package float model (model.onnx)"
    else:
        m["agreement"], m["agreement_basis"] = m["agreement_float_reference"], "float reference"
    m["auroc_package_float"] = sc.area(pr)
    if pr is not None and done:
        m["max_abs_delta_package_float"] = float(np.max(np.abs(dev_raw - pr)))
    m["agreement_int8_reference"] = sc.agreement(dec_dev, sc.decisions(ref_raw))
    m.update(_k_and_task_metrics(sc, dev_raw, ref_raw, fl))
    return m


def _k_and_task_metrics(sc: _Scorer, dev_raw, ref_raw, fl) -> dict:
    """K+ Bland-Altman of device (and float) against the true K+, and the task's own metrics."""
    m: dict = {}
    es, outputs, task, done = sc.es, sc.outputs, sc.task, sc.done
    kcol = next((j for j, o in enumerate(outputs) if o.get("kind") == "regression" and o["name"].startswith("k_")),
                None)
    ba_dev = ba_float = None
    if kcol is not None and es.k_true is not None and done > 1:
        ba_dev = M.bland_altman(dev_raw[:, kcol], es.k_true)
        if fl is not None:
            ba_float = M.bland_altman(fl[:, kcol], es.k_true)
    m["k_bland_altman_device"] = ba_dev
    m["k_bland_altman_float"] = ba_float
    if done and (task == "multiclass" or es.binary_labels or es.k_true is not None):
        m["metrics_device"] = task_metrics(task, outputs, dev_raw, es)
        m["metrics_float"] = task_metrics(task, outputs, fl, es) if fl is not None else None
        m["metrics_int8_reference"] = task_metrics(task, outputs, ref_raw, es)
    # flat copies for the gates (a multi-class task's record-level score, e.g. af_lead1's Challenge F1)
    m["f1_challenge_device"] = (m.get("metrics_device") or {}).get("f1_challenge")
    m["f1_challenge_float"] = (m.get("metrics_float") or {}).get("f1_challenge")
    return m


def score_latency(run, target, cpi: float, device_url: str) -> tuple[dict, list]:
    """(metrics, per-window latencies in ms): latency from the device's counters, round trips, footprint."""
    m: dict = {}
    clock = target.clock_hz if target is not None else None
    lat = [latency_ms(k, c, u, clock, cpi) for k, c, u in zip(run.kinds, run.counters, run.infer_us)]
    lat = [v for v in lat if v is not None]
    pc = M.percentiles(lat)
    m["latency_ms_p50"], m["latency_ms_p95"], m["latency_ms_p99"] = pc["p50"], pc["p95"], pc["p99"]
    kind = run.kinds[0] if run.kinds else None
    known = kind is not None and kind in {int(k) for k in CounterKind}
    m["counter_kind"] = CounterKind(kind).name.lower() if known else None
    m["instructions_per_inference"] = (int(np.median(run.counters)) if kind == CounterKind.INSTRUCTIONS
                                       and run.counters else None)
    if kind == CounterKind.INSTRUCTIONS:
        basis = (f"estimate (emulated): instructions x {cpi:g} CPI assumed / "
                 f"{clock / 1e6:g} MHz ({target.name})")
    elif kind == CounterKind.CYCLES:
        basis = f"measured CPU cycles / {clock / 1e6:g} MHz"
    elif kind == CounterKind.MICROSECONDS:
        basis = "host wall time of one inference" if device_url.startswith("host") else "device clock"
    else:
        basis = "no on-device counter"
    if run.emulated and kind != CounterKind.INSTRUCTIONS and lat:
        basis = f"estimate (emulated): {basis}"
    m["latency_basis"] = basis
    m["cpi_assumption"] = cpi if kind == CounterKind.INSTRUCTIONS else None
    rt = M.percentiles([v * 1e3 for v in run.round_trips], (50, 95))
    m["round_trip_ms_p50"], m["round_trip_ms_p95"] = rt["p50"], rt["p95"]
    m["latency_budget_ms"] = target.latency_budget_ms if target is not None else None
    fp = run.footprint
    m["flash_bytes"] = fp.flash_bytes if fp else None
    m["ram_bytes"] = fp.ram_bytes if fp else None
    m["target_flash_bytes"] = target.flash_bytes if target is not None and fp else None
    m["target_ram_bytes"] = target.ram_bytes if target is not None and fp else None
    return m, lat


def score_profile(profile: dict | None) -> dict:
    """The per-layer instruction profile (QEMU + plugin, one inference) as report metrics."""
    if profile is None:
        return {}
    macs = sum(int(layer["macs"] or 0) for layer in profile["layers"])
    return {"layer_profile": profile["layers"], "layer_profile_total_instructions": profile["total"],
            "layer_profile_source": "QEMU TCG instruction-count plugin, one inference (window 0)",
            "macs_per_inference": macs or None, "instructions_per_mac": profile["total"] / macs if macs else None}

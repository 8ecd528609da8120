"""Bench reports: hil_report.json, JUnit XML, per-window JSON and report.html (matplotlib plots inline when
matplotlib is installed; a runtime-only install gets the same reports with a note in place of each plot)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

import ecgedge
from ecgedge.contract import metrics as M
from ecgedge.contract.package import json_default
from ecgedge.contract.quantization import dequantize_outputs
from ecgedge.hil_tests.gates import GateResult
from ecgedge.hil_tests.junit import write_junit

REPORT_JSON = "hil_report.json"
JUNIT_XML = "hil_junit.xml"
REPORT_HTML = "report.html"
WINDOWS_JSON = "windows.json"


def write_reports(report_dir: Path, report: dict, results: list[GateResult], per_window: dict,
                  outputs: list[dict], error: str | None) -> dict[str, Path]:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": report_dir / REPORT_JSON, "junit": report_dir / JUNIT_XML,
             "html": report_dir / REPORT_HTML, "windows": report_dir / WINDOWS_JSON}
    paths["json"].write_text(json.dumps(report, indent=1, default=json_default))
    paths["windows"].write_text(json.dumps(per_window, default=json_default))
    suite = f"{report.get('model')}@{report.get('device')}"
    write_junit(paths["junit"], results, suite, float(report.get("seconds", 0.0)), error=error,
                properties={k: report.get(k) for k in ("device", "model_sha256", "windows", "bit_exact_fraction",
                                                       "latency_ms_p99", "notice", "signature", "device_restarts")})
    paths["html"].write_text(render_html(report, per_window, outputs))
    return paths


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


PLOT_TITLES = ("ROC, float reference vs device", "Latency histogram", "Per-layer instructions",
               "Bland-Altman, K+ estimate")


def _figures(report: dict, pw: dict, outputs: list[dict]) -> list[tuple[str, str | None, str]]:
    """(title, base64 PNG or None, caption) per plot; without matplotlib every plot is a note saying so."""
    try:
        import matplotlib
    except ImportError:
        why = "no plot: matplotlib is not installed (a runtime-only install); the figures are in hil_report.json"
        return [(t, None, why) for t in PLOT_TITLES]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    dq = np.asarray(pw.get("device_q") or [], np.float64)
    fl = np.asarray(pw["float_raw"], np.float64) if pw.get("float_raw") is not None else None
    n_done = len(dq)
    deq = dequantize_outputs(dq, outputs) if n_done else np.empty_like(dq)

    # ROC float vs device
    primary = report.get("primary_output")
    labels = pw.get("labels", {})
    if primary and primary in labels and n_done:
        j = [o["name"] for o in outputs].index(primary)
        y = np.asarray(labels[primary], bool)
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        fpr, tpr, _ = M.roc_curve(y, deq[:, j])
        ax.plot(fpr, tpr, label=f"device (AUROC {_f(report.get('auroc_device'))})", lw=2)
        if fl is not None:
            fpr, tpr, _ = M.roc_curve(y, fl[:, j])
            ax.plot(fpr, tpr, "--", label=f"float reference (AUROC {_f(report.get('auroc_float'))})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {primary}")
        ax.legend(loc="lower right", fontsize=8)
        figs.append(("ROC, float reference vs device", _png(fig), f"{n_done} windows"))
    else:
        figs.append(("ROC, float reference vs device", None, "no binary labels for this model/data"))

    # latency histogram
    lat = pw.get("latency_ms") or []
    if lat:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        ax.hist(lat, bins=min(40, max(5, len(lat) // 5)), color="#4a7ab5")
        for p, ls in (("latency_ms_p50", "-"), ("latency_ms_p99", "--")):
            if report.get(p) is not None:
                ax.axvline(report[p], color="k", ls=ls, lw=1, label=f"{p[-3:]} {report[p]:.3f} ms")
        if report.get("latency_budget_ms"):
            ax.axvline(report["latency_budget_ms"], color="r", lw=1, label=f"budget {report['latency_budget_ms']} ms")
        ax.set(xlabel="latency per inference (ms)", ylabel="windows", title="On-device latency")
        ax.legend(fontsize=8)
        figs.append(("Latency histogram", _png(fig), report.get("latency_basis", "")))
    else:
        figs.append(("Latency histogram", None, "no latency measured"))

    # per-layer instructions
    layers = report.get("layer_profile") or []
    if layers:
        names = [l["name"] for l in layers]
        ins = [l["instructions"] for l in layers]
        fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(names))))
        ax.barh(range(len(names)), ins, color="#6a9f58")
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.invert_yaxis()
        ax.set(xlabel="instructions (one inference)", title="Per-layer instructions")
        figs.append(("Per-layer instructions", _png(fig), report.get("layer_profile_source", "")))
    else:
        figs.append(("Per-layer instructions", None,
                     report.get("layer_profile_note") or "no per-layer profile from this device"))

    # Bland-Altman of the K+ estimate
    kcol = next((j for j, o in enumerate(outputs) if o.get("kind") == "regression" and o["name"].startswith("k_")),
                None)
    if kcol is not None and pw.get("k_true") is not None and n_done > 1:
        truth = np.asarray(pw["k_true"], np.float64)
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        series = [("device", deq[:, kcol], "o")]
        if fl is not None:
            series.append(("float reference", fl[:, kcol], "x"))
        for name, est, mk in series:
            ba = M.bland_altman(est, truth)
            ax.scatter((est + truth) / 2, est - truth, s=10, marker=mk, alpha=0.6,
                       label=f"{name}: bias {ba['bias']:+.2f}, LoA [{ba['loa_low']:+.2f}, {ba['loa_high']:+.2f}]")
            ax.axhline(ba["bias"], lw=1, color="k" if name == "device" else "grey")
            ax.axhline(ba["loa_low"], lw=0.8, ls="--", color="k" if name == "device" else "grey")
            ax.axhline(ba["loa_high"], lw=0.8, ls="--", color="k" if name == "device" else "grey")
        ax.set(xlabel="mean of estimate and true K+ (mmol/L)", ylabel="estimate - true (mmol/L)",
               title="Bland-Altman: K+ estimate")
        ax.legend(fontsize=7)
        figs.append(("Bland-Altman, K+ estimate", _png(fig), "synthetic truth; demo weights"))
    else:
        figs.append(("Bland-Altman, K+ estimate", None, "no K+ estimate or no K+ truth"))
    return figs


def _f(v, nd=4):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


SUMMARY_KEYS = ("device", "device_name", "model", "target", "model_sha256", "signature", "windows", "bit_exact_fraction",
                "max_abs_delta_int8_lsb", "auroc_float", "auroc_device", "agreement", "max_abs_delta_float",
                "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_basis", "round_trip_ms_p50",
                "round_trip_ms_p95", "instructions_per_inference", "instructions_per_mac", "flash_bytes",
                "ram_bytes", "device_restarts", "gates_passed", "seconds")


def summary_rows(report: dict) -> list[tuple[str, str]]:
    return [(k, _f(report.get(k))) for k in SUMMARY_KEYS]


def render_html(report: dict, pw: dict, outputs: list[dict]) -> str:
    e = html.escape
    status = "PASSED" if report.get("gates_passed") else ("PARTIAL RUN" if report.get("partial") else "FAILED")
    colour = "#2e7d32" if report.get("gates_passed") else "#c62828"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>HIL bench: {e(str(report.get('model')))} on {e(str(report.get('device')))}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
        ".demo{background:#fff3cd;border:1px solid #e0c060;padding:8px;font-weight:bold}"
        ".fail{color:#c62828;font-weight:bold}.pass{color:#2e7d32}.skip{color:#888}"
        "figure{display:inline-block;margin:8px;vertical-align:top}</style></head><body>",
        f"<h1>HIL bench: {e(str(report.get('model')))} on {e(str(report.get('device')))}</h1>",
    ]
    if report.get("demo") or report.get("notice"):
        parts.append(f"<p class='demo'>{e(report.get('notice') or ecgedge.DEMO_NOTICE)}</p>")
    if report.get("unsigned"):
        parts.append(f"<p class='fail'>{e(str(report.get('signature')))}: no package signature was verified</p>")
    parts.append(f"<h2 style='color:{colour}'>{status}</h2>")
    if report.get("error"):
        parts.append(f"<p class='fail'>Run ended early: {e(report['error'])}</p>")
    parts.append("<h3>Summary</h3><table>")
    for k, v in summary_rows(report):
        parts.append(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(v)}</td></tr>")
    parts.append("</table><h3>Gates</h3><table><tr><th>gate</th><th>metric</th><th>value</th><th>op</th>"
                 "<th>threshold</th><th>result</th><th>what it checks</th></tr>")
    for g in report.get("gates", []):
        cls, word = (("skip", "skipped") if g["skipped"] else ("pass", "pass") if g["passed"] else ("fail", "FAIL"))
        value = report.get(g["value_in"]) if g.get("value_in") else g["value"]  # a timing: the report's key
        parts.append(f"<tr><td>{e(g['name'])}</td><td>{e(g['metric'])}</td><td>{e(_f(value))}</td>"
                     f"<td>{e(g['op'])}</td><td>{e(_f(g['threshold']))}</td><td class='{cls}'>{word}</td>"
                     f"<td>{e(g['description'])}</td></tr>")
    parts.append("</table><h3>Plots</h3>")
    for title, png, caption in _figures(report, pw, outputs):
        if png:
            parts.append(f"<figure><img src='data:image/png;base64,{png}' alt='{e(title)}'>"
                         f"<figcaption>{e(title)}: {e(caption)}</figcaption></figure>")
        else:
            parts.append(f"<p class='skip'>{e(title)}: {e(caption)}</p>")
    for key in ("metrics_float", "metrics_device"):
        if report.get(key):
            parts.append(f"<h3>{e(key)}</h3><table>")
            for k, v in report[key].items():
                if k not in ("confusion", "classes"):
                    parts.append(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(_f(v))}</td></tr>")
            parts.append("</table>")
    if report.get("restarts"):
        parts.append("<h3>Device restarts</h3><p>The device died or hung; it was restarted and the run resumed at "
                     "the window it lost.</p><table><tr><th>window</th><th>id</th><th>why</th><th>restart (s)</th>"
                     "<th>at (UTC)</th></tr>")
        for r in report["restarts"]:
            parts.append(f"<tr><td>{e(str(r['window']))}</td><td>{e(str(r['window_id']))}</td><td>{e(r['error'])}</td>"
                         f"<td>{e(_f(r['restart_s'], 3))}</td><td>{e(str(r.get('at_utc')))}</td></tr>")
        parts.append("</table>")
    if report.get("notes"):
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append(f"<p style='font-size:12px;color:#666'>windows: {e(str(report.get('windows_source')))}; "
                 f"INT8 reference: {e(str(report.get('int8_reference')))}; finished {e(str(report.get('finished')))}"
                 "</p></body></html>")
    return "\n".join(parts)

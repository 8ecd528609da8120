"""report.html: the export report a person reads, with embedded matplotlib PNGs (ROC float vs INT8,
per-layer SQNR, footprint vs the target's budget)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _auroc_text(value: float | None) -> str:
    # None when the validation windows hold only one class for this output (e.g. no "~" record)
    return "n/a, one class only" if value is None else f"{value:.4f}"


def _roc_plot(spec, truth, raw_float, raw_int8) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecgedge.contract.metrics import auroc, roc_curve
    logits = [(i, o) for i, o in enumerate(spec.outputs) if o.kind == "logit" and truth.get(o.name) is not None]
    if not logits:
        return None
    fig, axes = plt.subplots(1, len(logits), figsize=(4.2 * len(logits), 4), squeeze=False)
    for ax, (i, o) in zip(axes[0], logits):
        y = truth[o.name]
        for raw, label, style in ((raw_float, "float", "-"), (raw_int8, "INT8", "--")):
            if raw is None:      # a packaged .tflite has no float model
                continue
            fpr, tpr, _ = roc_curve(y, raw[:, i])
            ax.plot(fpr, tpr, style, label=f"{label} (AUROC {_auroc_text(auroc(y, raw[:, i]))})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(title=o.name, xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _sqnr_plot(sqnr: list[dict]) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in sqnr if np.isfinite(r["sqnr_db"])]
    if not rows:
        return None
    values = [r["sqnr_db"] for r in rows]
    worst = int(np.argmin(values))
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(rows)), 3.6))
    colors = ["tab:red" if i == worst else "tab:blue" for i in range(len(rows))]
    ax.bar(range(len(rows)), values, color=colors)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["layer"] for r in rows], rotation=90, fontsize=6)
    ax.set(ylabel="SQNR (dB)", title=f"per-layer SQNR, INT8 vs float (worst: {rows[worst]['layer']}, "
                                      f"{values[worst]:.1f} dB)")
    return _png(fig)


def _footprint_plot(rep: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    b = rep["budget"]
    items = [("flash (weights)", rep["flash_bytes"], b["flash_bytes"]),
             ("RAM (arena)", rep["ram_check"]["arena_bytes"], b["ram_bytes"]),
             ("MACs", rep["macs_pruned"], b["macs"])]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    for k, (name, used, budget) in enumerate(items):
        ax.barh(k, 100.0 * used / budget, color="tab:green" if used <= budget else "tab:red")
        ax.text(100.0 * used / budget + 1, k, f"{used:,} / {budget:,}", va="center", fontsize=8)
    ax.axvline(100, color="black", lw=1)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels([i[0] for i in items])
    ax.set(xlabel="% of the target's budget", title=f"footprint on {rep['target']}")
    ax.set_xlim(0, max(110, max(100.0 * u / b_ for _, u, b_ in items) + 30))
    return _png(fig)


def write_html(path: Path, rep: dict, spec, truth: dict, raw_float: np.ndarray, raw_int8: np.ndarray,
               target) -> None:
    def img(data, alt):
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">' if data else f"<p>({alt}: no data)</p>"

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    keys = ["model", "target", "board", "int8_only", "fits", "calibrator", "params_float", "params_pruned",
            "macs_float", "macs_pruned", "flash_bytes", "arena_bytes", "auroc_float", "auroc_pruned",
            "auroc_int8", "auroc_int8_tflm", "agreement_int8", "agreement_input_int8", "max_abs_delta_probability",
            "latency_ms_estimate", "latency_ms_onnx_float", "latency_ms_onnx_int8"]
    rows = "".join(f"<tr><th>{k}</th><td>{fmt(rep[k])}</td></tr>" for k in keys if k in rep)
    worst = rep.get("sqnr_worst_layer") or {}
    notice = (f'<p style="background:#fc0;padding:8px;font-weight:bold">{html.escape(rep["notice"])}</p>'
              if rep.get("notice") else "")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ecgedge export: {html.escape(rep['model'])}
on {html.escape(rep['target'])}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
th{{text-align:left;padding-right:1em}}</style></head><body>
<h1>{html.escape(rep['model'])} &rarr; {html.escape(rep['target'])}</h1>{notice}
<table>{rows}</table>
<p>Worst layer by SQNR: <b>{html.escape(str(worst.get('layer')))}</b> ({fmt(worst.get('sqnr_db'))} dB).
Latency figures from MACs are estimates (cycles per MAC of the profile) until the HIL bench measures them.</p>
<h2>ROC, float vs INT8</h2>{img(_roc_plot(spec, truth, raw_float, raw_int8), "ROC")}
<h2>Per-layer SQNR</h2>{img(_sqnr_plot(rep.get("sqnr", [])), "SQNR")}
<h2>Footprint vs budget</h2>{img(_footprint_plot(rep), "footprint")}
</body></html>
"""
    Path(path).write_text(page)

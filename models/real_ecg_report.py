"""What the shipped pocket_k demo model does on real handheld ECG (PhysioNet/CinC 2017 records).

    python -m ecgedge.models.real_ecg_report --data ../shared/data/cinc2017 --out docs [--records 400]

No serum potassium is known for these records, so nothing here measures accuracy. It reports what can
be said: how the runtime's signal-quality gate (ecgedge.signals.signal_quality) treats
real lead-I-like windows of each rhythm class, and how pocket_k's outputs are distributed on them
(a population of mostly ambulatory people, where K+ > 5.5 mmol/L is expected to be rare).
Data: G. D. Clifford et al., Computing in Cardiology 44 (2017).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RAIL_UV = 32767.0  # CinC 2017: 16-bit samples at 1000 ADC units per mV -> the ADC rails at about ±32.8 mV


def analyse(data_dir, n_records: int = 400, seed: int = 0, threads: int = 1, progress: bool = True) -> dict:
    import torch

    from ecgedge.signals import signal_quality
    from ecgedge.models.af_lead1 import CLASSES
    from ecgedge.models.train_af import read_labels, record_windows, stratified_split
    from ecgedge.models.zoo import load_model
    from ecgedge.signals import StreamingFilter, load_record

    torch.set_num_threads(threads)
    data_dir = Path(data_dir)
    labels = read_labels(data_dir, CLASSES)
    names = sorted(labels)
    y = np.array([labels[n] for n in names])
    _, pick = stratified_split(y, min(0.999, n_records / len(names)), seed + 11)
    model, spec, meta = load_model("pocket_k")
    rate = spec.input.sampling_rate_hz
    window = spec.input.window_samples
    rows, xs = [], []
    it = pick
    if progress:
        from rich.progress import track
        it = track(pick, description=f"pocket_k on {len(pick)} CinC 2017 records")
    for i in it:
        name = names[int(i)]
        raw = load_record(data_dir / f"{name}.hea", sampling_rate=rate).signal_uv
        filt = StreamingFilter(rate, spec.input.preprocessing).process(raw)
        raw_w = record_windows(raw, window)
        for j, fw in enumerate(record_windows(filt, window)):
            sqi = signal_quality(raw_w[j], fw, rate, RAIL_UV, False)
            rows.append({"record": name, "class": CLASSES[labels[name]], "window": j, "sqi_ok": sqi["ok"],
                         "reasons": sqi["reasons"], "snr_db": sqi["snr_db"], "std_uv": sqi["std_uv"],
                         "hr_bpm": sqi["hr_bpm"]})
            xs.append(fw / spec.input.scale_uv)
    x = np.stack(xs).astype(np.float32)
    with torch.no_grad():
        out = np.concatenate([model(torch.from_numpy(x[s:s + 64, None, :])).numpy() for s in range(0, len(x), 64)])
    for r, o in zip(rows, out):
        r["p_k_gt_5_5"] = float(1 / (1 + np.exp(-o[0])))
        r["p_k_ge_6_0"] = float(1 / (1 + np.exp(-o[1])))
        r["k_mmol"] = float(o[2])
    return {"rows": rows, "records": len(pick), "windows": len(rows), "demo": bool(meta.get("demo")),
            "model_card": {k: meta["card"].get(k) for k in ("auroc_k55", "auroc_k60", "mae_k") if k in meta["card"]}}


def summarise(result: dict) -> dict:
    from ecgedge.models.af_lead1 import CLASSES

    rows = result["rows"]
    out = {"records": result["records"], "windows": result["windows"], "by_class": {}}
    for c in ("all",) + CLASSES:
        sel = [r for r in rows if c == "all" or r["class"] == c]
        if not sel:
            continue
        ok = [r for r in sel if r["sqi_ok"]]
        k = np.array([r["k_mmol"] for r in ok]) if ok else np.zeros(0)
        p = np.array([r["p_k_gt_5_5"] for r in ok]) if ok else np.zeros(0)
        reasons = {}
        for r in sel:
            for why in r["reasons"]:
                reasons[why] = reasons.get(why, 0) + 1
        out["by_class"][c] = {
            "windows": len(sel), "sqi_pass_fraction": len(ok) / len(sel), "sqi_fail_reasons": reasons,
            "k_mmol_median": float(np.median(k)) if k.size else None,
            "k_mmol_p5_p95": [float(np.percentile(k, 5)), float(np.percentile(k, 95))] if k.size else None,
            "flagged_k_gt_5_5_fraction": float(np.mean(p >= 0.5)) if p.size else None,
            "p_k_gt_5_5_median": float(np.median(p)) if p.size else None,
        }
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecgedge.models.af_lead1 import CLASSES

    rows = result["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    for c in CLASSES:
        ok = [r for r in rows if r["class"] == c and r["sqi_ok"]]
        if ok:
            axes[0].hist([r["k_mmol"] for r in ok], bins=30, range=(2, 9), histtype="step", label=f"{c} ({len(ok)})")
            axes[1].hist([r["p_k_gt_5_5"] for r in ok], bins=20, range=(0, 1), histtype="step", label=c)
    axes[0].set_xlabel("pocket_k K+ estimate (mmol/L), windows passing the SQI gate")
    axes[1].set_xlabel("P(K+ > 5.5) of windows passing the gate")
    for ax in axes[:2]:
        ax.set_ylabel("windows")
        ax.legend(fontsize=7)
    frac = [np.mean([r["sqi_ok"] for r in rows if r["class"] == c]) for c in CLASSES]
    axes[2].bar(CLASSES, frac, color="tab:gray")
    axes[2].set_ylim(0, 1)
    axes[2].set_ylabel("fraction of windows passing the SQI gate")
    axes[2].set_xlabel("CinC 2017 rhythm label")
    fig.suptitle("pocket_k (DEMO weights, synthetic training data) on real handheld ECG, PhysioNet/CinC 2017 "
                 "(Clifford et al. 2017): no K+ labels exist", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ecgedge.models.real_ecg_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="PhysioNet/CinC 2017 folder (REFERENCE.csv, A0xxxx.hea/.mat)")
    p.add_argument("--out", default="docs", help="folder for pocket_k_on_real_ecg.{json,png}")
    p.add_argument("--records", type=int, default=400, help="records (stratified by rhythm class)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    ns = p.parse_args(argv)
    from ecgedge.errors import EdgeError
    try:
        result = analyse(ns.data, ns.records, ns.seed, ns.threads)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    summary.update({"model": "pocket_k", "demo": result["demo"], "model_card_synthetic": result["model_card"],
                    "data": "PhysioNet/CinC 2017 (Clifford et al., Computing in Cardiology 44, 2017)",
                    "rail_uv": RAIL_UV, "seed": ns.seed})
    (out / "pocket_k_on_real_ecg.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(result, out / "pocket_k_on_real_ecg.png")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

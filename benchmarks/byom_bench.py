"""Bring-your-own-model acceptance run: six architecture families (tests/byom_models.py) trained on real
PhysioNet/CinC 2017 records, each saved with torch.export.save and taken through edge-analyze and
edge-export --target cortex-m7 with the defaults (500 calibration windows, >= 1,000 held-out validation
windows), timed as separate processes.

    python benchmarks/byom_bench.py --data ../shared/data/cinc2017 [--out byom_bench.json] [--families a,b]
        [--epochs N] [--train-windows N] [--noise-uv UV] [--gain G] [--one-cycle]

Records are split once by a seeded order: training records for the families, and the rest — the only
records the exports see (calibration and validation, split again by record inside the export). Figures:
per family, analysis seconds (wall and CPU), export seconds, int8_only, INT8-vs-float decision agreement on
the held-out windows, per-class and Challenge F1 of float and INT8, flash, our engine's and tflite-micro's
arena, ops, TRANSPOSEs, the ops our C engine lacks. Data: G. D. Clifford et al., Computing in Cardiology 44
(2017). Trained briefly: not accurate models, and no accuracy is claimed for them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from byom_models import CONTRACT  # noqa: E402  (the families' contract, one home with the families)
CLASSES = ("N", "A", "O", "~")
WINDOW = 3000
SCALE_UV = 1000.0   # the contract's scale_uv: the windows are in mV


def _timed(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """(exit code, wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, time.perf_counter() - t0, cpu


def split_records(labels: dict[str, int], train_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    names = sorted(labels)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n = int(len(order) * train_fraction)
    return order[:n], order[n:]


def held_out_folder(data: Path, names: list[str], labels: dict[str, int], folder: Path) -> Path:
    """A folder of links to the held-out records only (+ their labels): what the exports may read."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        for ext in (".hea", ".mat"):
            link = folder / f"{n}{ext}"
            if not link.exists():
                link.symlink_to(data / f"{n}{ext}")
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{CLASSES[labels[n]]}\n" for n in names))
    return folder


def training_windows(data: Path, names: list[str], labels: dict[str, int], spec,
                     max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    from ecgedge.quantize.byom import load_signal, signal_windows
    xs, ys, total = [], [], 0
    for n in names:
        if total >= max_windows:
            break
        sig, _ = load_signal(data / f"{n}.hea", spec)
        if len(sig) < WINDOW:
            continue
        w, _ = signal_windows(sig, spec)
        xs.append(w)
        ys += [labels[n]] * len(w)
        total += len(w)
    return np.concatenate(xs), np.array(ys)


def train(model, x, y, epochs: int, seed: int, noise_uv: float = 0.0, gain: float = 0.0, cosine: bool = False):
    import torch
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x[:, None, :]), torch.from_numpy(y)
    w = torch.tensor(1.0 / np.maximum(np.bincount(y, minlength=4), 1) ** 0.5, dtype=torch.float32)
    steps = epochs * (len(xt) // 32 + 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps) if cosine else None
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(32):
            if len(idx) < 2:  # a last batch of one: BatchNorm cannot train on it
                continue
            opt.zero_grad()
            xb = xt[idx]
            if gain:
                xb = xb * (1 + gain * (2 * torch.rand(len(idx), 1, 1, generator=gen) - 1))
            if noise_uv:
                xb = xb + torch.randn(xb.shape, generator=gen) * (noise_uv / SCALE_UV)
            torch.nn.functional.cross_entropy(model(xb), yt[idx], weight=w / w.sum()).backward()
            opt.step()
            if sched is not None:
                sched.step()
    return model.eval()


def run_family(name, cls, x, y, held: Path, work: Path, epochs: int, seed: int, noise_uv=0.0, gain=0.0,
               cosine=False) -> dict:
    import torch
    t0 = time.perf_counter()
    model = train(cls(), x, y, epochs, seed, noise_uv, gain, cosine)
    train_s = time.perf_counter() - t0
    pt2, contract = work / f"{name}.pt2", work / f"{name}.toml"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, WINDOW),)), pt2)
    contract.write_text(CONTRACT.format(name=name))
    bin_dir = Path(sys.executable).parent
    rc_a, wall_a, cpu_a = _timed([str(bin_dir / "edge-analyze"), str(pt2), "--contract", str(contract), "--target",
                                  "cortex-m7", "--json", str(work / f"{name}.analysis.json")], work / f"{name}.analyze.log")
    out = work / f"{name}-cortex-m7"
    rc_e, wall_e, cpu_e = _timed([str(bin_dir / "edge-export"), str(pt2), "--contract", str(contract), "--target",
                                  "cortex-m7", "--data", str(held), "--out", str(out), "--no-progress"],
                                 work / f"{name}.export.log")
    row = {"family": name, "train_seconds": round(train_s, 1), "analyze_rc": rc_a, "analyze_wall_s": round(wall_a, 1),
           "analyze_cpu_s": round(cpu_a, 1), "export_rc": rc_e, "export_wall_s": round(wall_e, 1),
           "export_cpu_s": round(cpu_e, 1)}
    if rc_e == 0:
        r = json.loads((out / "report.json").read_text())
        a = json.loads((work / f"{name}.analysis.json").read_text()) if rc_a == 0 else {}
        cls_f, cls_q = r.get("classification", {}).get("float", {}), r.get("classification", {}).get("int8", {})
        row.update({
            "int8_only": r["int8_only"], "agreement_int8_vs_float": r["agreement_int8_vs_float"],
            "agreement_int8": r["agreement_int8"], "validation_windows": r["validation"]["windows"],
            "validation_records": r["validation"].get("records"), "max_abs_delta_probability": r["max_abs_delta_probability"],
            "f1_challenge_float": cls_f.get("f1_challenge"), "f1_challenge_int8": cls_q.get("f1_challenge"),
            "macs": r["macs_float"], "params": r["params_float"], "flash_bytes": r["flash_bytes"],
            "arena_bytes_tflm": r["arena_bytes"], "arena_bytes_engine": (a.get("targets", {}).get("cortex-m7") or {}).get("arena_bytes"),
            "n_ops": r["n_ops"], "ops": r["ops"], "transposes": r["ops"].get("TRANSPOSE", 0),
            "engine_unsupported": sorted({u["op"] for u in r["engine"]["unsupported_ops"]}),
            "calibrator": r["calibrator"], "tflm_vs_litert_max_lsb": r["tflm_vs_litert"]["max_lsb"],
        })
    return row


def main(argv=None) -> int:
    from byom_models import FAMILIES

    from ecgedge.models.specs import spec_from_dict
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cinc2017")
    p.add_argument("--out", type=Path, default=Path("byom_bench.json"))
    p.add_argument("--work", type=Path, default=Path("byom_bench_work"))
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-windows", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-uv", type=float, default=0.0,
                   help="training augmentation: Gaussian noise of this RMS (uV) added to each batch")
    p.add_argument("--gain", type=float, default=0.0,
                   help="training augmentation: each window's amplitude scaled by 1 +- this (uniform)")
    p.add_argument("--one-cycle", action="store_true", help="one-cycle learning-rate schedule (peak 2e-3)")
    ns = p.parse_args(argv)
    from ecgedge.errors import DataError
    from ecgedge.models.af_data import read_labels
    try:
        labels = read_labels(ns.data, CLASSES)    # record -> class index, checked against CLASSES
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import tomllib

    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ns.work.mkdir(parents=True, exist_ok=True)
    train_names, held_names = split_records(labels, 0.6, ns.seed)
    held = held_out_folder(ns.data, held_names, labels, ns.work / "held_out")
    spec = spec_from_dict(tomllib.loads(CONTRACT.format(name="bench")))
    x, y = training_windows(ns.data, train_names, labels, spec, ns.train_windows)
    rows = []
    for name in ns.families.split(","):
        rows.append(run_family(name, FAMILIES[name], x, y, held, ns.work, ns.epochs, ns.seed, ns.noise_uv, ns.gain,
                                ns.one_cycle))
        print(json.dumps(rows[-1]), flush=True)
        # written after every family: a long run that stops keeps what it measured
        result = {"benchmark": "byom", "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                    "platform": platform.platform(),
                                                    "load_average": os.getloadavg()},
                  "data": str(ns.data), "train_records": len(train_names), "held_out_records": len(held_names),
                  "train_windows": int(len(x)), "epochs": ns.epochs, "families": rows}
        ns.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'family':<10} {'analyze s':>9} {'export s':>8} {'int8':>5} {'agree':>6} {'windows':>7} "
          f"{'F1 f/q':>11} {'flash B':>8} {'arena TFLM':>10} {'arena ours':>10} {'ops':>4} engine lacks")
    for r in rows:
        if r["export_rc"]:
            print(f"{r['family']:<10} export failed (exit {r['export_rc']})")
            continue
        f1 = f"{r['f1_challenge_float'] or 0:.3f}/{r['f1_challenge_int8'] or 0:.3f}"
        print(f"{r['family']:<10} {r['analyze_wall_s']:>9.1f} {r['export_wall_s']:>8.1f} {str(r['int8_only']):>5} "
              f"{r['agreement_int8_vs_float']:>6.3f} {r['validation_windows']:>7} {f1:>11} {r['flash_bytes']:>8} "
              f"{r['arena_bytes_tflm']:>10} {str(r['arena_bytes_engine']):>10} {r['n_ops']:>4} "
              f"{','.join(r['engine_unsupported']) or '-'}")
    print(f"written {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

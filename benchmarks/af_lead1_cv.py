"""af_lead1 recipes compared by k-fold cross-validation over the training records (never the validation ones).

    python benchmarks/af_lead1_cv.py run --data ../shared/data/cinc2017 --name mil4 --recipe '{"record_crops": 4}' \
        [--folds 0,1,2,3,4] [--teacher-run base] [--out runs/af_cv]
    python benchmarks/af_lead1_cv.py table --out runs/af_cv base mil4 ... [--json af_cv.json]

`run` trains the recipe (`ecgedge.models.train_af.Recipe` fields as JSON) once per fold with the product's
training stages (build -> fit -> finish) on the training records of the published lists
(models/weights/af_lead1.splits: training.txt, folds.csv) minus the fold, and scores the fold's records
with the record rule: <out>/<name>/fold<k>.npz (names, labels, record probabilities) and fold<k>.pt.
`--teacher-run T` distils each fold from run T's model of the same fold (trained without that fold);
`--init-run I` starts each fold from run I's model of the same fold (fine-tuning).
`table` pools the out-of-fold predictions of every run over the folds they all have and writes the
k-fold f1_challenge with a 95 % bootstrap interval over records, and each run's paired difference to the
first run named (the same resampled records for both), as JSON and a Markdown table.
Data: PhysioNet/CinC 2017 (G. D. Clifford et al., Computing in Cardiology 44, 2017). One CPU thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def fold_sets(data: Path, cache_dir: Path | None, splits: Path | None):
    from ecgedge.models.af_data import load_records, published_split, read_folds, splits_dir
    from ecgedge.models.specs import get_spec
    spec = get_spec("af_lead1")
    folder = splits or splits_dir()
    lists = published_split(folder)
    folds = read_folds(folder / "folds.csv")
    names = sorted(lists["training"])
    rs = load_records(data, spec, names=sorted(set(lists["training"]) | set(lists["validation"])),
                      cache_dir=cache_dir, progress=False)
    train = rs.select(names)
    return spec, train, np.array([folds[n] for n in names])


def run(ns) -> None:
    import torch

    from ecgedge.models.af_data import Augment
    from ecgedge.models.train_af import Recipe, TrainState, build, finish, fit
    out = Path(ns.out) / ns.name
    out.mkdir(parents=True, exist_ok=True)
    spec, train, fold_of = fold_sets(Path(ns.data), Path(ns.cache) if ns.cache else None,
                                     Path(ns.splits) if ns.splits else None)
    logf = open(out / "log.txt", "a")

    def log(s):
        print(s, flush=True)
        logf.write(s + "\n")
        logf.flush()

    for k in [int(f) for f in ns.folds.split(",")]:
        spec_json = json.loads(ns.recipe)
        if "augment" in spec_json:
            spec_json["augment"] = Augment(**spec_json["augment"])
        recipe = Recipe(**spec_json)
        if ns.teacher_run:
            recipe.teacher = tuple(str(Path(ns.out) / t / f"fold{k}.pt") for t in ns.teacher_run.split(","))
        init = Path(ns.out) / ns.init_run / f"fold{k}.pt" if ns.init_run else None
        st = TrainState(data=Path(ns.data), out=out, recipe=recipe, seed=ns.seed, threads=1, progress=False,
                        log=log, eval_every=ns.eval_every, spec=spec, init=init)
        st.train_rs, st.val_rs = train.subset(np.flatnonzero(fold_of != k)), train.subset(np.flatnonzero(fold_of == k))
        log(f"{ns.name} fold {k}: {len(st.train_rs)} train / {len(st.val_rs)} held out; recipe {ns.recipe} "
            f"teacher {ns.teacher_run}")
        t0 = time.time()
        for stage in (build, fit, finish):
            st = stage(st)
        np.savez(out / f"fold{k}.npz", names=np.array(st.val_rs.names), labels=st.val_rs.labels, probs=st.metrics["probs"])
        torch.save({"model": "af_lead1", "preset": st.final.ecgedge_preset, "arch": st.final.ecgedge_arch,
                    "state_dict": st.final.state_dict(), "demo": False, "card": {}}, out / f"fold{k}.pt")
        log("RESULT " + json.dumps({"fold": k, "minutes": round((time.time() - t0) / 60, 1),
                                    **{m: st.metrics[m] for m in ("f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A")}}))


def pooled(out: Path, name: str, folds: list[int]):
    parts = [np.load(out / name / f"fold{k}.npz") for k in folds]
    names = np.concatenate([p["names"] for p in parts])
    order = np.argsort(names)
    return (names[order], np.concatenate([p["labels"] for p in parts])[order],
            np.concatenate([p["probs"] for p in parts])[order])


def table(ns) -> dict:
    from ecgedge.models.af_eval import bootstrap_f1, record_metrics
    out = Path(ns.out)
    common = None
    for name in ns.runs:
        have = {int(p.stem[4:]) for p in (out / name).glob("fold*.npz")}
        common = have if common is None else common & have
    folds = sorted(common or [])
    if not folds:
        sys.exit("no fold that every run has")
    ref_names, labels, ref = pooled(out, ns.runs[0], folds)
    rows = []
    for name in ns.runs:
        names, lab, probs = pooled(out, name, folds)
        assert np.array_equal(names, ref_names) and np.array_equal(lab, labels)
        m = record_metrics(probs, labels)
        b = bootstrap_f1(labels, ref, probs, resamples=ns.resamples)
        rows.append({"run": name, **{k: m[k] for k in ("f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A")},
                     "interval": [b["b"]["low"], b["b"]["high"]],
                     "vs_first": {"difference": b["b_minus_a"]["f1_challenge"],
                                  "interval": [b["b_minus_a"]["low"], b["b_minus_a"]["high"]],
                                  "better_share": b["b_better_share"]}})
    res = {"folds": folds, "records": int(len(labels)), "resamples": ns.resamples, "rows": rows}
    lines = [f"| run | f1_challenge ({len(folds)} folds, {len(labels)} records) [95 % CI] | F1 N / A / O | "
             f"vs {ns.runs[0]} (paired) [95 % CI] |", "|---|---|---|---|"]
    for r in rows:
        v = r["vs_first"]
        lines.append(f"| {r['run']} | {r['f1_challenge']:.4f} [{r['interval'][0]:.4f}, {r['interval'][1]:.4f}] | "
                     f"{r['f1_N']:.3f} / {r['f1_A']:.3f} / {r['f1_O']:.3f} | {v['difference']:+.4f} "
                     f"[{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}] |")
    print("\n".join(lines))
    if ns.json:
        Path(ns.json).write_text(json.dumps(res, indent=1) + "\n")
    return res


def main(argv=None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--recipe", default="{}")
    r.add_argument("--folds", default="0,1,2,3,4")
    r.add_argument("--teacher-run", default=None, help="runs (comma-separated) whose fold models are the teacher")
    r.add_argument("--init-run", default=None, help="start each fold from this run's model of the fold")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--eval-every", type=int, default=20)
    r.add_argument("--splits", default=None, help="record lists folder (default: the shipped weights')")
    r.add_argument("--cache", default=None, help="record cache folder (default: ~/.cache/ecgedge/af_lead1)")
    r.add_argument("--out", default="runs/af_cv")
    t = sub.add_parser("table")
    t.add_argument("runs", nargs="+")
    t.add_argument("--out", default="runs/af_cv")
    t.add_argument("--resamples", type=int, default=1000)
    t.add_argument("--json", default=None)
    ns = p.parse_args(argv)
    run(ns) if ns.cmd == "run" else table(ns)


if __name__ == "__main__":
    main()

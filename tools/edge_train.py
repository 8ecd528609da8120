"""edge-train: list the model zoo, or train demo weights on generated subjects.

    edge-train --list
    edge-train pocket_k [--preset P] [--subjects N] [--windows-per-subject W] [--epochs E] [--seed S]
                        [--out DIR] [--threads T] [--init CKPT]
    edge-train pocket_k --evaluate CKPT [--subjects N]    # test metrics of a checkpoint, as JSON
    edge-train af_lead1 --data ../shared/data/cinc2017 [--epochs E] [--max-minutes M] [--split-lists DIR]  # real ECG
    edge-train af_lead1 --data DIR --evaluate CKPT        # record-level validation metrics, as JSON
"""

from __future__ import annotations

import argparse
import json
import sys


def parse(args=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edge-train", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="model name (see --list)")
    p.add_argument("--list", action="store_true", help="print the zoo: inputs, outputs, params and MACs per preset")
    p.add_argument("--preset", default=None, help="width preset (default: the spec's, 'reference')")
    p.add_argument("--subjects", type=int, default=320, help="generated subjects (split 70/15/15 by subject)")
    p.add_argument("--windows-per-subject", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe (pocket_k 4, af_lead1 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop-s", type=float, default=4.0,
                   help="train on random crops of this many seconds (0: whole windows); evaluation always uses whole windows")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default=None, help="output folder (default runs/<model>)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from this checkpoint")
    p.add_argument("--evaluate", default=None, metavar="CKPT",
                   help="do not train: print test metrics of CKPT on the held-out generated subjects")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="labelled real records (af_lead1: the PhysioNet/CinC 2017 folder, e.g. ../shared/data/cinc2017)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="af_lead1: fit the schedule into this many minutes (measured on the first epoch)")
    p.add_argument("--teacher", action="append", default=None, metavar="CKPT",
                   help="af_lead1: distil from this checkpoint's record-level probabilities (repeat for an ensemble)")
    p.add_argument("--teacher-weight", type=float, default=0.5,
                   help="af_lead1: share of the teacher's probabilities in the target (default 0.5)")
    p.add_argument("--record-crops", type=int, default=1, metavar="K",
                   help="af_lead1: K crops of one record per draw, scored together by the record rule (default 1)")
    p.add_argument("--split-lists", default=None, metavar="DIR",
                   help="af_lead1: train and validate on these record lists (training.txt, validation.txt; the "
                        "shipped weights' are in models/weights/af_lead1.splits) instead of a seeded split of --data")
    ns = p.parse_args(args)
    if not ns.list and not ns.model:
        p.error("give a model name or --list")
    return ns


def _weights_label(path) -> str:
    """What shipped weights are: their checkpoint's own notice ("demo ..." for synthetic-data weights,
    "real data ..., research use, not for clinical use" for af_lead1)."""
    from ecgedge import DEMO_NOTICE
    from ecgedge.models.zoo import read_checkpoint

    ckpt = read_checkpoint(path)
    if ckpt.get("demo", True):  # no flag: treated as demo
        return DEMO_NOTICE
    card = ckpt.get("card") if isinstance(ckpt.get("card"), dict) else {}
    return card.get("notice") or "trained weights, not for clinical use"


def zoo_table():
    """Rich table of every spec, one row per width preset (params and MACs per window)."""
    from rich.table import Table

    from ecgedge.models.specs import get_spec, list_specs
    from ecgedge.models.zoo import build_model, count_macs, count_params

    table = Table(title="ecgedge model zoo (* default preset; MACs per window)", show_lines=False)
    for col, kw in (("model", {"no_wrap": True}), ("task", {}), ("input", {}), ("outputs", {}),
                    ("preset", {"no_wrap": True}), ("params", {"justify": "right", "no_wrap": True}),
                    ("MACs", {"justify": "right", "no_wrap": True}), ("weights", {})):
        table.add_column(col, **kw)
    for name in list_specs():
        spec = get_spec(name)
        c = spec.input
        path = spec.weights_path()
        weights = f"[green]{path.name} ({_weights_label(path)})" if path else "[red]none: UNTRAINED"
        outputs = ", ".join(o.name for o in spec.outputs) if len(spec.outputs) <= 3 else \
            f"{len(spec.outputs)} ({spec.outputs[0].name}, ...)"
        contract = f"{c.signal} {c.lead} {c.sampling_rate_hz} Hz, {c.window_s:g} s ({c.window_samples})"
        for i, preset in enumerate(spec.arch.presets):
            model = build_model(name, preset)
            first = i == 0
            table.add_row(name if first else "", spec.task if first else "", contract if first else "",
                          outputs if first else "", preset + ("*" if preset == spec.arch.default else ""),
                          f"{count_params(model):,}", f"{count_macs(model, c.window_samples) / 1e6:,.2f} M",
                          weights if first else "", end_section=i == len(spec.arch.presets) - 1)
    return table


def run(ns: argparse.Namespace) -> int:
    from rich.console import Console

    from ecgedge.models.specs import get_spec

    console = Console()
    if ns.list:
        console.print(zoo_table())
        return 0
    spec = get_spec(ns.model)  # unknown name -> ConfigError listing the valid ones
    if spec.name == "af_lead1":  # real-data recipe (ecgedge.models.train_af)
        from ecgedge.models.train_af import run_cli
        return run_cli(ns, console)
    if ns.evaluate:
        from ecgedge.models.train import evaluate, make_dataset, predict
        from ecgedge.models.zoo import load_model
        import torch

        torch.set_num_threads(ns.threads)
        model, _, meta = load_model(spec.name, ns.evaluate)
        test = make_dataset(spec, ns.subjects, ns.windows_per_subject, seed=ns.seed,
                            progress=not ns.no_progress)["test"]
        metrics = evaluate(predict(model, test.x), test.k)
        print(json.dumps({"model": spec.name, "checkpoint": ns.evaluate, "demo": meta["demo"],
                          "test_windows": int(len(test.k)), **metrics}, indent=2))
        return 0
    from ecgedge.models.train import train

    out = ns.out or f"runs/{spec.name}"
    card = train(spec.name, preset=ns.preset, subjects=ns.subjects, windows_per_subject=ns.windows_per_subject,
                 epochs=4 if ns.epochs is None else ns.epochs, seed=ns.seed, out=out, threads=ns.threads, batch_size=ns.batch_size,
                 lr=ns.lr, init=ns.init, crop_s=ns.crop_s, progress=not ns.no_progress, log=console.print)
    console.print(f"[bold]{card['notice']}[/bold]")
    console.print(f"wrote {out}/{spec.name}.pt, .card.json, .card.md, .roc.png: AUROC(K>5.5) "
                  f"{card['auroc_k55']:.4f}, AUROC(K>=6.0) {card['auroc_k60']:.4f}, MAE {card['mae_k']:.3f} mmol/L")
    return 0


def main(args=None) -> int:
    from ecgedge.errors import EdgeError

    ns = parse(args)
    try:
        return run(ns)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""edge-train: list the model zoo, or train weights (pocket_k: demo weights on generated subjects;
af_lead1: research weights on the real PhysioNet/CinC 2017 records).

Training writes a checkpoint with its model card (.card.json/.md: data, split, metrics, the weights' label).
"""

from __future__ import annotations

import argparse
import json
import sys

from ecgedge.tools import _cli

EXAMPLES = [
    ("edge-train --list", "the zoo: input contracts, presets, params and MACs per window, what the weights are"),
    ("edge-train --list --json", "the same as JSON"),
    ("edge-train pocket_k --subjects 320 --epochs 4 --out runs/pocket_k",
     "train demo weights on generated subjects (split by subject), write checkpoint + model card"),
    ("edge-train pocket_k --evaluate models/weights/pocket_k.pt", "test metrics of a checkpoint, as JSON"),
    ("edge-train af_lead1 --data ../shared/data/cinc2017 --max-minutes 60",
     "train the AF detector on real handheld ECG (split by record)"),
]


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-train", __doc__, EXAMPLES,
                         exit_codes={_cli.EXIT_OK: "listed, trained or evaluated"})
    p.add_argument("model", nargs="?", help="model name (see --list)")
    p.add_argument("--list", action="store_true", help="print the zoo: inputs, outputs, params and MACs per preset")
    p.add_argument("--json", action="store_true", help="with --list: print the zoo as JSON")
    p.add_argument("--preset", default=None, help="width preset (default: the spec's, 'reference')")
    p.add_argument("--subjects", type=_cli.int_range(3), default=320,
                   help="generated subjects, split 70/15/15 by subject (default 320, at least 3)")
    p.add_argument("--windows-per-subject", type=_cli.positive_int, default=5,
                   help="10 s windows generated per subject (default 5)")
    p.add_argument("--epochs", type=_cli.positive_int, default=None,
                   help="training epochs (default: the model's recipe: pocket_k 4, af_lead1 60)")
    p.add_argument("--seed", type=_cli.seed, default=0, help="seed of the data split, generator and initialisation "
                                                             "(default 0)")
    p.add_argument("--batch-size", type=_cli.positive_int, default=32, help="windows per step (default 32)")
    p.add_argument("--crop-s", type=_cli.nonneg_float, default=4.0,
                   help="train on random crops of this many seconds (0: whole windows); evaluation always uses "
                        "whole windows (default 4)")
    p.add_argument("--lr", type=_cli.positive_float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--out", default=None, help="output folder (default runs/<model>)")
    p.add_argument("--threads", type=_cli.positive_int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--init", default=None, metavar="CKPT", type=_cli.existing_file,
                   help="start from this checkpoint")
    p.add_argument("--evaluate", default=None, metavar="CKPT", type=_cli.existing_file,
                   help="do not train: print test metrics of CKPT on the held-out generated subjects")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--data", default=None, metavar="DIR", type=_cli.existing_dir,
                   help="labelled real records (af_lead1: the PhysioNet/CinC 2017 folder, e.g. ../shared/data/cinc2017)")
    p.add_argument("--max-minutes", type=_cli.positive_float, default=None,
                   help="af_lead1: fit the schedule into this many minutes (measured on the first epoch)")
    p.add_argument("--teacher", action="append", default=None, metavar="CKPT", type=_cli.existing_file,
                   help="af_lead1: distil from this checkpoint's record-level probabilities (repeat for an ensemble)")
    p.add_argument("--teacher-weight", type=_cli.probability, default=0.5,
                   help="af_lead1: share of the teacher's probabilities in the target, 0..1 (default 0.5)")
    p.add_argument("--record-crops", type=_cli.positive_int, default=1, metavar="K",
                   help="af_lead1: K crops of one record per draw, scored together by the record rule (default 1)")
    p.add_argument("--split-lists", default=None, metavar="DIR", type=_cli.existing_dir,
                   help="af_lead1: train and validate on these record lists (training.txt, validation.txt; the "
                        "shipped weights' are in models/weights/af_lead1.splits) instead of a seeded split of --data")
    return p


def parse(args=None) -> argparse.Namespace:
    p = parser()
    ns = p.parse_args(args)
    if not ns.list and not ns.model:
        p.error("give a model name or --list")
    if ns.json and not ns.list:
        p.error("--json goes with --list")
    return ns


def _weights_label(path) -> str:
    """What shipped weights are (the notice of their label: ecgedge.labels), read from their model card."""
    return _label(path).notice


def _label(path):
    """The label of shipped weights: from their card (fast, no torch), else from the checkpoint itself."""
    from ecgedge import labels

    lab = labels.for_weights(path)
    if lab is None:
        from ecgedge.models.zoo import read_checkpoint
        lab = labels.from_checkpoint(read_checkpoint(path))
    return lab


def zoo_rows() -> list[dict]:
    """Every spec with its presets' exact params and MACs per window (from shapes: no torch) and the label
    of its shipped weights."""
    from ecgedge.models.sizes import spec_size
    from ecgedge.models.specs import get_spec, list_specs

    rows = []
    for name in list_specs():
        spec = get_spec(name)
        c = spec.input
        path = spec.weights_path()
        lab = _label(path)
        presets = []
        for preset in spec.arch.presets:
            size = spec_size(spec, preset)
            presets.append({"name": preset, "default": preset == spec.arch.default, "params": size["params"],
                            "macs_per_window": size["macs"]})
        rows.append({"name": name, "task": spec.task, "description": spec.description,
                     "input": {"signal": c.signal, "lead": c.lead, "sampling_rate_hz": c.sampling_rate_hz,
                               "window_s": c.window_s, "window_samples": c.window_samples, "units": c.units},
                     "outputs": spec.output_names, "presets": presets,
                     "weights": {"file": path.name if path else None, **lab.to_dict()}})
    return rows


def zoo_table(rows=None):
    """Rich table of every spec, one row per width preset; reads at 80 columns (names wrap, numbers never
    cut); what each model outputs and what its weights are follow the table."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows = zoo_rows() if rows is None else rows
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("input", no_wrap=True)
    table.add_column("preset", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    style = {"untrained": "red", "demo": "yellow", "research": "green", "user": "cyan"}
    for row in rows:
        c = row["input"]
        contract = f"{c['signal']} {c['lead']}\n{c['sampling_rate_hz']} Hz, {c['window_s']:g} s"
        w = row["weights"]
        for i, preset in enumerate(row["presets"]):
            first = i == 0
            table.add_row(row["name"] if first else "", contract if first else "",
                          preset["name"] + ("*" if preset["default"] else ""), f"{preset['params']:,}",
                          f"{preset['macs_per_window'] / 1e6:,.2f} M",
                          Text(w["tag"], style=style[w["kind"]]) if first else "",
                          end_section=i == len(row["presets"]) - 1)
    notes = Table.grid(padding=(0, 1))
    notes.add_column(no_wrap=True)
    notes.add_column(overflow="fold")
    for row in rows:
        w = row["weights"]
        outs = row["outputs"]
        outputs = ", ".join(outs) if len(outs) <= 5 else f"{len(outs)} ({', '.join(outs[:3])}, ...)"
        notes.add_row(Text(row["name"], "bold"), Text.assemble(
            f"{row['task']}: {outputs}\nweights {w['file'] or '(none)'}: ", (w["notice"], style[w["kind"]])))
    return Group(Text("ecgedge model zoo (* default preset; MACs per window)", "bold"), table, notes)


def run(ns: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if ns.list:
        if ns.json:
            print(json.dumps({"models": zoo_rows()}, indent=1))
        else:
            console.print(zoo_table())
        return 0
    from ecgedge.models.specs import get_spec

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
    ns = parse(args)
    return _cli.run("edge-train", lambda: run(ns), verbose=ns.verbose, quiet=not ns.list)


if __name__ == "__main__":
    sys.exit(main())

"""edge-analyze: what a single-lead model costs on each target, in seconds, without training: per-layer
MACs, bytes and the runtimes that run each op, per-target flash, arenas, a latency estimate, and whether it fits.

MODEL is a zoo name or a file: .pt2 (torch.export.save), .onnx (float or QDQ INT8), .tflite (float or full
INT8). A float model is analysed as the full-INT8 model the export would make of it (not pruned).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from ecgedge.tools import _cli

EXAMPLES = [
    ("edge-analyze pocket_k --target cortex-m7", "a zoo model on one target"),
    ("edge-analyze my_model.pt2 --contract my_model.toml --all-targets --json analysis.json",
     "your own model (docs/byom.md) on every target, also written as JSON"),
    ("edge-analyze model_int8.tflite --target cortex-m4", "a full-INT8 .tflite as it is"),
]


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-analyze", __doc__, EXAMPLES, exit_codes={
        _cli.EXIT_OK: "analysed",
        _cli.EXIT_USAGE: "bad input (not a model, an unsupported module, a contract mismatch)"})
    p.add_argument("model", help="zoo name, or a .pt2 / .onnx / .tflite model file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target", help="one target profile (see edge-export --list-targets)")
    g.add_argument("--all-targets", action="store_true", help="every target profile (the default)")
    p.add_argument("--contract", type=_cli.existing_file,
                   help="contract TOML of a model outside the zoo (docs/byom.md)")
    p.add_argument("--json", type=_cli.file_in_existing_dir, help="write the analysis as JSON to this file")
    p.add_argument("--targets-file", type=_cli.existing_file, help="TOML file with extra/overriding target profiles")
    p.add_argument("--layers", type=_cli.nonneg_int, default=60,
                   help="print at most this many layer rows (default 60)")
    return p


def parse(args=None) -> argparse.Namespace:
    return parser().parse_args(args)


def _runs_on(b: dict) -> str:
    """C (our engine), T (tflite-micro), O (ONNX Runtime); '-' where it does not run, '?' not known."""
    return " ".join(letter if b[k] else ("?" if b[k] is None else "-")
                    for letter, k in (("C", "ecgedge_c"), ("T", "tflite_micro"), ("O", "onnxruntime")))


def _print(rep: dict, max_rows: int) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console()
    con.print(f"[bold]{rep['model']}[/] ({rep['format']}) as {rep['analysed_as']}")
    t = Table(title=f"layers: {rep['n_ops']} ops; runs on C = our engine, T = tflite-micro, O = ONNX Runtime")
    for col in ("#", "op", "module", "output", "MACs", "params", "act.", "runs on"):
        t.add_column(col, justify="right" if col in ("#", "MACs", "params", "act.") else "left",
                     overflow="fold")
    rows = rep["layers"]
    for r in rows[:max_rows]:
        shape = "x".join(str(d) for d in r["output_shape"] if d != 1) or "1"
        t.add_row(str(r["index"]), r["op"], r["module"] or "", shape, f"{r['macs']:,}", f"{r['param_bytes']:,}",
                  f"{r['activation_bytes']:,}", _runs_on(r["backends"]))
    con.print(t)
    if len(rows) > max_rows:
        con.print(f"... {len(rows) - max_rows} more layers (--layers N, or --json)")
    con.print(f"{rep['macs']:,} MACs, {rep['params']:,} parameters, {rep['flash_bytes']:,} B INT8 model")
    s = Table(title="targets (arena: our engine's plan / tflite-micro's smallest)")
    for col in ("target", "flash B", "arena B", "ms (est.)", "fits", "our engine lacks"):
        s.add_column(col, overflow="fold")
    for name, v in rep["targets"].items():
        uns = ", ".join(sorted({f"{u['op']} ({u['layer']})" for u in v["unsupported_ops"]})) or "-"
        ours = "-" if v["arena_bytes"] is None else f"{v['arena_bytes']:,}"
        tflm = "-" if v["arena_bytes_tflm"] is None else f"{v['arena_bytes_tflm']:,}"
        s.add_row(name, f"{v['flash_bytes']:,}", f"{ours} / {tflm}", f"{v['latency_ms_estimate']:.2f}",
                  "yes" if v["fits"] else "[red]no[/]: " + "; ".join(v["overflows"]), uns)
    con.print(s)
    if rep.get("tflite_micro_missing_op"):
        con.print(f"[red]tflite-micro has no {rep['tflite_micro_missing_op']} kernel[/]")
    con.print(f"{rep['seconds']:.1f} s")


def main(args=None) -> None:
    ns = parse(args)
    code = _cli.run("edge-analyze", lambda: _run(ns), verbose=ns.verbose)
    if args is None:   # the program itself (console script, python -m), not a call from Python (tests, notebooks)
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown: with torch and TensorFlow loaded it takes ~1.4 s
    of a 7 s analysis (their modules' and C++ globals' destruction; atexit handlers and gc are ~0.3 s of it).
    Everything the command writes is closed by then (the JSON file, the log in _cli.run); the streams and
    logging handlers are flushed here, and the atexit handlers run."""
    import atexit
    import logging
    import os
    try:
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


# Optional imports Keras makes when it is first imported (pandas for DataFrame inputs to fit, matplotlib.pyplot
# for its plotting helpers) that an analysis never uses: ~0.8 s of a 7 s run. This process only analyses, so
# they are kept out while it does (as if not installed); a process that already imported Keras is unchanged.
_UNUSED = ("pandas", "matplotlib")


@contextlib.contextmanager
def _without_unused_imports():
    blocked = [m for m in _UNUSED if "keras" not in sys.modules and m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None      # `import m` raises ImportError, which Keras takes as "not installed"
    try:
        yield
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]


def _run(ns) -> int:
    from ecgedge.quantize.analyze import analyze
    with _without_unused_imports():
        rep = analyze(ns.model, target=ns.target, all_targets=ns.all_targets, contract=ns.contract,
                      targets_file=ns.targets_file)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(rep, f, indent=2)
            f.write("\n")
    _print(rep, ns.layers)
    return 0


if __name__ == "__main__":
    main()

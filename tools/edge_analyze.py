"""edge-analyze: what a single-lead model costs on each target, in seconds, without training.

    edge-analyze pocket_k --target cortex-m7
    edge-analyze my_model.pt2 --contract my_model.toml --all-targets --json analysis.json
    edge-analyze model_int8.tflite --target cortex-m4

MODEL is a zoo name or a file: .pt2 (torch.export.save), .onnx (float or QDQ INT8), .tflite (float or full
INT8). A float model is analysed as the full-INT8 model the export would make of it (not pruned).
Exit codes: 0 analysed, 2 bad input (not a model, unsupported module, contract mismatch).
"""

from __future__ import annotations

import argparse
import json
import sys


def parse(args=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edge-analyze", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="zoo name, or a .pt2 / .onnx / .tflite model file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target", help="one target profile (see edge-export --list-targets)")
    g.add_argument("--all-targets", action="store_true", help="every target profile (the default)")
    p.add_argument("--contract", help="contract TOML of a model outside the zoo (docs/byom.md)")
    p.add_argument("--json", help="write the analysis as JSON to this file")
    p.add_argument("--targets-file", help="TOML file with extra/overriding target profiles")
    p.add_argument("--layers", type=int, default=60, help="print at most this many layer rows (default 60)")
    return p.parse_args(args)


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
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ecgedge.errors import EdgeError
    ns = parse(args)
    try:
        from ecgedge.quantize.analyze import analyze
        rep = analyze(ns.model, target=ns.target, all_targets=ns.all_targets, contract=ns.contract,
                      targets_file=ns.targets_file)
        if ns.json:
            with open(ns.json, "w") as f:
                json.dump(rep, f, indent=2)
                f.write("\n")
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _print(rep, ns.layers)
    sys.exit(0)


if __name__ == "__main__":
    main()

"""edge-export: take a model to a target (prune, distil, calibrate, INT8, validate, package).

    edge-export pocket_k --target cortex-m7
    edge-export my_model.pt2 --contract my_model.toml --target cortex-m7 --data records/
    edge-export model_int8.tflite --contract my_model.toml --target cortex-m4 --data records/

MODEL is a zoo name, or your own model file (.pt2 saved with torch.export.save, .onnx, or a full-INT8
.tflite) with its contract (docs/byom.md). Exit codes: 0 package written, 2 bad input or a model that
cannot be exported (nothing is left half-written).
"""

from __future__ import annotations

import argparse
import sys


def parse(args=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edge-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="zoo model name (e.g. pocket_k) or a .pt2 / .onnx / .tflite file")
    p.add_argument("--contract", help="contract TOML of your own model (input, outputs, labels; docs/byom.md)")
    p.add_argument("--target", help="target profile, e.g. cortex-m7 (see --list-targets)")
    p.add_argument("--checkpoint", help="float checkpoint (default: the shipped demo weights)")
    p.add_argument("--data", help="folder of WFDB/EDF/CSV/NPY records for calibration and fine-tuning")
    p.add_argument("--out", help="package folder (default dist/<model>-<target>)")
    p.add_argument("--calibrator", default="auto", help="auto|minmax|percentile|entropy|mse (default auto)")
    p.add_argument("--calib-windows", type=int, default=500, help="representative windows (default 500)")
    p.add_argument("--val-windows", type=int, default=1000, help="held-out validation windows (default 1000)")
    p.add_argument("--tflm-windows", type=int, default=None,
                   help="validation windows also run in tflite-micro (default: all)")
    p.add_argument("--finetune-windows", type=int, default=None, help="distillation windows (default: distiller's)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="distillation epochs (default: distiller's)")
    p.add_argument("--qat-epochs", type=int, default=None,
                   help="quantisation-aware fine-tuning epochs after distillation (default 3; 0: off)")
    p.add_argument("--qat-lr", type=float, default=None,
                   help="peak learning rate of the quantisation-aware epochs (default: 1e-4 when the model is its "
                        "own teacher, else a fifth of the distillation's)")
    p.add_argument("--latency-ms", type=float, default=None, help="latency budget -> MAC budget")
    p.add_argument("--flash-budget", type=int, default=None, help="model flash budget in bytes")
    p.add_argument("--ram-budget", type=int, default=None, help="model RAM (arena) budget in bytes")
    p.add_argument("--targets-file", help="TOML file with extra/overriding target profiles")
    p.add_argument("--list-targets", action="store_true", help="list target profiles and exit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sign-key", help="Ed25519 private key (PEM) to sign manifest.json")
    p.add_argument("--firmware", action="store_true", help="also build the device firmware (MCU targets)")
    p.add_argument("--optimize", default="speed", choices=("speed", "size"),
                   help="firmware: speed (widened int16 weights, lookup tables: more flash) or size (int8 weights)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(args)


def _list_targets(targets_file) -> None:
    from rich.console import Console
    from rich.table import Table

    from ecgedge.targets import load_targets
    table = Table(title="ecgedge targets")
    for col in ("name", "board", "kind", "clock MHz", "model flash", "model RAM", "MAC budget", "runtime"):
        table.add_column(col)
    for t in load_targets(targets_file).values():
        table.add_row(t.name, t.board, t.kind, f"{t.clock_hz / 1e6:g}", f"{t.model_flash_budget:,}",
                      f"{t.model_ram_budget:,}", f"{t.mac_budget:,}", t.runtime)
    Console(width=200).print(table)


def _quiet_known_warnings() -> None:
    """Library chatter that says nothing about the user's model (kept: untrained-weights warnings)."""
    import os
    import warnings
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for pattern in ("Constant folding", "Converting a tensor to a Python boolean", "Statistics for quantized inputs",
                    "Converting a tensor with requires_grad"):
        warnings.filterwarnings("ignore", message=f".*{pattern}.*")


def run(ns: argparse.Namespace) -> int:
    _quiet_known_warnings()
    from rich.console import Console

    from ecgedge import DEMO_NOTICE
    from ecgedge.errors import ConfigError
    if ns.list_targets:
        _list_targets(ns.targets_file)
        return 0
    if not ns.model or not ns.target:
        from ecgedge.models.specs import list_specs
        raise ConfigError(f"give a model ({', '.join(list_specs())}) and --target (see --list-targets)")
    from ecgedge.quantize.pipeline import ExportOptions, export_package
    console = Console(stderr=True)
    opts = ExportOptions(model=ns.model, target=ns.target, contract=ns.contract, checkpoint=ns.checkpoint,
                         data=ns.data, out=ns.out,
                         calibrator=ns.calibrator, calib_windows=ns.calib_windows, val_windows=ns.val_windows,
                         tflm_windows=ns.tflm_windows, finetune_windows=ns.finetune_windows,
                         finetune_epochs=ns.finetune_epochs, qat_epochs=ns.qat_epochs, qat_lr=ns.qat_lr, latency_ms=ns.latency_ms,
                         flash_budget=ns.flash_budget, ram_budget=ns.ram_budget, targets_file=ns.targets_file,
                         seed=ns.seed, sign_key=ns.sign_key, firmware=ns.firmware, optimize=ns.optimize,
                         progress=not ns.no_progress, log=console)
    out, rep = export_package(opts)
    console.print(summary(out, rep))
    if rep.get("notice"):
        console.print(f"[bold yellow]{rep['notice']}[/]")
    print(out)
    return 0


def summary(out, rep: dict) -> str:
    """The few lines a person reads after an export (figures that do not apply say n/a)."""
    def f(v, spec=".4f"):
        return "n/a" if v is None else format(v, spec)
    lines = [f"[green]package written[/]: {out}",
             f"  calibrator {rep['calibrator'] or 'none (INT8 as given)'}; ops {rep['n_ops']} ({', '.join(rep['ops'])})",
             f"  MACs {f(rep['macs_float'], ',')} -> {f(rep['macs_pruned'], ',')}; params {f(rep['params_float'], ',')} -> "
             f"{f(rep['params_pruned'], ',')}",
             f"  flash {rep['flash_bytes']:,} B / {rep['budget']['flash_bytes']:,}; arena {rep['arena_bytes']:,} B / "
             f"{rep['budget']['ram_bytes']:,}; fits {rep['fits']}",
             f"  AUROC float {f(rep['auroc_float'])} pruned {f(rep['auroc_pruned'])} INT8 {f(rep['auroc_int8'])}; "
             f"agreement INT8 vs pruned {f(rep['agreement_int8'])}",
             f"  latency estimate {rep['latency_ms_estimate']:.2f} ms on {rep['target']} (estimate from MACs)"]
    if "latency_ms_onnx_int8" in rep:
        lines.append(f"  ONNX latency here: float {rep['latency_ms_onnx_float']:.2f} ms, INT8 "
                     f"{rep['latency_ms_onnx_int8']:.2f} ms")
    engine = rep.get("engine")
    if engine and not engine["runs_all_ops"]:
        ops = sorted({f"{u['op']} ({u['layer']})" for u in engine["unsupported_ops"]})
        lines.append(f"  our C engine lacks: {', '.join(ops)} (tflite-micro runs them)")
    for note in rep.get("data_notes") or []:
        lines.append(f"  note: {note}")
    lines.append(f"  {rep['seconds']:.0f} s")
    return "\n".join(lines)


def main(args=None) -> None:
    from ecgedge.errors import EdgeError
    ns = parse(args)
    try:
        code = run(ns)
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()

"""edge-export: take a model to a target: prune and distil to its budget, quantise to INT8 (with
calibration and quantisation-aware epochs), validate against the float model, and write a package
(dist/<model>-<target>/: INT8 .tflite, ONNX, C arrays, manifest with hashes, report.json/html).

MODEL is a zoo name, or your own model file (.pt2 saved with torch.export.save, .onnx, or a full-INT8
.tflite) with its contract (docs/byom.md).
"""

from __future__ import annotations

import argparse
import sys

from ecgedge.tools import _cli

EXAMPLES = [
    ("edge-export pocket_k --target cortex-m7", "the demo model for a Cortex-M7: dist/pocket_k-cortex-m7/"),
    ("edge-export pocket_k --target cortex-m7 --firmware --sign-key keys/release",
     "also build the firmware ELF (text/data/bss in the report) and sign the manifest (Ed25519)"),
    ("edge-export af_lead1 --target cortex-m7 --data ../shared/data/cinc2017",
     "the AF detector, calibrated and validated on real records (CinC 2017)"),
    ("edge-export my_model.pt2 --contract my_model.toml --target cortex-m7 --data records/",
     "your own model (.pt2 / .onnx / full-INT8 .tflite) down the same road (docs/byom.md)"),
    ("edge-export --list-targets --json", "target profiles (ecgedge/targets.toml, + --targets-file) as JSON"),
]


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-export", __doc__, EXAMPLES, exit_codes={
        _cli.EXIT_OK: "the package was written (or the targets listed)",
        _cli.EXIT_USAGE: "bad input, a model that cannot fit its target, or a failed export step: one line on "
                         "stderr; nothing half-written is left"})
    p.add_argument("model", nargs="?", help="zoo model name (e.g. pocket_k, see edge-train --list) or a "
                   ".pt2 / .onnx / .tflite file")
    p.add_argument("--contract", type=_cli.existing_file,
                   help="contract TOML of your own model (input, outputs, labels; docs/byom.md)")
    p.add_argument("--target", help="target profile, e.g. cortex-m7 (see --list-targets)")
    p.add_argument("--checkpoint", type=_cli.existing_file,
                   help="float checkpoint (default: the shipped weights)")
    p.add_argument("--data", type=_cli.existing_dir,
                   help="folder of WFDB/EDF/CSV/NPY records for calibration and fine-tuning")
    p.add_argument("--out", help="package folder (default dist/<model>-<target>)")
    p.add_argument("--calibrator", default="auto", help="auto|minmax|percentile|entropy|mse (default auto)")
    p.add_argument("--calib-windows", type=_cli.positive_int, default=500,
                   help="representative windows (default 500)")
    p.add_argument("--val-windows", type=_cli.positive_int, default=1000,
                   help="held-out validation windows (default 1000)")
    p.add_argument("--tflm-windows", type=_cli.positive_int, default=None,
                   help="validation windows also run in tflite-micro (default: all)")
    p.add_argument("--finetune-windows", type=_cli.positive_int, default=None,
                   help="distillation windows (default: the distiller's)")
    p.add_argument("--finetune-epochs", type=_cli.positive_int, default=None,
                   help="distillation epochs (default: the distiller's)")
    p.add_argument("--qat-epochs", type=_cli.nonneg_int, default=None,
                   help="quantisation-aware fine-tuning epochs after distillation (default 3; 0: off)")
    p.add_argument("--qat-lr", type=_cli.positive_float, default=None,
                   help="peak learning rate of the quantisation-aware epochs (default: 1e-4 when the model is its "
                        "own teacher, else a fifth of the distillation's)")
    p.add_argument("--latency-ms", type=_cli.positive_float, default=None,
                   help="latency budget in ms -> MAC budget (default: the target's)")
    p.add_argument("--flash-budget", type=_cli.positive_int, default=None,
                   help="model flash budget in bytes (default: the target's)")
    p.add_argument("--ram-budget", type=_cli.positive_int, default=None,
                   help="model RAM (tensor arena) budget in bytes (default: the target's)")
    p.add_argument("--targets-file", type=_cli.existing_file, help="TOML file with extra/overriding target profiles")
    p.add_argument("--list-targets", action="store_true", help="list target profiles and exit")
    p.add_argument("--json", action="store_true", help="with --list-targets: print them as JSON")
    p.add_argument("--seed", type=_cli.seed, default=0,
                   help="seed of window generation, pruning and fine-tuning (default 0)")
    p.add_argument("--sign-key", type=_cli.existing_file, help="Ed25519 private key (PEM) to sign manifest.json")
    p.add_argument("--firmware", action="store_true",
                   help="also build the device firmware ELF (MCU targets with an engine core in targets.toml)")
    p.add_argument("--optimize", default="speed", choices=("speed", "size"),
                   help="firmware: speed (widened int16 weights, lookup tables: more flash) or size (int8 weights); "
                        "default speed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse(args=None) -> argparse.Namespace:
    p = parser()
    ns = p.parse_args(args)
    if ns.json and not ns.list_targets:
        p.error("--json goes with --list-targets")
    return ns


def _bytes(n: int) -> str:
    """Exact, short: 1,536 KiB rather than 1,572,864 (bytes when not a whole number of KiB)."""
    if n % 2**20 == 0:
        return f"{n >> 20:,} MiB"
    if n % 2**10 == 0:
        return f"{n >> 10:,} KiB"
    return f"{n:,} B"


def _mega(n: int) -> str:
    """Exact millions: 19.2 M, 1,200 M (all digits when not a whole number of thousands)."""
    if n % 1000:
        return f"{n:,}"
    digits = 0
    while n % 10 ** (6 - digits) and digits < 3:
        digits += 1
    return f"{n / 1e6:,.{digits}f} M"


def target_rows(targets_file=None) -> list[dict]:
    from dataclasses import asdict

    from ecgedge.targets import load_targets
    return [{**asdict(t), "mac_budget": t.mac_budget} for t in load_targets(targets_file).values()]


def targets_table(rows):
    """Reads at 80 columns: exact sizes in KiB/MiB, boards and ISA wrapped below the table."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, right in (("name", False), ("MHz", True), ("flash", True), ("RAM", True), ("MACs", True),
                       ("runtime", False)):
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    for t in rows:
        table.add_row(t["name"], f"{t['clock_hz'] / 1e6:g}", _bytes(t["model_flash_budget"]),
                      _bytes(t["model_ram_budget"]), _mega(t["mac_budget"]), t["runtime"])
    notes = Table.grid(padding=(0, 1))
    notes.add_column(no_wrap=True)
    notes.add_column(overflow="fold")
    for t in rows:
        notes.add_row(Text(t["name"], "bold"), f"{t['board']}; {t['kind']}, {t['core']}, ISA {' '.join(t['isa'])}; "
                      f"latency budget {t['latency_budget_ms']:g} ms at {t['cycles_per_mac']:g} cycles/MAC"
                      + (f"; firmware engine core {t['engine_core']}" if t.get("engine_core") else "")
                      + ("" if t["source"] == "builtin" else f"; from {t['source']}"))
    title = Text("ecgedge targets (the model's flash and RAM budgets; MACs per inference that fit the latency "
                 "budget)", "bold")
    return Group(title, table, notes)


def _list_targets(ns) -> None:
    import json

    rows = target_rows(ns.targets_file)
    if ns.json:
        print(json.dumps({"targets": rows}, indent=1))
        return
    from rich.console import Console
    Console().print(targets_table(rows))


def _quiet_known_warnings() -> None:
    """Library chatter that says nothing about the user's model, even in the log file."""
    import warnings
    for pattern in ("Constant folding", "Converting a tensor to a Python boolean", "Statistics for quantized inputs",
                    "Converting a tensor with requires_grad"):
        warnings.filterwarnings("ignore", message=f".*{pattern}.*")


def run(ns: argparse.Namespace) -> int:
    _quiet_known_warnings()
    from rich.console import Console

    from ecgedge.errors import ConfigError
    if ns.list_targets:
        _list_targets(ns)
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
    console.print(summary(out, rep), soft_wrap=True)  # one line each, even in a pipe (logs, tests)
    if rep.get("notice"):
        console.print(f"[bold yellow]{rep['notice']}[/]")
    print(out)
    return 0


def summary(out, rep: dict) -> str:
    """The few lines a person reads after an export (figures that do not apply say n/a)."""
    def _arena(r):   # the arena the RAM budget was checked with; tflite-micro's beside it when that is another
        checked = r["ram_check"]["arena_bytes"]
        if r["arena_bytes_engine"] is None:
            return f"{checked:,} B"
        return f"{checked:,} B (our engine; tflite-micro {r['arena_bytes']:,} B)"

    def f(v, spec=".4f"):
        return "n/a" if v is None else format(v, spec)
    lines = [f"[green]package written[/]: {out}",
             f"  calibrator {rep['calibrator'] or 'none (INT8 as given)'}; ops {rep['n_ops']} ({', '.join(rep['ops'])})",
             f"  MACs {f(rep['macs_float'], ',')} -> {f(rep['macs_pruned'], ',')}; params {f(rep['params_float'], ',')} -> "
             f"{f(rep['params_pruned'], ',')}",
             f"  flash {rep['flash_bytes']:,} B / {rep['budget']['flash_bytes']:,}; arena {_arena(rep)} / "
             f"{rep['budget']['ram_bytes']:,}; fits {rep['fits']}",
             f"  AUROC float {f(rep['auroc_float'])} pruned {f(rep['auroc_pruned'])} INT8 {f(rep['auroc_int8'])}; "
             f"agreement INT8 vs pruned {f(rep['agreement_int8'])}"
             + (f" (input steps alone {f(rep['agreement_input_int8'])})" if rep.get("agreement_input_int8") is not None
                else ""),
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
    ns = parse(args)
    sys.exit(_cli.run("edge-export", lambda: run(ns), verbose=ns.verbose, quiet=not ns.list_targets))


if __name__ == "__main__":
    main()

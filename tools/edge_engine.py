"""edge-engine: our INT8 C engine on its own, for any full-INT8 .tflite (ECG or not).

    edge-engine ops [--core C] [--json]
    edge-engine generate MODEL.tflite --core C --out DIR
    edge-engine verify MODEL.tflite --core C [--inputs N | --data FILE.npy] [--json FILE] [--reference]

`verify` builds the engine for core C (host executable, or firmware run in QEMU), runs it on N random inputs
(default 10) or the given ones, compares every output byte with tflite-micro's interpreter and reports
bit_exact_fraction, instructions per inference and per MAC (QEMU, exact), per-layer instructions, arena
(ours and tflite-micro's smallest), flash and MACs. Exit 0 bit-exact, 1 not bit-exact, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ecgedge.errors import ConfigError
from ecgedge.tools import _cli


EXAMPLES = [
    ("edge-engine ops --core cortex-m7", "the supported TFLite ops, optimised or reference kernel on that core"),
    ("edge-engine verify dist/pocket_k-cortex-m7/model_int8.tflite --core cortex-m7",
     "build for the core, run 10 random inputs in QEMU, compare every output byte with tflite-micro"),
    ("edge-engine generate model_int8.tflite --core cortex-m4 --out engine_m4",
     "the engine's C sources for the model (model.c/.h, kernels/, BUILD.txt)"),
]
EXIT_CODES = {
    _cli.EXIT_OK: "success (verify: every output byte equals tflite-micro's)",
    _cli.EXIT_FAILED: "verify: some output differs from tflite-micro (the table says which inputs)",
}


def parser() -> argparse.ArgumentParser:
    from ecgedge.firmware_bridge.cores import cores

    names = ", ".join(cores())
    p = _cli.make_parser("edge-engine", __doc__, EXAMPLES, exit_codes=EXIT_CODES, verbose=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="ops, generate or verify (edge-engine COMMAND --help)")
    o = _cli.add_command(sub, "ops", "the supported TFLite ops and which have an optimised kernel per core",
                         "The supported TFLite ops and, per core, whether an optimised kernel runs them.",
                         EXAMPLES[:1], exit_codes={_cli.EXIT_OK: "success"})
    o.add_argument("--core", default=None, help=f"one core ({names})")
    o.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g = _cli.add_command(sub, "generate", "write the engine's C sources for a model",
                         "Write the engine's C sources for a full-INT8 .tflite, for one core.", EXAMPLES[2:],
                         exit_codes={_cli.EXIT_OK: "the sources were written"})
    g.add_argument("model", type=Path, help="full-INT8 .tflite")
    g.add_argument("--core", required=True, help=f"core to build for ({names})")
    g.add_argument("--out", required=True, type=Path, help="output folder (created; must be empty if it exists)")
    v = _cli.add_command(sub, "verify", "build, run and compare with tflite-micro, bit for bit",
                         "Build the engine for a core, run it (host or QEMU) and compare every output byte with "
                         "tflite-micro.", EXAMPLES[1:2], exit_codes=EXIT_CODES)
    v.add_argument("model", type=Path, help="full-INT8 .tflite (or a package folder with model_int8.tflite)")
    v.add_argument("--core", required=True, help=f"core ({names})")
    src = v.add_mutually_exclusive_group()
    src.add_argument("--inputs", type=_cli.positive_int, default=10, help="number of random inputs (default 10)")
    src.add_argument("--data", type=_cli.as_path(_cli.existing_file), default=None,
                     help=".npy of inputs [N, *input shape] in the model's type")
    v.add_argument("--json", type=Path, default=None, help="write the report as JSON to this file")
    v.add_argument("--seed", type=_cli.seed, default=0, help="seed of the random inputs")
    v.add_argument("--reference", action="store_true", help="verify the reference kernels instead of the optimised")
    v.add_argument("--keep", type=Path, default=None, help="keep the build in this folder")
    v.add_argument("--fault", action="append", default=[], metavar="ECG_FAULT_...",
                   help="build with an injected fault (negative tests; e.g. ECG_FAULT_REQUANT_SHIFT)")
    return p


def parse(args=None) -> argparse.Namespace:
    return parser().parse_args(args)


def ops_rows(core: str | None) -> list[dict]:
    from ecgedge.firmware_bridge.cores import cores, get_core
    from ecgedge.firmware_bridge.ops import kernel_table, supported_ops

    table = kernel_table()
    chosen = [get_core(core)] if core else list(cores().values())
    rows = []
    for op in supported_ops():
        paths = table.get(op, {}).get("paths", [])
        rows.append({"op": op, "reference": True, "optimised_paths": paths, "what": table.get(op, {}).get("what", ""),
                     "cores": {c.name: ("optimised" if c.kernels in paths else "reference") for c in chosen}})
    return rows


def _print_ops(rows: list[dict], core: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    where = f" on {core}" if core else ""
    t = Table(title=f"edge-engine ops{where} ({len(rows)} ops; every op has a reference kernel)")
    t.add_column("op")
    names = list(rows[0]["cores"]) if rows else []
    for n in names:
        t.add_column(n)
    t.add_column("optimised kernel")
    for r in rows:
        t.add_row(r["op"], *[("opt" if r["cores"][n] == "optimised" else "ref") for n in names], r["what"])
    Console().print(t)


def cmd_generate(args) -> int:
    from ecgedge.firmware_bridge.build import C_DIR, COMMON_CFLAGS, KERNELS, generate_into
    from ecgedge.firmware_bridge.cores import get_core

    core = get_core(args.core)
    if not args.model.is_file():
        raise ConfigError(f"model {str(args.model)!r}: no such file (expected a .tflite)")
    if args.out.exists() and any(args.out.iterdir()):
        raise ConfigError(f"--out {str(args.out)!r}: folder exists and is not empty")
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        gen, _ = generate_into(args.model, tmp, kernels=core.kernels)
        kernels = tmp / "kernels"
        kernels.mkdir()
        for f in sorted(C_DIR.iterdir()):
            if f.name in KERNELS or (f.suffix == ".h" and f.name.startswith("ecg_") and f.name != "ecg_hal.h"):
                shutil.copy2(f, kernels / f.name)
        flags = [*core.cflags, "-O2", *COMMON_CFLAGS, "-DECG_OPTIMIZED", f"-DECG_KERNELS_{core.kernels.upper()}=1"]
        (tmp / "BUILD.txt").write_text(
            f"Engine for core {core.name} ({core.kernels} kernels), model {args.model.name} "
            f"(sha256 {gen.model.sha256}).\nCompile model.c and kernels/*.c with:\n  "
            f"{'gcc' if core.is_host else 'arm-none-eabi-gcc'} {' '.join(flags)} -I. -Ikernels -c ...\n"
            f"Call ecg_model_invoke(in, out) (model.h); without -DECG_OPTIMIZED the reference kernels run.\n"
            f"Arena {gen.arena_bytes} B (static, in model.c), constants {gen.const_bytes} B, {gen.macs} MACs.\n")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.exists():
            args.out.rmdir()
        tmp.rename(args.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {args.out}: model.c, model.h, layers.json, kernels/ ({len(gen.layers)} layers, arena "
          f"{gen.arena_bytes} B, constants {gen.const_bytes} B) for {core.name}")
    return 0


def _print_verify(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"edge-engine verify {Path(rep['model']).name} on {rep['core']}", show_header=False)
    ipi = rep["instructions_per_inference"]
    rows = [("bit_exact_fraction", f"{rep['bit_exact_fraction']:.4f} ({rep['inputs']} inputs, every output byte "
                                   "vs tflite-micro)"),
            ("kernels", f"{'optimised' if rep['optimized'] else 'reference'} ({rep['kernels']} path)"),
            ("instructions / inference", f"{ipi:,} (QEMU plugin, exact)" if ipi is not None else "n/a (host build)"),
            ("instructions / MAC", f"{rep['instructions_per_mac']:.3f}" if rep["instructions_per_mac"] else "n/a"),
            ("MACs", f"{rep['macs']:,}"),
            ("arena", f"{rep['arena_bytes']:,} B (tflite-micro smallest: {rep['arena_bytes_tflm']:,} B, ratio "
                      f"{rep['arena_ratio']:.3f})" if rep["arena_bytes_tflm"] else f"{rep['arena_bytes']:,} B"),
            ("flash", f"{rep['flash_bytes']:,} B (text+data)" if rep["flash_bytes"] is not None else
             f"n/a (host build; constants {rep['const_bytes']:,} B)")]
    for k, v in rows:
        t.add_row(k, v)
    con.print(t)
    if ipi is not None:
        lt = Table(title="per layer (instructions, exact)")
        for c in ("#", "op", "layer", "MACs", "instructions", "per MAC"):
            lt.add_column(c)
        for r in rep["layers"]:
            n = r.get("instructions", 0)
            lt.add_row(str(r["index"]), r["op"], r["summary"], f"{r['macs']:,}", f"{n:,}",
                       f"{n / r['macs']:.2f}" if r["macs"] else "")
        con.print(lt)
    if rep["bit_exact_fraction"] < 1.0:
        con.print(f"[red]NOT bit-exact[/]: inputs {rep['mismatched_inputs'][:20]} differ from tflite-micro")


def cmd_verify(args) -> int:
    from ecgedge.firmware_bridge.verify import verify

    if args.data is None and args.inputs < 1:
        raise ConfigError(f"--inputs {args.inputs}: expected a positive number")
    from ecgedge.firmware_bridge.build import FAULTS

    bad = [f for f in args.fault if f not in FAULTS]
    if bad:
        raise ConfigError(f"--fault {bad[0]}: expected one of {', '.join(FAULTS)}")
    rep = verify(args.model, core=args.core, n_inputs=args.inputs, data=args.data, seed=args.seed,
                 optimized=not args.reference, out_dir=args.keep, defines={f: True for f in args.fault})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".partial")
        tmp.write_text(json.dumps(rep, indent=1))
        tmp.replace(args.json)
    _print_verify(rep)
    return 0 if rep["bit_exact_fraction"] == 1.0 else 1


def _run(args) -> int:
    if args.command == "ops":
        rows = ops_rows(args.core)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            _print_ops(rows, args.core)
        return 0
    if args.command == "generate":
        return cmd_generate(args)
    return cmd_verify(args)


def main(argv=None) -> int:
    args = parse(argv)
    sys.exit(_cli.run("edge-engine", lambda: _run(args), verbose=getattr(args, "verbose", False)))


if __name__ == "__main__":
    main()

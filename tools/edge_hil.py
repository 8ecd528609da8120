"""edge-hil: the hardware-in-the-loop bench. Streams held-out windows through a device (a real board, the
firmware of a Cortex-M core under QEMU, the simulator) and checks its INT8 outputs against the host's
tflite-micro reference and the float model, sample integrity and latency; writes JUnit XML, hil_report.json
and report.html, and judges the gates of hil_tests/gates.toml. `edge-hil matrix` exports (cached) and benches
every model x target x device into one summary table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ecgedge.tools import _cli

RUN_EXAMPLES = [
    ("edge-hil run --model dist/pocket_k-cortex-m7 --device qemu://cortex-m7",
     "200 held-out synthetic windows on the emulated Cortex-M7 (instruction counts, bit-exactness, gates)"),
    ("edge-hil run --model dist/af_lead1-cortex-m7 --device qemu://cortex-m7 --data ../shared/data/cinc2017",
     "every window of the real records (labels from REFERENCE.csv)"),
    ("edge-hil run --model dist/pocket_k-cortex-m7 --device serial:///dev/ttyACM0 --report hil_reports/board",
     "a real board on a serial port"),
]
MATRIX_EXAMPLES = [
    ("edge-hil matrix --models pocket_k,af_lead1 --targets cortex-m7,cortex-m4 --devices host,qemu",
     "export (cached) and bench every cell; matrix.json + matrix.html in hil_reports/matrix"),
    ("edge-hil matrix --models pocket_k --targets cortex-m7 --devices host --workers 2",
     "one cell on this machine (tflite-micro in-process), two worker processes"),
]
MATRIX_EXIT = {
    _cli.EXIT_OK: "every gate of every cell passed",
    _cli.EXIT_FAILED: "a gate was crossed in some cell (matrix.html says which)",
    _cli.EXIT_USAGE: "bad input, or a cell that could not be exported or benched",
}
RUN_EXIT = {
    _cli.EXIT_OK: "every gate passed",
    _cli.EXIT_FAILED: "a gate was crossed (the reports say which)",
    _cli.EXIT_USAGE: "bad input, a refused package, or a device that stopped answering (the partial report is "
                     "still written)",
}


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-hil", __doc__, [(cmd, what) for cmd, what in RUN_EXAMPLES[:2]],
                         exit_codes=RUN_EXIT, verbose=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="run: the bench (edge-hil run --help); matrix: every model x target x device "
                                "(edge-hil matrix --help)")
    r = _cli.add_command(sub, "run", "run the bench on a device and write reports",
                         "Run the HIL bench on a device and write JUnit XML, hil_report.json and report.html.",
                         RUN_EXAMPLES, exit_codes=RUN_EXIT)
    r.add_argument("--model", required=True, type=_cli.as_path(_cli.existing_dir),
                   help="model package folder (dist/<model>-<target>)")
    r.add_argument("--device", required=True,
                   help="qemu://cortex-m7, sim://pocket_k?..., serial:///dev/ttyACM0, socket://HOST:PORT or host")
    r.add_argument("--windows", type=_cli.positive_int, default=None,
                   help="number of windows (default 200 synthetic; with --data: all windows of the records)")
    r.add_argument("--data", type=_cli.as_path(_cli.existing_dir), default=None,
                   help="folder of WFDB/EDF/CSV/.npy records with labels.csv or REFERENCE.csv: every labelled record "
                        "unless --records names some")
    r.add_argument("--labels", type=_cli.as_path(_cli.existing_file), default=None,
                   help="labels CSV (record,label) if not in --data")
    r.add_argument("--records", type=_cli.as_path(_cli.existing_file), default=None,
                   help="file listing the records to use, one a line ('#' comments ignored), e.g. a package's "
                        "validation_records.txt")
    r.add_argument("--report", type=Path, default=None,
                   help="report folder (default hil_reports/<model>-<device>-<time>)")
    r.add_argument("--gates", type=_cli.as_path(_cli.existing_file), default=None,
                   help="gates TOML (default hil_tests/gates.toml)")
    r.add_argument("--timeout", type=_cli.positive_float, default=10.0,
                   help="seconds to wait for any device answer (default 10)")
    r.add_argument("--seed", type=_cli.seed, default=0, help="seed of the held-out synthetic subjects (default 0)")
    r.add_argument("--cpi", type=_cli.positive_float, default=None,
                   help="cycles per instruction assumed to turn emulated instruction counts into ms (default 1.0)")
    r.add_argument("--trust", type=_cli.as_path(_cli.existing_path), default=None,
                   help="public key, or a folder of *.pub keys (and a `revoked` list): require a valid package signature")
    r.add_argument("--allow-unsigned", action="store_true",
                   help="with --trust, still run an unsigned package (marked UNSIGNED in every report)")
    r.add_argument("--checkpoint", type=_cli.as_path(_cli.existing_file), default=None,
                   help="float reference: a zoo checkpoint (.pt), or the user's own .pt2 / .onnx model for a "
                        "package exported from a model file (default: the zoo's shipped weights)")
    r.add_argument("--no-float", action="store_true", help="skip the float (torch) reference")
    r.add_argument("--no-integrity", action="store_true", help="skip the streaming sample-integrity phase")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--workers", type=_cli.positive_int, default=None,
                   help="local worker processes, each with its own device, the windows sharded over them "
                        "(default one per core; a physical device runs one shard at a time)")
    r.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run the shards as Ray tasks (pip install 'ecgedge[farm]'): auto = a running cluster or "
                        "a local one; a device URL's ?resource=NAME places its shards on the nodes with it")
    r.add_argument("--shards", type=_cli.positive_int, default=None,
                   help="number of shards (default: one per worker, or per CPU / resource of the Ray cluster)")
    m = _cli.add_command(sub, "matrix", "export (cached) and bench every model x target x device; one summary table",
                         "Export (cached by a hash of model, target, options, checkpoint and the exporter's sources) "
                         "and bench every model x target x device; writes matrix.json and matrix.html.",
                         MATRIX_EXAMPLES, exit_codes=MATRIX_EXIT)
    m.add_argument("--models", required=True, help="comma-separated zoo models (or package folders)")
    m.add_argument("--targets", default="", help="comma-separated targets (edge-export --list-targets)")
    m.add_argument("--devices", required=True,
                   help="comma-separated device URLs; `qemu` = qemu://<target>, `{target}` is replaced")
    m.add_argument("--data", type=_cli.as_path(_cli.existing_dir), default=None,
                   help="folder of records with labels.csv (default synthetic)")
    m.add_argument("--labels", type=_cli.as_path(_cli.existing_file), default=None,
                   help="labels CSV (record,label) if not in --data")
    m.add_argument("--windows", type=_cli.positive_int, default=None,
                   help="windows per cell (default 200 synthetic; with --data: all windows of the records)")
    m.add_argument("--out", type=Path, default=Path("hil_reports/matrix"), help="summary and cell reports folder")
    m.add_argument("--checkpoint", type=_cli.as_path(_cli.existing_file), default=None,
                   help="float checkpoint for every export")
    m.add_argument("--export-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an edge-export option for every export (calib_windows=32, calibrator=minmax, ...)")
    m.add_argument("--workers", type=_cli.positive_int, default=None,
                   help="worker processes per bench (default one per core)")
    m.add_argument("--ray", default=None, metavar="auto|ADDRESS", help="run every bench's shards on Ray")
    m.add_argument("--no-float", action="store_true", help="skip the float (torch) reference")
    m.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse(args=None) -> argparse.Namespace:
    return parser().parse_args(args)


def _print_summary(outcome) -> None:
    from rich.console import Console
    from rich.table import Table

    from ecgedge.hil_tests.report import summary_rows

    con = Console(stderr=False)
    rep = outcome.report
    if rep.get("notice"):
        con.print(f"[bold yellow]{rep['notice']}[/]")
    if rep.get("unsigned"):
        con.print(f"[bold red]{rep.get('signature')}: no package signature was verified[/]", highlight=False)
    t = Table(title="HIL bench", show_header=False)
    for k, v in summary_rows(rep):
        t.add_row(k, v)
    con.print(t)
    g = Table(title="gates")
    for col in ("gate", "value", "threshold", "result"):
        g.add_column(col)
    for r in outcome.gates:
        word = "skipped" if r.passed is None else ("pass" if r.passed else "[red]FAIL[/]")
        g.add_row(r.name, str(r.value), str(r.threshold), word)
    con.print(g)
    con.print(f"reports in {outcome.report_dir}")


def _split(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def matrix(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ecgedge.hil_tests.matrix import MatrixConfig, parse_export_options, run_matrix

    windows = args.windows if (args.windows is not None or args.data is not None) else 200
    summary = run_matrix(MatrixConfig(
        models=_split(args.models), targets=_split(args.targets), devices=_split(args.devices), out_dir=args.out,
        data_dir=args.data, labels_file=args.labels, windows=windows, checkpoint=args.checkpoint,
        export_options=parse_export_options(args.export_option), workers=args.workers or (os.cpu_count() or 1),
        ray=args.ray, float_reference=not args.no_float, progress=not args.no_progress))
    t = Table(title="HIL bench matrix")
    cols = ("model", "target", "device", "bit_exact_fraction", "auroc_device", "agreement", "latency_ms_p99",
            "gates_passed")
    for c in cols:
        t.add_column(c)
    for cell in summary["cells"]:
        t.add_row(*[("ERROR" if k == "gates_passed" and cell.get("error") else str(cell.get(k))) for k in cols])
    con = Console()
    con.print(t)
    con.print(f"summary in {args.out / 'matrix.html'} and {args.out / 'matrix.json'}")
    return _cli.EXIT_USAGE if summary["errors"] else _cli.EXIT_OK if summary["all_passed"] else _cli.EXIT_FAILED


def main(argv=None) -> int:
    args = parse(argv)
    sys.exit(_cli.run("edge-hil", lambda: matrix(args) if args.command == "matrix" else _run(args),
                      verbose=args.verbose))


def _run(args) -> int:
    from ecgedge.errors import ConfigError
    from ecgedge.hil_tests.bench import DEFAULT_CPI, BenchConfig, run_bench

    records = None
    if args.records is not None:
        try:
            records = [ln.split("#")[0].strip() for ln in args.records.read_text().splitlines()
                       if ln.split("#")[0].strip()]
        except OSError as e:
            raise ConfigError(f"--records {str(args.records)!r}: {e}") from None
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    windows = args.windows if (args.windows is not None or args.data is not None) else 200
    cfg = BenchConfig(model_dir=args.model, device_url=args.device, windows=windows, data_dir=args.data,
                      labels_file=args.labels, records=records, report_dir=args.report, gates_file=args.gates,
                      timeout_s=args.timeout, seed=args.seed, cpi=args.cpi or DEFAULT_CPI, trust=args.trust,
                      checkpoint=args.checkpoint, allow_unsigned=args.allow_unsigned or args.trust is None,
                      float_reference=not args.no_float,
                      integrity=not args.no_integrity, progress=not args.no_progress,
                      workers=workers, ray=args.ray, shards=args.shards)
    outcome = run_bench(cfg)
    _print_summary(outcome)
    if outcome.error:
        print(f"error: {outcome.error} (partial report in {outcome.report_dir})", file=sys.stderr)
        return _cli.EXIT_USAGE
    if outcome.failed_gates:
        print(f"gates crossed: {', '.join(outcome.failed_gates)}", file=sys.stderr)
        return _cli.EXIT_FAILED
    return _cli.EXIT_OK


if __name__ == "__main__":
    main()

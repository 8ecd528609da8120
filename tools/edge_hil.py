"""edge-hil: the hardware-in-the-loop bench.

    edge-hil run --model dist/pocket_k-cortex-m7 --device qemu://cortex-m7 [--windows 200] [--report DIR]

Exit 0 when every gate passes, 1 when a gate is crossed, 2 on an error (a device that stopped answering
included: the partial report is still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecgedge.errors import EdgeError


def parse(args=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edge-hil", description="Hardware-in-the-loop bench for ecgedge model packages")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the bench on a device and write reports")
    r.add_argument("--model", required=True, type=Path, help="model package folder (dist/<model>-<target>)")
    r.add_argument("--device", required=True,
                   help="qemu://cortex-m7, sim://pocket_k?..., serial:///dev/ttyACM0, socket://HOST:PORT or host")
    r.add_argument("--windows", type=int, default=None,
                   help="number of windows (default 200 synthetic; with --data: all windows of the records)")
    r.add_argument("--data", type=Path, default=None,
                   help="folder of WFDB/EDF/CSV/.npy records with labels.csv or REFERENCE.csv: every labelled record "
                        "unless --records names some")
    r.add_argument("--labels", type=Path, default=None, help="labels CSV (record,label) if not in --data")
    r.add_argument("--records", type=Path, default=None,
                   help="file listing the records to use, one a line ('#' comments ignored), e.g. a package's "
                        "validation_records.txt")
    r.add_argument("--report", type=Path, default=None,
                   help="report folder (default hil_reports/<model>-<device>-<time>)")
    r.add_argument("--gates", type=Path, default=None, help="gates TOML (default hil_tests/gates.toml)")
    r.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for any device answer")
    r.add_argument("--seed", type=int, default=0, help="seed of the held-out synthetic subjects")
    r.add_argument("--cpi", type=float, default=None,
                   help="cycles per instruction assumed to turn emulated instruction counts into ms (default 1.0)")
    r.add_argument("--trust", type=Path, default=None,
                   help="public key, or a folder of *.pub keys (and a `revoked` list): require a valid package signature")
    r.add_argument("--allow-unsigned", action="store_true",
                   help="with --trust, still run an unsigned package (marked UNSIGNED in every report)")
    r.add_argument("--checkpoint", type=Path, default=None,
                   help="float reference checkpoint (default: the zoo's shipped weights for the package's model)")
    r.add_argument("--no-float", action="store_true", help="skip the float (torch) reference")
    r.add_argument("--no-integrity", action="store_true", help="skip the streaming sample-integrity phase")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(args)


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


def main(argv=None) -> int:
    args = parse(argv)
    try:
        from ecgedge.hil_tests.bench import DEFAULT_CPI, BenchConfig, run_bench

        records = None
        if args.records is not None:
            try:
                records = [ln.split("#")[0].strip() for ln in args.records.read_text().splitlines() if ln.split("#")[0].strip()]
            except OSError as e:
                from ecgedge.errors import ConfigError
                raise ConfigError(f"--records {str(args.records)!r}: {e}") from None
        if args.windows is not None and args.windows < 1:
            from ecgedge.errors import ConfigError
            raise ConfigError(f"--windows {args.windows}: expected a positive number")
        windows = args.windows if (args.windows is not None or args.data is not None) else 200
        cfg = BenchConfig(model_dir=args.model, device_url=args.device, windows=windows, data_dir=args.data,
                          labels_file=args.labels, records=records, report_dir=args.report, gates_file=args.gates,
                          timeout_s=args.timeout, seed=args.seed, cpi=args.cpi or DEFAULT_CPI, trust=args.trust,
                          checkpoint=args.checkpoint, allow_unsigned=args.allow_unsigned or args.trust is None,
                          float_reference=not args.no_float,
                          integrity=not args.no_integrity, progress=not args.no_progress)
        outcome = run_bench(cfg)
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _print_summary(outcome)
    if outcome.error:
        print(f"error: {outcome.error} (partial report in {outcome.report_dir})", file=sys.stderr)
        sys.exit(2)
    if outcome.failed_gates:
        print(f"gates crossed: {', '.join(outcome.failed_gates)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()

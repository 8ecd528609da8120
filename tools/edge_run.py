"""edge-run: the handheld runtime. Streams lead-I from a device, infers live, records every sample.

    edge-run --model dist/pocket_k-cortex-m7 --source 'sim://pocket_k?k=6.2&speed=20' --duration 60 --out session/
    edge-run --model DIR --source serial:///dev/ttyACM0 --trust key.pub --out session/

Sources: serial://, socket://HOST:PORT, sim://, qemu://cortex-m7?package=DIR, ble://, loop://, spy://<url>.
Writes OUT/results.jsonl, OUT/summary.json, OUT/raw.i16 + raw.json (crash-safe) and OUT/record.hea/.dat.
Sessions are never overwritten: without --out each session gets a new folder sessions/<UTC time>-<model>/;
an --out that already holds a session is refused (exit 2) unless --resume appends to it.
"""

from __future__ import annotations

import argparse
import sys

from ecgedge.errors import ConfigError, EdgeError


def parse(args=None):
    p = argparse.ArgumentParser(prog="edge-run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file with any of these options (e.g. handheld.toml); flags override it")
    p.add_argument("--model", help="model package folder (edge-export output)")
    p.add_argument("--source", help="device URL")
    p.add_argument("--out", default=None,
                   help="session folder; one that already holds a session is refused (see --resume). "
                        "Default: a new folder SESSIONS/<UTC time>-<model>/")
    p.add_argument("--sessions", default="sessions", help="where new session folders go (default ./sessions)")
    p.add_argument("--resume", action="store_true",
                   help="append to the session in --out (after a resume marker) instead of refusing it")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of signal")
    p.add_argument("--trust", help="Ed25519 public key (PEM), or a folder of *.pub keys with an optional `revoked` "
                                   "list of fingerprints: require a valid package signature by a trusted key")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="with --trust, still run an unsigned package (marked 'unsigned' in every result)")
    p.add_argument("--hop", type=int, default=None, help="window hop in model samples (default: the window)")
    p.add_argument("--infer", default="litert", choices=["litert", "onnxruntime", "device"],
                   help="where the model runs (default litert: the package's INT8 .tflite on this host)")
    p.add_argument("--flush-interval", type=float, default=1.0, help="recording flush period, wall seconds")
    p.add_argument("--max-record-mb", type=float, default=None, help="stop recording (cleanly) beyond this size")
    p.add_argument("--min-free-mb", type=float, default=None,
                   help="stop recording (cleanly) when the output filesystem has less than this free")
    p.add_argument("--no-record", action="store_true", help="do not record raw samples")
    p.add_argument("--stall-timeout", type=float, default=3.0, help="seconds without frames before reconnecting")
    p.add_argument("--ui", metavar="HOST:PORT", help="serve the live screen on this address")
    p.add_argument("--quiet", action="store_true", help="no live view; only the summary line")
    a = p.parse_args(args)
    if a.config:
        _merge_config(p, a)
    missing = [f"--{k}" for k in ("model", "source") if not getattr(a, k)]
    if missing:
        p.error(f"{' and '.join(missing)} required (as flags or in --config)")
    return a


def _merge_config(parser, a) -> None:
    """Fill options left at their defaults from a TOML file (keys as the flags, '-' or '_')."""
    import tomllib

    try:
        with open(a.config, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"error: --config {a.config}: {e}", file=sys.stderr)
        sys.exit(2)
    cfg = cfg.get("edge-run", cfg)
    for key, value in cfg.items():
        dest = key.replace("-", "_")
        if not hasattr(a, dest) or dest == "config":
            print(f"error: --config {a.config}: unknown option {key!r}", file=sys.stderr)
            sys.exit(2)
        if getattr(a, dest) == parser.get_default(dest):
            setattr(a, dest, value)


def _live_printer(console, quiet: bool):
    state = {"n": 0}

    def on_event(kind, data):
        if kind == "recording_stopped":  # shown even with --quiet
            console.print(f"[bold red]RECORDING STOPPED: {data['reason']} ({data['samples_kept']} samples kept "
                          "intact); the live view and results continue[/]", highlight=False)
        if kind == "session_folder":  # shown even with --quiet: where this session goes
            at = data["resumed_at_sample"]
            console.print(f"session folder: {data['path']}" + (f" (resumed at sample {at})" if at else ""),
                          highlight=False)
        if quiet:
            return
        if kind == "result":
            sqi = data["sqi"]
            if data["skipped"]:
                txt = f"skipped ({', '.join(sqi['reasons'])})"
            else:
                parts = [f"{k}={v:.3f}" for k, v in data["scores"].items()]
                dec = [k for k, v in data.get("decisions", {}).items() if v]
                txt = " ".join(parts) + (f"  positive: {', '.join(dec)}" if dec else "")
            hr = sqi.get("hr_bpm")
            console.print(f"[{data['window_start_s']:8.1f} s] HR {hr if hr else '--'}  SQI "
                          f"{'ok' if sqi['ok'] else 'low'}  {txt}", highlight=False)
        elif kind == "gap":
            console.print(f"[yellow]gap: {data['length']} samples missing from sample {data['start_sample']}[/]")
        elif kind == "disconnected":
            console.print(f"[red]link lost: {data['error']}; reconnecting[/]")
        elif kind == "connected":
            info = data["info"]
            console.print(f"connected: {info.name}, {info.sample_rate_hz} Hz, {info.uv_per_lsb:g} µV/LSB")
    return on_event


def _number(a, name: str):
    """A number option as given (a TOML config may hold a string: named in the error, not a traceback)."""
    v = getattr(a, name)
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v
    raise ConfigError(f"--{name.replace('_', '-')} {v!r}: expected a number")


def _options(a):
    from pathlib import Path

    from ecgedge.edge_runtime.options import SessionOptions  # light: no numpy/scipy before the numbers are checked

    mb = {k: _number(a, k) for k in ("max_record_mb", "min_free_mb")}
    opts = SessionOptions(source=a.source, out_dir=Path(a.out) if a.out else None, sessions_root=Path(a.sessions),
                          resume=a.resume, duration_s=_number(a, "duration"), hop=_number(a, "hop"), infer=a.infer,
                          flush_interval_s=_number(a, "flush_interval"),
                          max_record_bytes=None if mb["max_record_mb"] is None else mb["max_record_mb"] * 1e6,
                          min_free_bytes=None if mb["min_free_mb"] is None else mb["min_free_mb"] * 1e6,
                          record=not a.no_record, stall_timeout_s=_number(a, "stall_timeout"))
    opts.validate()
    if opts.max_record_bytes is not None:
        opts.max_record_bytes = int(opts.max_record_bytes)
    if opts.min_free_bytes is not None:
        opts.min_free_bytes = int(opts.min_free_bytes)
    return opts


def _ui_address(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--ui {text!r}: expected HOST:PORT with a port 0..65535")
    return host or "127.0.0.1", int(port)


async def _run(a, console):
    import asyncio
    import signal

    opts = _options(a)  # every number and the output folder are checked before any work (and any heavy import)
    ui_addr = _ui_address(a.ui) if a.ui else None

    from ecgedge.contract.package import load_package
    from ecgedge.edge_runtime.session import Session
    allow_unsigned = a.allow_unsigned or a.trust is None
    pkg = load_package(a.model, trust=a.trust, allow_unsigned=allow_unsigned)
    unsigned = not pkg.signed  # no signature verified: say so in every result and in summary.json
    if pkg.notice:
        console.print(f"[bold yellow]{pkg.notice}[/]")
    if unsigned:
        why = "--allow-unsigned" if a.trust else "no --trust key given"
        console.print(f"[bold red]UNSIGNED package: running without a verified signature ({why})[/]")
    opts.unsigned = unsigned
    printer = _live_printer(console, a.quiet)
    ui = None
    hooks = [printer]
    if ui_addr:
        from ecgedge.edge_runtime.ui import LiveUi

        ui = LiveUi(ui_addr[0], ui_addr[1], pkg)
        await ui.start()
        hooks.append(ui.on_event)

    def on_event(kind, data):
        for h in hooks:
            h(kind, data)

    session = Session(pkg, opts, on_event)
    if ui is not None:
        ui.session = session
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        summary = await session.run(stop)
    finally:
        if ui is not None:
            await ui.stop()
    return summary


def main(args=None):
    a = parse(args)
    import asyncio
    import logging

    from rich.console import Console

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    try:
        summary = asyncio.run(_run(a, console))
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    lat = summary.get("latency_ms") or {}
    console.print(f"session: {summary['seconds']:.1f} s of signal, received {summary['samples_received']}, "
                  f"lost {summary['samples_lost']} in {len(summary['gaps'])} gaps, windows {summary['windows']} "
                  f"(skipped {summary['windows_skipped_low_quality']}), latency p50 {lat.get('p50', 0):.2f} ms",
                  highlight=False)
    if summary.get("notice"):
        console.print(f"[bold yellow]{summary['notice']}[/]")
    if summary.get("unsigned"):
        console.print("[bold red]results come from an UNSIGNED package[/]")
    console.print(f"wrote {summary['out']}/summary.json and results.jsonl"
                  + (f" (resumed at sample {summary['start_sample']})" if summary.get("resumed") else ""))
    return 0


if __name__ == "__main__":
    main()

"""edge-run: the handheld runtime. Streams lead-I from a device, filters, windows and infers live, and
records every sample.

Sources: serial://, socket://HOST:PORT, sim://, qemu://cortex-m7?package=DIR, ble://, loop://, spy://<url>.
Writes OUT/results.jsonl, OUT/summary.json, OUT/raw.i16 + raw.json (crash-safe) and OUT/record.hea/.dat.
Sessions are never overwritten: without --out each session gets a new folder sessions/<UTC time>-<model>/;
an --out that already holds a session is refused (exit 2) unless --resume appends to it.
"""

from __future__ import annotations

import argparse
import sys

from ecgedge.errors import ConfigError
from ecgedge.tools import _cli

EXAMPLES = [
    ("edge-run --model dist/pocket_k-cortex-m7 --source 'sim://pocket_k?k=6.2&speed=20' --duration 60",
     "a simulated subject (K+ 6.2 mmol/L) at 20x real time, 60 s of signal, into a new sessions/<UTC time>-pocket_k/"),
    ("edge-run --model dist/pocket_k-cortex-m7 --source serial:///dev/ttyACM0 --trust keys/release.pub",
     "a real device; only a package signed by keys/release runs"),
    ("edge-run --config /etc/ecgedge/handheld.toml --ui 127.0.0.1:8080",
     "the handheld service (docs/pi.md) with the live screen"),
]


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-run", __doc__, EXAMPLES, exit_codes={
        _cli.EXIT_OK: "the session ended (duration reached, Ctrl-C or SIGTERM) and summary.json was written",
        _cli.EXIT_USAGE: "bad input, a refused package (hash, signature) or a device that cannot be reached"})
    p.add_argument("--config", type=_cli.existing_file,
                   help="TOML file with any of these options (e.g. handheld.toml); flags override it")
    p.add_argument("--model", help="model package folder (edge-export output; checked before connecting)")
    p.add_argument("--source", help="device URL (see Sources above)")
    p.add_argument("--out", default=None,
                   help="session folder; one that already holds a session is refused (see --resume). "
                        "Default: a new folder SESSIONS/<UTC time>-<model>/")
    p.add_argument("--sessions", type=_session_root, default="sessions",
                   help="where new session folders go (default ./sessions)")
    p.add_argument("--resume", action="store_true",
                   help="append to the session in --out (after a resume marker) instead of refusing it")
    p.add_argument("--duration", type=_cli.positive_float, default=None,
                   help="stop after this many seconds of signal (default: until Ctrl-C)")
    p.add_argument("--trust",
                   help="Ed25519 public key (PEM), or a folder of *.pub keys with an optional `revoked` list of "
                        "fingerprints: require a valid package signature by a trusted key")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="with --trust, still run an unsigned package (marked 'unsigned' in every result)")
    p.add_argument("--hop", type=_cli.positive_int, default=None,
                   help="window hop in model samples (default: the window)")
    p.add_argument("--infer", default="litert", choices=["litert", "onnxruntime", "device"],
                   help="where the model runs (default litert: the package's INT8 .tflite on this host; "
                        "onnxruntime: the package's ONNX model, the float one on an MCU package)")
    p.add_argument("--flush-interval", type=_cli.nonneg_float, default=1.0,
                   help="recording flush period, wall seconds (default 1; 0: after every write)")
    p.add_argument("--max-record-mb", type=_cli.positive_float, default=None,
                   help="stop recording (cleanly) beyond this size")
    p.add_argument("--min-free-mb", type=_cli.nonneg_float, default=None,
                   help="stop recording (cleanly) when the output filesystem has less than this free")
    p.add_argument("--no-record", action="store_true", help="do not record raw samples")
    p.add_argument("--stall-timeout", type=_cli.positive_float, default=3.0,
                   help="seconds without frames before reconnecting (default 3)")
    p.add_argument("--ui", metavar="HOST:PORT", type=_host_port_text, help="serve the live screen on this address")
    p.add_argument("--quiet", action="store_true", help="no live view; only the summary line")
    return p


def _session_root(text):
    if not str(text).strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a folder for new sessions")
    return text


def _host_port_text(text):
    _cli.host_port(text)  # refused here when malformed
    return text


def parse(args=None):
    p = parser()
    a = p.parse_args(args)
    if a.config:
        try:
            _merge_config(p, a)
        except ConfigError as e:
            p.exit(_cli.EXIT_USAGE, f"error: {e}\n")
    missing = [f"--{k}" for k in ("model", "source") if not getattr(a, k)]
    if missing:
        p.error(f"{' and '.join(missing)} required (as flags or in --config)")
    return a


def _merge_config(parser, a) -> None:
    """Fill options left at their defaults from a TOML file (keys as the flags, '-' or '_'), each value
    checked as its flag is."""
    import tomllib

    try:
        with open(a.config, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"--config {a.config}: {e}") from None
    cfg = cfg.get("edge-run", cfg)
    for key, value in cfg.items():
        dest = key.replace("-", "_")
        if not hasattr(a, dest) or dest in ("config", "verbose"):
            raise ConfigError(f"--config {a.config}: unknown option {key!r}")
        if getattr(a, dest) == parser.get_default(dest):
            setattr(a, dest, _cli.check_value(parser, dest, value, f"--config {a.config}"))


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
            txt = _result_text(data)
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


class Progress:
    """Where the session is: signal time (of --duration), samples, lost, windows, the last result.

    On a terminal a rich live line at the bottom (result lines scroll above it); otherwise a plain line
    every PLAIN_EVERY_S wall seconds. Fed by the session's events."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, console, duration_s: float | None):
        self.console = console
        self.duration_s = duration_s
        self.fs = None
        self.samples = 0
        self.end_index = 0
        self.lost = 0
        self.windows = 0
        self.skipped = 0
        self.last = "--"
        self._live = None
        self._last_plain = None

    def line(self) -> str:
        t = self.end_index / self.fs if self.fs else 0.0
        total = f" / {self.duration_s:g}" if self.duration_s else ""
        return (f"{t:.1f}{total} s signal | {self.samples:,} samples | lost {self.lost:,} | windows "
                f"{self.windows} ({self.skipped} skipped) | last: {self.last}")

    def __rich__(self):
        from rich.text import Text
        return Text(self.line(), style="bold", overflow="ellipsis", no_wrap=True)

    def start(self) -> None:
        import time
        if self.console.is_terminal:
            from rich.live import Live
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        self._last_plain = time.monotonic()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def on_event(self, kind, data) -> None:
        if kind == "connected":
            self.fs = float(data["info"].sample_rate_hz)
        elif kind == "samples":
            self.samples += len(data["counts"])
            self.end_index = max(self.end_index, int(data["index"]) + len(data["counts"]))
        elif kind == "gap":
            self.lost += int(data["length"])
        elif kind == "result":
            self.windows += 1
            self.skipped += bool(data.get("skipped"))
            self.last = _result_text(data)
        if self._live is None and self._last_plain is not None:
            import time
            now = time.monotonic()
            if now - self._last_plain >= self.PLAIN_EVERY_S:
                self._last_plain = now
                self.console.print(f"progress: {self.line()}", highlight=False)


def _result_text(data) -> str:
    sqi = data["sqi"]
    if data["skipped"]:
        return f"skipped ({', '.join(sqi['reasons'])})"
    parts = [f"{k}={v:.3f}" for k, v in data["scores"].items()]
    dec = [k for k, v in data.get("decisions", {}).items() if v]
    return " ".join(parts) + (f"  positive: {', '.join(dec)}" if dec else "")
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


async def _run(a, console):
    import asyncio
    import signal

    opts = _options(a)  # every number and the output folder are checked before any work (and any heavy import)
    ui_addr = _cli.host_port(a.ui) if a.ui else None

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
    progress = None if a.quiet else Progress(console, opts.duration_s)
    hooks = [printer] + ([progress.on_event] if progress else [])
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
    if not a.quiet:
        console.print(f"connecting to {a.source} ...", highlight=False)
    if progress:
        progress.start()
    try:
        summary = await session.run(stop)
    finally:
        if progress:
            progress.stop()
        if ui is not None:
            await ui.stop()
    return summary


def main(args=None):
    a = parse(args)
    sys.exit(_cli.run("edge-run", lambda: _main(a), verbose=a.verbose))


def _main(a) -> int:
    import asyncio

    from rich.console import Console

    console = Console(stderr=False)
    summary = asyncio.run(_run(a, console))
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

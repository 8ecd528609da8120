"""edge-sim: a virtual Pocket-K device (lead-I ADC + the wire protocol of docs/protocol.md) over a pty or
a TCP socket: generated ECG of a subject with a given serum K+ and heart rate, or a replayed record; with
--package it also answers inference requests with the package's INT8 model.

The path (or socket:// address) is printed only once the device is ready (its record loaded, its model
built): a script waiting for it never sees one from a device that then fails. Bad values exit 2 at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecgedge.errors import ConfigError
from ecgedge.tools import _cli

SERVE_EXAMPLES = [
    ("edge-sim serve --pty --model pocket_k --k 6.5 --speed 20",
     "prints the /dev/pts path first (for edge-run --source serial://PATH), then streams 20x real time"),
    ("edge-sim serve --tcp 127.0.0.1:0 --replay ../shared/data/cinc2017/A00001.hea",
     "replays a record (looped) on a free TCP port; prints socket://HOST:PORT first"),
    ("edge-sim serve --pty --drop 0.01 --burst 3 --corrupt 0.001 --truth /tmp/truth",
     "a lossy link, with the ground truth written for checking what the runtime recorded"),
]
SERVE_EXIT = {_cli.EXIT_OK: "stopped by SIGTERM/SIGINT or after --duration",
              _cli.EXIT_USAGE: "bad input (a flag, a record that cannot be read, a package without an INT8 model)"}


def parser() -> argparse.ArgumentParser:
    from ecgedge.firmware_bridge.protocol import MAX_SAMPLES_PER_FRAME
    from ecgedge.signals.synth import HR_RANGE, K_RANGE

    p = _cli.make_parser("edge-sim", __doc__, SERVE_EXAMPLES[:2], exit_codes=SERVE_EXIT, verbose=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="serve: run the virtual device (edge-sim serve --help)")
    s = _cli.add_command(sub, "serve", "run the virtual device",
                         "Run the virtual device on a pty or a TCP port until stopped.", SERVE_EXAMPLES,
                         exit_codes=SERVE_EXIT)
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="open a pseudo-terminal and print its path")
    where.add_argument("--tcp", metavar="HOST:PORT", type=_host_port_text,
                       help="listen on a TCP port (PORT 0 picks one)")
    s.add_argument("--model", default="pocket_k", help="device personality / model name (default pocket_k)")
    s.add_argument("--k", type=_cli.float_range(*K_RANGE), default=4.5,
                   help="serum K+ of the simulated subject, mmol/L (default 4.5)")
    s.add_argument("--hr", type=_cli.float_range(*HR_RANGE), default=72.0, help="heart rate, bpm (default 72)")
    s.add_argument("--noise", type=_cli.probability, default=0.02, help="noise level 0..1 (default 0.02)")
    s.add_argument("--seed", type=_cli.seed, default=0, help="seed of the subject and its noise (default 0)")
    s.add_argument("--speed", type=_cli.positive_float, default=1.0,
                   help="1 = real time; 20 = twenty times faster (default 1)")
    s.add_argument("--fs", type=_cli.int_range(1, 100_000), default=500, help="ADC sampling rate, Hz (default 500)")
    s.add_argument("--uv-per-lsb", type=_cli.positive_float, default=1.0,
                   help="ADC resolution, µV per count (16-bit; default 1)")
    s.add_argument("--gain", type=_cli.positive_float, default=1.0, help="front-end gain error factor (default 1)")
    s.add_argument("--drift-ppm", type=_cli.float_range(-1000.0, 1000.0), default=0.0,
                   help="sample clock error, ppm (default 0)")
    s.add_argument("--drop", type=_cli.float_range(0.0, 1.0, high_open=True), default=0.0,
                   help="probability a SAMPLES frame is lost (overrun)")
    s.add_argument("--burst", type=_cli.positive_int, default=1, help="frames lost per overrun (default 1)")
    s.add_argument("--corrupt", type=_cli.probability, default=0.0,
                   help="probability a SAMPLES frame gets a corrupted byte")
    s.add_argument("--battery", type=_cli.float_range(0.0, 100.0), default=100.0,
                   help="battery level at start, %% (default 100)")
    s.add_argument("--lead-off", default="", help="lead-off intervals in signal seconds, e.g. 10:12,30:31")
    s.add_argument("--samples-per-frame", type=_cli.int_range(1, MAX_SAMPLES_PER_FRAME), default=50,
                   help=f"samples in each SAMPLES frame (1..{MAX_SAMPLES_PER_FRAME}; default 50)")
    s.add_argument("--replay", type=_cli.existing_file,
                   help="stream a WFDB/EDF/CSV record instead of the generator (looped)")
    s.add_argument("--package", type=_cli.existing_dir,
                   help="model package folder: answer LOAD_INPUT/INFER/WINDOW_INFER with its INT8 model")
    s.add_argument("--truth", type=_cli.file_in_existing_dir,
                   help="write ground truth to TRUTH.i16 (every ADC sample) and TRUTH.json (drops)")
    s.add_argument("--duration", type=_cli.positive_float, default=None,
                   help="exit after this many wall seconds (default: run until stopped)")
    return p


def _host_port_text(text):
    _cli.host_port(text)  # refused here when malformed
    return text


def parse(args=None):
    return parser().parse_args(args)


def _config(a):
    import math

    from ecgedge.device_sim.device import SimConfig, parse_intervals

    cfg = SimConfig(model=a.model, k=a.k, hr=a.hr, noise=a.noise, seed=a.seed, speed=a.speed, sampling_rate=a.fs,
                    uv_per_lsb=a.uv_per_lsb, gain=a.gain, drift_ppm=a.drift_ppm, drop=a.drop, burst=a.burst,
                    corrupt=a.corrupt, battery=a.battery, lead_off=parse_intervals(a.lead_off), replay=a.replay,
                    package=a.package, samples_per_frame=a.samples_per_frame, truth=a.truth)
    cfg.validate(cli=True)
    if a.duration is not None and not (math.isfinite(a.duration) and a.duration > 0):
        raise ConfigError(f"--duration {a.duration!r}: expected wall seconds > 0")
    for flag, path in (("--replay", a.replay), ("--package", a.package)):
        if path is not None and not Path(path).exists():
            raise ConfigError(f"{flag} {path!r}: no such file or folder")
    if a.tcp is not None:
        _cli.host_port(a.tcp)
    return cfg


async def _serve(a):
    import asyncio
    import signal

    from ecgedge.device_sim.device import VirtualDevice
    from ecgedge.device_sim.server import open_pty, serve_pty, serve_tcp

    cfg = _config(a)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if a.duration:
        loop.call_later(a.duration, stop.set)
    if a.pty:
        device = VirtualDevice(cfg)  # the record is loaded (or refused) before any path is printed
        master, path = open_pty()
        print(path, flush=True)  # first line of stdout: scripts wait for it
        print(f"edge-sim: {cfg.model} K+={cfg.k} HR={cfg.hr} speed={cfg.speed} on {path}", file=sys.stderr, flush=True)
        try:
            await serve_pty(device, master, stop)
        finally:
            device.close()
    else:
        host, port = _cli.host_port(a.tcp)
        device = VirtualDevice(cfg)

        def ready(addr):
            print(f"socket://{addr[0]}:{addr[1]}", flush=True)

        try:
            await serve_tcp(device, host, port, stop, ready)
        finally:
            device.close()


def main(args=None):
    a = parse(args)
    import asyncio


    def body():
        _config(a)  # every value checked before any work
        asyncio.run(_serve(a))

    sys.exit(_cli.run("edge-sim", body, verbose=a.verbose))


if __name__ == "__main__":
    main()

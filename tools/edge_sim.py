"""edge-sim: a virtual Pocket-K device (lead-I ADC + wire protocol) over a pty or a TCP socket.

    edge-sim serve --pty --model pocket_k --k 6.5 --speed 20        # prints the /dev/pts path
    edge-sim serve --tcp 127.0.0.1:7000 --replay record.hea

The path (or socket:// address) is printed only once the device is ready (its record loaded, its model
built): a script waiting for it never sees one from a device that then fails. Bad values exit 2 at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecgedge.errors import ConfigError, EdgeError


def parse(args=None):
    p = argparse.ArgumentParser(prog="edge-sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the virtual device")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="open a pseudo-terminal and print its path")
    where.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP port (PORT 0 picks one)")
    s.add_argument("--model", default="pocket_k", help="device personality / model name (default pocket_k)")
    s.add_argument("--k", type=float, default=4.5, help="serum K+ of the simulated subject, mmol/L")
    s.add_argument("--hr", type=float, default=72.0, help="heart rate, bpm")
    s.add_argument("--noise", type=float, default=0.02, help="noise level 0..1")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--speed", type=float, default=1.0, help="1 = real time; 20 = twenty times faster")
    s.add_argument("--fs", type=int, default=500, help="ADC sampling rate, Hz")
    s.add_argument("--uv-per-lsb", type=float, default=1.0, help="ADC resolution, µV per count (16-bit)")
    s.add_argument("--gain", type=float, default=1.0, help="front-end gain error factor")
    s.add_argument("--drift-ppm", type=float, default=0.0, help="sample clock error, ppm")
    s.add_argument("--drop", type=float, default=0.0, help="probability a SAMPLES frame is lost (overrun)")
    s.add_argument("--burst", type=int, default=1, help="frames lost per overrun")
    s.add_argument("--corrupt", type=float, default=0.0, help="probability a SAMPLES frame gets a corrupted byte")
    s.add_argument("--battery", type=float, default=100.0, help="battery level at start, %%")
    s.add_argument("--lead-off", default="", help="lead-off intervals in signal seconds, e.g. 10:12,30:31")
    s.add_argument("--samples-per-frame", type=int, default=50)
    s.add_argument("--replay", help="stream a WFDB/EDF/CSV record instead of the generator (looped)")
    s.add_argument("--package", help="model package folder: answer LOAD_INPUT/INFER/WINDOW_INFER with its INT8 model")
    s.add_argument("--truth", help="write ground truth to TRUTH.i16 (every ADC sample) and TRUTH.json (drops)")
    s.add_argument("--duration", type=float, default=None, help="exit after this many wall seconds")
    return p.parse_args(args)


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
        _tcp_address(a.tcp)
    return cfg


def _tcp_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--tcp {text!r}: expected HOST:PORT with a port 0..65535")
    return host or "127.0.0.1", int(port)


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
        host, port = _tcp_address(a.tcp)
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
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        _config(a)  # every value checked before any work
        asyncio.run(_serve(a))
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return 0


if __name__ == "__main__":
    main()

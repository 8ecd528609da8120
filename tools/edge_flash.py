"""edge-flash: build a package's firmware for a real board, flash it with pyOCD, reset, and check the boot
banner (INFO: firmware name, model SHA-256, the constants' hash check) over the probe's virtual COM port.

    edge-flash dist/pocket_k-cortex-m7 --board nucleo-h743zi2 [--probe ID] [--port /dev/ttyACM0]
    edge-flash dist/pocket_k-cortex-m7 --board nucleo-h743zi2 --build-only [--out DIR]
    edge-flash --list-boards

Exit 0: flashed and the banner matches the package (or built, with --build-only); 1: the board answered but
something does not match (hash, name, map); 2: bad input or nothing to flash to (no probe, no pyOCD target,
no serial port), with one line saying what to do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from ecgedge.errors import ConfigError, EdgeError, TransportError
from ecgedge.tools import _cli

ST_VID, SEGGER_VID, ARM_VID = 0x0483, 0x1366, 0x0D28


class Mismatch(EdgeError):
    """The board answered, but not with what the package says it should run."""


EXAMPLES = [
    ("edge-flash dist/pocket_k-cortex-m7 --board nucleo-h743zi2",
     "build the board's firmware, flash it with pyOCD, check the boot banner against the package"),
    ("edge-flash dist/pocket_k-cortex-m7 --board nucleo-h743zi2 --build-only --out fw/",
     "build and check the firmware only (ELF, HEX, BIN, map in fw/)"),
    ("edge-flash --list-boards", "the boards, their MCU, core, clock, target and pyOCD target"),
]
EXIT_CODES = {
    _cli.EXIT_OK: "flashed and the banner matches the package (or built, with --build-only)",
    _cli.EXIT_FAILED: "the board answered but something does not match (hash, name, map)",
    _cli.EXIT_USAGE: "bad input or nothing to flash to (no probe, no pyOCD target, no serial port): one line "
                     "says what to do",
}


def parser() -> argparse.ArgumentParser:
    p = _cli.make_parser("edge-flash", __doc__, EXAMPLES, exit_codes=EXIT_CODES)
    p.add_argument("package", nargs="?", type=Path, help="model package folder (dist/<model>-<target>)")
    p.add_argument("--board", help="board name from firmware_bridge/boards.toml (see --list-boards)")
    p.add_argument("--probe", default=None, help="debug probe unique ID (pyocd list) when several are connected")
    p.add_argument("--port", default=None, help="the board's serial port (default: the probe's virtual COM port)")
    p.add_argument("--build-only", action="store_true", help="build and check the firmware, do not flash")
    p.add_argument("--out", type=Path, default=None,
                   help="with --build-only: copy ELF/HEX/BIN/map here (default PACKAGE/firmware/<board>)")
    p.add_argument("--reference", action="store_true", help="reference kernels instead of the optimised ones")
    p.add_argument("--timeout", type=_cli.positive_float, default=10.0,
                   help="seconds to wait for the boot banner (default 10)")
    p.add_argument("--list-boards", action="store_true", help="list the boards and exit")
    return p


def parse(args=None) -> argparse.Namespace:
    return parser().parse_args(args)


def _list_boards() -> None:
    from ecgedge.firmware_bridge.board_firmware import boards

    for b in boards().values():
        print(f"{b.key:16s} {b.name} ({b.mcu}, {b.core}, {b.clock_hz // 1_000_000} MHz): target {b.target}, "
              f"{b.uart} at {b.baud} baud, pyOCD target {b.pyocd}{', QEMU ' + b.qemu if b.qemu else ''}")


def _check_package(pkg: Path, board) -> dict:
    if not (pkg / "model_int8.tflite").is_file():
        raise ConfigError(f"{pkg}: no model_int8.tflite (expected a package folder from edge-export)")
    manifest = json.loads((pkg / "manifest.json").read_text()) if (pkg / "manifest.json").is_file() else {}
    tgt = manifest.get("target")
    if tgt and tgt != board.target:
        raise ConfigError(f"{pkg} was exported for target {tgt!r}, the {board.name} runs target {board.target!r}: "
                          f"edge-export {manifest.get('model', 'MODEL')} --target {board.target}")
    return manifest


def _probe(board, wanted: str | None):
    """The pyOCD probe to use; ConfigError (exit 2) saying what to connect when there is none."""
    import logging

    try:
        from pyocd.core.helpers import ConnectHelper
    except ImportError:
        raise ConfigError("pyOCD is not installed: pip install 'ecgedge[boards]' (or pip install pyocd)") from None
    logging.getLogger("pyocd").setLevel(logging.ERROR)   # our one line says what to do
    probes = ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)
    if not probes:   # `pyocd list` exits 0 here: the list itself is the check
        hint = "" if _libusb_found() else " (pyOCD finds no libusb here: apt-get install libusb-1.0-0)"
        raise ConfigError(f"no debug probe found: connect {board.probe}, then run edge-flash again{hint}")
    if wanted:
        chosen = [p for p in probes if p.unique_id == wanted]
        if not chosen:
            raise ConfigError(f"probe {wanted!r} is not connected; connected: "
                              f"{', '.join(p.unique_id + ' (' + p.description + ')' for p in probes)}")
        return chosen[0]
    if len(probes) > 1:
        raise ConfigError(f"{len(probes)} probes connected, choose one with --probe: "
                          f"{', '.join(p.unique_id + ' (' + p.description + ')' for p in probes)}")
    return probes[0]


def _libusb_found() -> bool:
    try:
        import usb.backend.libusb1 as libusb1
        return libusb1.get_backend() is not None
    except Exception:   # pyusb itself missing or broken: no libusb either
        return False


def _flash(board, probe, image: Path) -> None:
    from pyocd.core.helpers import ConnectHelper
    from pyocd.core.exceptions import TargetSupportError
    from pyocd.flash.file_programmer import FileProgrammer

    try:
        session = ConnectHelper.session_with_chosen_probe(unique_id=probe.unique_id, target_override=board.pyocd,
                                                          blocking=False, auto_open=False)
    except TargetSupportError:
        raise ConfigError(f"pyOCD has no target {board.pyocd!r}: pyocd pack install {board.pyocd}") from None
    if session is None:
        raise ConfigError(f"pyOCD could not open probe {probe.unique_id}")
    try:
        session.open()
        FileProgrammer(session).program(str(image), file_format="elf")
        session.target.reset()
    except TargetSupportError:
        raise ConfigError(f"pyOCD has no target {board.pyocd!r}: pyocd pack install {board.pyocd}") from None
    finally:
        session.close()


def _vcp_port(probe, board) -> str:
    """The serial port of the probe's virtual COM port: same USB serial number as the probe, else the only
    ST-LINK / J-Link / DAPLink serial port."""
    from serial.tools import list_ports

    ports = list(list_ports.comports())
    uid = probe.unique_id.lstrip("0")
    same = [p for p in ports if p.serial_number and p.serial_number.lstrip("0") == uid]
    if len(same) == 1:
        return same[0].device
    probes_ports = [p for p in ports if p.vid in (ST_VID, SEGGER_VID, ARM_VID)]
    if len(probes_ports) == 1:
        return probes_ports[0].device
    raise ConfigError(f"cannot tell which serial port is the {board.name}'s virtual COM port "
                      f"({', '.join(p.device for p in ports) or 'none found'}): pass --port")


class _SerialSock:
    """pyserial behind the socket calls FirmwareClient uses."""

    def __init__(self, ser):
        self.ser = ser

    def sendall(self, data: bytes) -> None:
        self.ser.write(data)
        self.ser.flush()

    def settimeout(self, t: float) -> None:
        self.ser.timeout = t

    def recv(self, n: int) -> bytes:
        first = self.ser.read(1)
        return first + (self.ser.read(min(n, self.ser.in_waiting)) if first and self.ser.in_waiting else b"")

    def close(self) -> None:
        self.ser.close()


def check_banner(info, board, manifest: dict, model_sha: str) -> list[str]:
    """What the boot banner (INFO) must say for this package on this board; [] when it does."""
    bad = []
    if board.key not in info.name:
        bad.append(f"firmware name {info.name!r} does not name board {board.key}")
    if info.model_sha256_hex != model_sha:
        bad.append(f"model SHA-256 {info.model_sha256_hex} differs from the package's {model_sha}")
    if not info.has_model:
        bad.append("the model constants failed the firmware's SHA-256 check (flash corrupted?)")
    if manifest.get("demo") is not None and bool(manifest["demo"]) != info.demo:
        bad.append(f"demo flag {info.demo} differs from the package's {manifest['demo']}")
    return bad


def read_banner(port: str, baud: int, timeout: float):
    import serial

    from ecgedge.firmware_bridge.board_firmware import hello_until_booted
    from ecgedge.firmware_bridge.client import FirmwareClient

    try:
        ser = serial.Serial(port, baud, timeout=0.5)
    except serial.SerialException as e:
        raise TransportError(f"cannot open {port}: {e}") from None
    client = FirmwareClient(sock=_SerialSock(ser))
    try:
        return hello_until_booted(client, timeout=timeout)
    finally:
        client.close()


def run(args) -> int:
    from ecgedge.firmware_bridge.board_firmware import board_firmware_for_package, get_board

    if args.list_boards:
        _list_boards()
        return 0
    if args.package is None or args.board is None:
        raise ConfigError("expected a package folder and --board NAME (edge-flash --list-boards lists the boards)")
    board = get_board(args.board)
    pkg = args.package
    if not pkg.is_dir():
        raise ConfigError(f"package folder {str(pkg)!r} does not exist")
    manifest = _check_package(pkg, board)
    if not args.build_only:
        probe = _probe(board, args.probe)        # before the build: no probe, no minutes spent building
    build = board_firmware_for_package(pkg, board.key, optimized=not args.reference)
    print(build.summary())
    if build.problems:
        raise Mismatch(f"firmware map check failed: {'; '.join(build.problems)}")
    if args.build_only:
        out = args.out or pkg / "firmware" / board.key
        out.mkdir(parents=True, exist_ok=True)
        for f in (build.elf, build.hex, build.bin, build.map):
            if f.resolve().parent != out.resolve():
                shutil.copy2(f, out / f.name)
        print(f"{board.name}: firmware in {out} (ELF, HEX, BIN, map); flash it with edge-flash or any tool")
        return 0
    port = args.port or _vcp_port(probe, board)
    print(f"{board.name}: flashing {build.elf.name} with probe {probe.unique_id} ({probe.description}) ...")
    _flash(board, probe, build.elf)
    time.sleep(0.3)
    info = read_banner(port, board.baud, args.timeout)
    print(f"banner: {info.name}")
    bad = check_banner(info, board, manifest, build.model_sha256)
    if bad:
        raise Mismatch("; ".join(bad))
    print(f"{board.name}: model SHA-256 {build.model_sha256[:16]}... matches, constants pass their hash check. "
          f"Bench: edge-hil run --model {pkg} --device 'serial://{port}?baud={board.baud}'")
    return 0


def _run(args) -> int:
    try:
        return run(args)
    except Mismatch as e:   # the board answered: a verdict (exit 1), not bad input
        print(f"error: {e}", file=sys.stderr)
        return _cli.EXIT_FAILED


def main(argv=None) -> int:
    args = parse(argv)
    sys.exit(_cli.run("edge-flash", lambda: _run(args), verbose=args.verbose))


if __name__ == "__main__":
    main()

"""Devices the bench drives: `host` (in-process INT8) and wire-protocol devices (qemu://, sim://, serial://,
socket://) through the runtime's DeviceLink. Every wait has a timeout: a silent device raises DeviceTimeout.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ecgedge.errors import ConfigError, DeviceTimeout, FirmwareError, ProtocolError, TransportError
from ecgedge.contract.package import Package, sha256_file
from ecgedge.firmware_bridge import protocol as P

LOAD_CHUNK = P.MAX_PAYLOAD - 4  # LOAD_INPUT carries a 4-byte offset
# Streaming is paced by the device clock; an emulator with -icount may run it far slower than real time.
# A silent device is still caught by the per-frame timeout.
STREAM_SLOWDOWN = 100


@dataclass
class DeviceInfo:
    """What a device says about itself (INFO), in host terms."""
    name: str
    model_sha256: str
    sample_rate_hz: int
    window_len: int
    input_scale: float
    input_zero_point: int
    n_outputs: int
    counter_kind: int
    arena_bytes: int = 0
    uv_per_lsb: float = 1.0
    demo: bool = False
    has_model: bool = True        # INFO flag bit1: the model blob passed the device's SHA-256 check

    @classmethod
    def from_wire(cls, info: P.Info) -> "DeviceInfo":
        return cls(name=info.name, model_sha256=info.model_sha256_hex, sample_rate_hz=info.sample_rate_hz,
                   window_len=info.window_len, input_scale=info.input_scale,
                   input_zero_point=info.input_zero_point, n_outputs=info.n_outputs,
                   counter_kind=info.counter_kind, arena_bytes=info.arena_bytes, uv_per_lsb=info.uv_per_lsb,
                   demo=info.demo, has_model=info.has_model)


@dataclass
class InferResult:
    outputs: np.ndarray          # int8 [n_outputs], the model's raw outputs
    counter_kind: int            # protocol CounterKind
    counter: int
    infer_us: int
    round_trip_s: float          # host wall time: input sent -> result back


@dataclass
class Footprint:
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    text: int | None = None
    data: int | None = None
    bss: int | None = None
    arena_bytes: int | None = None
    source: str = ""


@dataclass
class IntegrityReport:
    """Sample-integrity phase: streamed samples and the device's own window assembly."""
    samples_received: int = 0
    gaps: list = field(default_factory=list)       # [{start_sample, length}]
    dropped_reported: int | None = None            # STATUS.dropped delta over the phase
    window_checked: bool = False
    window_bit_exact: bool | None = None
    window_max_abs_lsb: int | None = None
    tolerance_lsb: int = 0
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool | None:
        if self.samples_received == 0 and not self.window_checked:
            return None
        ok = not self.gaps and not self.dropped_reported
        if self.window_checked:
            ok = ok and self.window_max_abs_lsb is not None and self.window_max_abs_lsb <= self.tolerance_lsb
        return ok

    def to_dict(self) -> dict:
        return {"samples_received": self.samples_received, "gaps": self.gaps,
                "dropped_reported": self.dropped_reported, "window_checked": self.window_checked,
                "window_bit_exact": self.window_bit_exact, "window_max_abs_lsb": self.window_max_abs_lsb,
                "ok": self.ok, "notes": self.notes}


def elf_footprint(elf: str | Path) -> Footprint:
    """text/data/bss of an ELF (arm-none-eabi-size): flash = text + data, RAM = data + bss."""
    size = shutil.which("arm-none-eabi-size") or shutil.which("size")
    if size is None:
        raise FirmwareError("no arm-none-eabi-size to read the firmware footprint (install gcc-arm-none-eabi)")
    out = subprocess.run([size, "-B", str(elf)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise FirmwareError(f"size {elf}: {out.stderr.strip()}")
    text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    return Footprint(flash_bytes=text + data, ram_bytes=data + bss, text=text, data=data, bss=bss,
                     source=f"ELF {Path(elf).name} (arm-none-eabi-size)")


def build_footprint(elf: str | Path) -> Footprint:
    """Flash/RAM of a firmware image: the build's BuildResult record next to the ELF, else the ELF itself."""
    import json

    rec = Path(elf).with_suffix(".json")
    if rec.is_file():
        d = json.loads(rec.read_text())
        return Footprint(flash_bytes=d["flash_bytes"], ram_bytes=d["ram_bytes"], text=d["text"], data=d["data"],
                         bss=d["bss"], arena_bytes=d.get("arena_bytes"), source=f"BuildResult {rec.name}")
    return elf_footprint(elf)


class BenchDevice:
    """One device under test. open() -> DeviceInfo; infer(q) -> InferResult; close()."""

    url: str = ""
    emulated: bool = False
    restartable: bool = False     # the host runs this device (an emulator) and can power-cycle it
    footprint: Footprint | None = None

    def open(self) -> DeviceInfo:
        raise NotImplementedError

    def infer(self, q: np.ndarray) -> InferResult:
        raise NotImplementedError

    def restart(self) -> DeviceInfo:
        """Power-cycle the device (only where `restartable`): a fresh boot that answers HELLO again."""
        raise ConfigError(f"{self.url}: the host cannot restart this device")

    def sample_integrity(self, reference, n_samples: int, feed_counts: np.ndarray | None = None
                         ) -> IntegrityReport | None:
        """Streaming check (devices that stream); None where the device has no sample path (host)."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HostDevice(BenchDevice):
    """INT8 in-process: tflite-micro's Python interpreter (default) or LiteRT (`host?runtime=litert`)."""

    def __init__(self, package: Package, runtime: str = "tflm"):
        from ecgedge.contract.runners import INT8_RUNTIMES

        if runtime not in INT8_RUNTIMES:
            raise ConfigError(f"host runtime {runtime!r}, expected one of {', '.join(INT8_RUNTIMES)}")
        self.package = package
        self.runtime = runtime
        self.url = "host" if runtime == "tflm" else f"host?runtime={runtime}"
        self._run = None

    def open(self) -> DeviceInfo:
        from ecgedge.contract.runners import open_int8_runner

        path = self.package.file("model_int8.tflite")
        self._runner = open_int8_runner(path, self.runtime)
        inp = self.package.input
        return DeviceInfo(name=f"host {self._runner.describe}", model_sha256=sha256_file(path),
                          sample_rate_hz=int(inp["sampling_rate_hz"]), window_len=self._runner.input_size,
                          input_scale=self._runner.input_scale, input_zero_point=self._runner.input_zero_point,
                          n_outputs=self._runner.n_outputs, counter_kind=int(P.CounterKind.MICROSECONDS),
                          demo=self.package.demo)

    def infer(self, q: np.ndarray) -> InferResult:
        t0 = time.perf_counter()
        out = self._runner.run_one(q)
        dt = time.perf_counter() - t0
        return InferResult(outputs=out, counter_kind=int(P.CounterKind.MICROSECONDS), counter=int(dt * 1e6),
                           infer_us=int(dt * 1e6), round_trip_s=dt)


class LinkDevice(BenchDevice):
    """A device speaking docs/protocol.md over a transport (H5's open_transport + DeviceLink)."""

    def __init__(self, transport_url: str, display_url: str | None = None, timeout: float = 10.0,
                 emulated: bool = False, footprint: Footprint | None = None, boot_timeout: float = 30.0,
                 window_filters: bool = False, stream_samples: int | None = None, elf: Path | None = None,
                 restartable: bool = False):
        # window_filters: the device runs the contract's filters before its window assembly (the
        # simulator does; our firmware quantises raw counts). stream_samples: how much to stream in the
        # integrity phase (None: 1.2 windows). elf: the firmware image (per-layer profile under QEMU).
        self.window_filters = window_filters
        self.stream_samples = stream_samples
        self.elf = Path(elf) if elf else None
        self.transport_url = transport_url
        self.url = display_url or transport_url
        self.timeout = float(timeout)
        self.boot_timeout = float(boot_timeout)
        self.emulated = emulated
        self.restartable = restartable
        self.footprint = footprint
        self._loop = asyncio.new_event_loop()
        self._transport = None
        self._link = None
        self.info: DeviceInfo | None = None

    def _do(self, coro, timeout: float, what: str):
        async def guarded():
            try:
                return await asyncio.wait_for(coro, timeout)
            except asyncio.TimeoutError:
                raise DeviceTimeout(f"{self.url}: no answer to {what} within {timeout:g} s") from None
        return self._loop.run_until_complete(guarded())

    async def _request(self, msg_type, payload: bytes, expect, timeout: float):
        frame = await self._link.request(msg_type, payload, expect=expect, timeout=timeout)
        return self._check(frame, expect)

    def _check(self, frame, expect):
        if frame.type == P.MsgType.ERROR:
            err = P.unpack_error(frame.payload)
            name = P.ErrorCode(err.code).name if err.code in {int(c) for c in P.ErrorCode} else str(err.code)
            raise ProtocolError(f"{self.url}: device answered ERROR {name}: {err.msg!r}")
        if frame.type != int(expect):
            raise ProtocolError(f"{self.url}: expected {P.MsgType(expect).name}, got frame type {frame.type:#x}")
        return frame

    def open(self) -> DeviceInfo:
        from ecgedge.firmware_bridge.link import DeviceLink
        from ecgedge.edge_runtime.transports import open_transport

        async def go():
            self._transport = open_transport(self.transport_url)
            await self._transport.open()
            self._link = DeviceLink(self._transport)
            return await self._request(P.MsgType.HELLO, b"", P.MsgType.INFO, self.timeout)

        frame = self._do(go(), self.boot_timeout + self.timeout, "HELLO (device boot + INFO)")
        self.info = DeviceInfo.from_wire(P.unpack_info(frame.payload))
        return self.info

    def restart(self) -> DeviceInfo:
        """A device the host runs (QEMU) that died or hung: the old link and emulator go (a hung one is killed),
        a fresh one boots and answers HELLO. The caller checks the new INFO before trusting it."""
        if not self.restartable:
            return super().restart()
        self._close_transport()
        self._link = None
        return self.open()

    def infer(self, q: np.ndarray) -> InferResult:
        data = np.ascontiguousarray(q, dtype=np.int8).tobytes()

        async def go():
            t0 = time.perf_counter()
            for off in range(0, len(data), LOAD_CHUNK):
                payload = P.pack_load_input(P.LoadInput(off, data[off:off + LOAD_CHUNK]))
                frame = await self._request(P.MsgType.LOAD_INPUT, payload, P.MsgType.ACK, self.timeout)
                ack = P.unpack_ack(frame.payload)
                if not ack.ok:
                    raise ProtocolError(f"{self.url}: LOAD_INPUT at offset {off} not accepted (status {ack.status})")
            frame = await self._request(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)), P.MsgType.RESULT,
                                        self.timeout)
            return frame, time.perf_counter() - t0

        frame, rt = self._do(go(), self.timeout * (2 + len(data) // LOAD_CHUNK), "LOAD_INPUT/INFER")
        r = P.unpack_result(frame.payload)
        return InferResult(outputs=np.array(r.outputs, np.int8), counter_kind=r.counter_kind, counter=r.counter,
                           infer_us=r.infer_us, round_trip_s=rt)

    def sample_integrity(self, reference, n_samples: int, feed_counts: np.ndarray | None = None
                         ) -> IntegrityReport | None:
        """Three checks that the device loses no sample:
        1. START -> SAMPLES (n samples) -> STOP: no index gap, STATUS.dropped unchanged;
        2. if a whole window was streamed: WINDOW_INFER on the last one must give what the same window,
           built on the host from the streamed samples, gives through LOAD_INPUT;
        3. host-fed window (`feed_counts`, if the device takes SAMPLES from the host): send them, then
           WINDOW_INFER must again equal LOAD_INPUT of the host-built window.
        Both answers of 2 and 3 come from the device's own engine, so a difference is its window
        assembly or input quantisation (a lost sample shifts the window).
        `reference(counts, start, info, filtered) -> int8 input` builds a window on the host."""
        rep = IntegrityReport()
        info = self.info
        window = info.window_len
        n_samples = int(self.stream_samples or n_samples)
        rate = max(info.sample_rate_hz, 1)

        def track(s, expected):
            if expected is not None and s.first_index != expected:
                rep.gaps.append({"start_sample": int(expected),
                                 "length": int((s.first_index - expected) & 0xFFFFFFFF)})
            return (s.first_index + len(s.samples)) & 0xFFFFFFFF

        async def status():
            f = await self._request(P.MsgType.GET_STATUS, b"", P.MsgType.STATUS, self.timeout)
            return P.unpack_status(f.payload)

        async def stream():
            before = await status()
            await self._request(P.MsgType.START, b"", P.MsgType.ACK, self.timeout)
            chunks, expected = [], None
            deadline = time.monotonic() + self.timeout + n_samples / rate * STREAM_SLOWDOWN
            total = 0
            while total < n_samples:
                if time.monotonic() > deadline:
                    raise DeviceTimeout(f"{self.url}: streamed {total} of {n_samples} samples before the deadline")
                f = await self._link.recv(timeout=self.timeout)
                if f.type == P.MsgType.ERROR:
                    self._check(f, P.MsgType.SAMPLES)
                if f.type != P.MsgType.SAMPLES:
                    continue
                s = P.unpack_samples(f.payload)
                expected = track(s, expected)
                chunks.append(s)
                total += len(s.samples)
            await self._link.request(P.MsgType.STOP, b"", expect=P.MsgType.ACK, timeout=self.timeout)
            for f in self._link.take_pending(P.MsgType.SAMPLES):  # in flight before STOP took effect
                s = P.unpack_samples(f.payload)
                expected = track(s, expected)
                chunks.append(s)
            after = await status()
            return chunks, before, after

        chunks, before, after = self._do(stream(), self.timeout * 5 + n_samples / rate * STREAM_SLOWDOWN,
                                         "the streaming phase")
        rep.samples_received = sum(len(c.samples) for c in chunks)
        rep.dropped_reported = int(after.dropped - before.dropped)
        rep.window_checked = False
        diffs = []
        if not rep.gaps and rep.samples_received >= window:
            counts = np.concatenate([c.samples for c in chunks]).astype(np.int64)
            first = chunks[0].first_index
            if first != 0:
                rep.notes.append(f"stream began at sample {first}, not 0: device-side filter state unknown")
            start_pos = len(counts) - window
            diffs.append(self._window_vs_load(rep, (first + start_pos) & 0xFFFFFFFF,
                                              reference(counts, start_pos, info, self.window_filters), "streamed"))
        if feed_counts is not None:
            # several windows' worth fed from index 0; the LAST window is checked, so a sample lost
            # anywhere before it shifts it (or leaves it incomplete)
            counts = np.asarray(feed_counts, np.int16)
            fed = self._feed(counts)
            if fed:
                start = counts.size - window
                diffs.append(self._window_vs_load(rep, start,
                                                  reference(counts.astype(np.int64), start, info, False),
                                                  "host-fed"))
            else:
                rep.notes.append("device does not take SAMPLES from the host: host-fed window not checked")
        diffs = [d for d in diffs if d is not None]
        if diffs:
            rep.window_checked = True
            rep.window_max_abs_lsb = int(max(diffs))
            rep.window_bit_exact = rep.window_max_abs_lsb == 0
        return rep

    def _feed(self, counts: np.ndarray) -> bool:
        """Send a window of samples host -> device (SAMPLES frames, each ACKed); False if not supported."""
        async def go():
            for k in range(0, counts.size, P.MAX_SAMPLES_PER_FRAME):
                blk = counts[k:k + P.MAX_SAMPLES_PER_FRAME]
                await self._request(P.MsgType.SAMPLES, P.pack_samples(P.Samples(k, 0, blk)), P.MsgType.ACK,
                                    self.timeout)
        try:
            self._do(go(), self.timeout * (2 + counts.size // P.MAX_SAMPLES_PER_FRAME), "host SAMPLES")
        except ProtocolError as e:
            if "error 2" in str(e) or "ERR_TYPE" in str(e):
                return False
            raise
        return True

    def _window_vs_load(self, rep: IntegrityReport, first_index: int, q_host: np.ndarray, what: str) -> int | None:
        async def window_infer():
            return await self._link.request(P.MsgType.WINDOW_INFER, P.pack_window_infer(P.WindowInfer(first_index)),
                                            expect=P.MsgType.RESULT, timeout=self.timeout)
        try:
            frame = self._do(window_infer(), self.timeout * 2, "WINDOW_INFER")
        except ProtocolError as e:  # the device refused: its window assembly lost the window
            rep.notes.append(f"{what} window: WINDOW_INFER at sample {first_index} refused: {e}")
            return 255
        got = np.array(P.unpack_result(frame.payload).outputs, np.int8)
        want = self.infer(q_host).outputs
        d = int(np.max(np.abs(got.astype(np.int16) - want.astype(np.int16))))
        if d:
            rep.notes.append(f"{what} window: WINDOW_INFER differs from LOAD_INPUT of the host-built window "
                             f"by up to {d} LSB")
        return d

    def _close_transport(self) -> None:
        async def go():
            if self._transport is not None:
                transport, self._transport = self._transport, None
                await transport.close()
        try:
            if not self._loop.is_closed():
                self._loop.run_until_complete(asyncio.wait_for(go(), 10.0))
        except Exception:  # closing a dead link must not hide the error that killed it
            pass

    def close(self) -> None:
        try:
            self._close_transport()
        finally:
            if not self._loop.is_closed():
                self._loop.close()


def parse_device_url(url: str) -> tuple[str, str, dict]:
    """(scheme, rest, query) of a --device URL; `host` has scheme 'host'."""
    if url == "host" or url.startswith("host?"):
        return "host", "", dict(parse_qsl(url.partition("?")[2]))
    parts = urlsplit(url)
    if not parts.scheme:
        raise ConfigError(f"device {url!r}: expected qemu://<core or MCU target>, sim://..., serial:///dev/tty..., "
                          "socket://host:port or host")
    return parts.scheme, (parts.netloc + parts.path), dict(parse_qsl(parts.query))


def qemu_firmware(package_dir, target: str, query: dict, defines: dict | None = None) -> Path:
    """The firmware a qemu://<core or MCU target>[?machine=microbit][&optimize=size] device runs: a cached
    build of the package for that target, machine and optimisation goal (without ?optimize=, the goal the
    package's own firmware was built for by edge-export --firmware, else speed)."""
    import json

    from ecgedge.firmware_bridge.build import firmware_for_package
    goal = query.get("optimize")
    if goal is None:
        rep = Path(package_dir) / "report.json"
        try:
            goal = (json.loads(rep.read_text()).get("firmware") or {}).get("optimize") if rep.is_file() else None
        except (OSError, ValueError):
            goal = None
    return Path(firmware_for_package(package_dir, target=target, defines=defines or None,
                                     optimize=goal or "speed", machine=query.get("machine")))


def open_device(url: str, package: Package, timeout: float = 10.0, elf: str | Path | None = None,
                defines: dict | None = None) -> BenchDevice:
    """The bench device for a --device URL. qemu:// builds (or reuses) the package's firmware;
    `elf` overrides the image and `defines` builds a fault-injected one (negative tests)."""
    scheme, rest, query = parse_device_url(url)
    if scheme == "host":
        return HostDevice(package, runtime=query.get("runtime", "tflm"))
    if scheme == "qemu":
        target = rest or package.target
        if elf is None and "elf" in query:
            elf = query["elf"]
        footprint = None
        if elf is None:
            elf = qemu_firmware(package.path, target, query, defines)
        footprint = build_footprint(elf)
        # The firmware streams its test signal slowly under QEMU (tens of samples per wall second on a busy
        # machine): a short stream checks START/SAMPLES/STOP; the host-fed windows check the assembly.
        return LinkDevice(f"qemu://{target}?elf={elf}", display_url=url, timeout=timeout, emulated=True,
                          footprint=footprint, stream_samples=50, elf=Path(elf), restartable=True)
    if scheme == "sim":
        tu = url
        if "package=" not in tu:
            tu = f"{tu}{'&' if '?' in tu else '?'}package={package.path}"
        if "speed=" not in tu:  # the bench needs no real-time pacing of the streaming phase
            tu = f"{tu}&speed=100"
        return LinkDevice(tu, display_url=url, timeout=timeout, emulated=True, window_filters=True)
    if scheme in ("serial", "socket", "ble", "spy", "loop"):
        return LinkDevice(url, timeout=timeout, emulated=False)
    raise ConfigError(f"device scheme {scheme!r} in {url!r}: expected qemu, sim, serial, socket, ble or host")


__all__ = ["BenchDevice", "DeviceInfo", "Footprint", "HostDevice", "InferResult", "IntegrityReport",
           "LinkDevice", "open_device", "elf_footprint", "parse_device_url", "qemu_firmware"]

# Errors a device can raise mid-run: the bench turns them into a partial report.
# OSError: a transport may surface a dead peer as ConnectionResetError / BrokenPipeError.
DEVICE_ERRORS = (DeviceTimeout, TransportError, ProtocolError, FirmwareError, OSError, EOFError)


def qemu_layer_profile(elf: str | Path, q: np.ndarray, machine: str | None = None, timeout: float = 60.0) -> dict:
    """Per-layer instructions of one inference: a separate QEMU boot with the firmware's TCG
    instruction-count plugin (exact counts between the ecg_layer_NNN markers). The machine is the one
    the ELF was linked for (its build record) unless given."""
    import json

    from ecgedge.firmware_bridge.client import FirmwareClient
    from ecgedge.firmware_bridge.qemu import QemuDevice

    with QemuDevice(elf, machine=machine, plugin=True) as dev:
        client = FirmwareClient(sock=dev.connect())
        try:
            client.hello()
            client.infer(np.asarray(q, np.int8), timeout=timeout)
        finally:
            client.close()
        dev.stop()  # the plugin writes its log when QEMU exits
        records = dev.plugin_records()
    if not records:
        raise FirmwareError("the instruction-count plugin wrote no record")
    rec = records[-1]
    meta = {}
    build = Path(elf).with_suffix(".json")
    if build.is_file():
        for i, row in enumerate(json.loads(build.read_text()).get("layers") or []):
            meta[int(row.get("index", i))] = row
    layers = []
    for idx in sorted(rec["layers"]):
        row = meta.get(idx, {})
        name = f"{idx:03d} {row.get('op', '')} {row.get('name', '')}".strip()
        layers.append({"index": idx, "name": name, "instructions": int(rec["layers"][idx]),
                       "macs": row.get("macs")})
    return {"total": int(rec["total"]), "layers": layers}

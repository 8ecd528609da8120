"""A virtual Pocket-K: lead-I ADC fed by the ECG generator (or a replayed record), speaking the wire protocol.

The device model is transport-agnostic: `attach(sink)` gives it an async byte sink (a pty, a TCP
connection, an in-process queue), `receive(bytes)` feeds it what the host sent. Streaming is paced in
real time times `speed`. Everything the ADC produced is kept as ground truth (`truth_counts`, `dropped`)
so tests can compare recordings sample by sample.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, EdgeError, ModelError, ProtocolError
from ecgedge.firmware_bridge import protocol as P

log = logging.getLogger("ecgedge.sim")

FIRMWARE_NAME = "ecgedge-sim 0.1.0"


@dataclass
class SimConfig:
    model: str = "pocket_k"
    k: float = 4.5  # serum potassium of the simulated subject, mmol/L
    hr: float = 72.0
    noise: float = 0.02
    seed: int = 0
    speed: float = 1.0  # 1 = real time
    sampling_rate: int = 500
    uv_per_lsb: float = 1.0
    gain: float = 1.0  # front-end gain error (1.0 = exact calibration)
    drift_ppm: float = 0.0  # sample clock error, +-100 ppm is typical
    drop: float = 0.0  # probability that a SAMPLES frame is lost to an overrun
    burst: int = 1  # frames lost per overrun event
    corrupt: float = 0.0  # probability that a sent SAMPLES frame has one byte corrupted on the wire
    battery: float = 100.0
    battery_drain_pct_per_h: float = 5.0
    lead_off: list = field(default_factory=list)  # [(start_s, end_s)] in signal seconds
    replay: str | None = None
    package: str | None = None
    samples_per_frame: int = 50
    truth: str | None = None  # ground-truth file prefix (PREFIX.i16 + PREFIX.json)
    clock_jump: list = field(default_factory=list)  # [(at_s, jump_s)]: the device clock jumps (fault injection)
    rewind_s: float = 5.0  # on resume after a lost link, resend this much (the host drops duplicates)
    seq0: int = 0  # the first frame sequence number (fault injection: start near the u16 wrap-around)
    max_buffer_s: float = 600.0

    @classmethod
    def from_query(cls, model: str, q: dict) -> "SimConfig":
        c = cls(model=model or "pocket_k")
        conv = {"k": float, "hr": float, "noise": float, "seed": int, "speed": float, "sampling_rate": int,
                "fs": int, "uv_per_lsb": float, "gain": float, "drift_ppm": float, "drift": float, "drop": float, "corrupt": float,
                "burst": int, "battery": float, "samples_per_frame": int, "rewind_s": float, "seq0": int}
        for key, val in q.items():
            if key in ("package", "replay", "truth"):
                setattr(c, key, val)
            elif key == "lead_off":
                c.lead_off = parse_intervals(val)
            elif key == "clock_jump":
                c.clock_jump = parse_intervals(val)
            elif key in conv:
                try:
                    v = conv[key](val)
                except ValueError:
                    raise ConfigError(f"sim parameter {key}={val!r} is not a {conv[key].__name__}") from None
                setattr(c, {"fs": "sampling_rate", "drift": "drift_ppm"}.get(key, key), v)
            else:
                raise ConfigError(f"unknown sim parameter {key!r}; expected one of "
                                  + ", ".join(sorted([*conv, "package", "replay", "truth", "lead_off", "clock_jump"])))
        c.validate()
        return c

    # field -> (edge-sim flag, test, what is expected): every number the device takes, checked before any work
    LIMITS = {
        "k": ("--k", lambda v: 1.0 <= v <= 12.0, "serum K+ in 1..12 mmol/L"),
        "hr": ("--hr", lambda v: 20.0 <= v <= 300.0, "a heart rate in 20..300 bpm"),
        "noise": ("--noise", lambda v: 0.0 <= v <= 1.0, "a level in 0..1"),
        "speed": ("--speed", lambda v: 0.0 < v <= 10_000.0, "> 0 (1 = real time), at most 10000"),
        "sampling_rate": ("--fs", lambda v: 1 <= v <= 65535, "a rate in 1..65535 Hz (u16 on the wire)"),
        "uv_per_lsb": ("--uv-per-lsb", lambda v: v > 0, "> 0"),
        "gain": ("--gain", lambda v: v > 0, "> 0"),
        "drift_ppm": ("--drift-ppm", lambda v: abs(v) <= 1000, "within +-1000"),
        "drop": ("--drop", lambda v: 0 <= v < 1, "a probability in [0, 1)"),
        "burst": ("--burst", lambda v: v >= 1, "a whole number of frames >= 1"),
        "corrupt": ("--corrupt", lambda v: 0 <= v < 1, "a probability in [0, 1)"),
        "battery": ("--battery", lambda v: 0 <= v <= 100, "a level in 0..100 %"),
        "samples_per_frame": ("--samples-per-frame", lambda v: 1 <= v <= P.MAX_SAMPLES_PER_FRAME,
                              f"1..{P.MAX_SAMPLES_PER_FRAME}"),
        "rewind_s": ("rewind_s", lambda v: 0 <= v <= 600, "seconds in 0..600"),
        "seq0": ("seq0", lambda v: 0 <= v <= 0xFFFF and v == int(v), "a frame sequence number in 0..65535"),
    }

    def validate(self, cli: bool = False):
        """ConfigError naming the first bad value: `name=value` (sim:// URL) or `--flag value` (edge-sim)."""
        import math

        for name, (flag, ok, expected) in self.LIMITS.items():
            v = getattr(self, name)
            good = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v)
            if not good:
                shown = f"{flag} {v!r}" if cli and flag.startswith("--") else f"{name}={v!r}"
                raise ConfigError(f"{shown}: expected {expected}")
        for a, b in [*self.lead_off]:
            if not (0 <= a < b):
                raise ConfigError(f"{'--lead-off' if cli else 'lead_off'} {a:g}:{b:g}: expected START:END with "
                                  "0 <= START < END seconds")


def parse_intervals(text: str) -> list[tuple[float, float]]:
    """'10:12,30:31.5' -> [(10, 12), (30, 31.5)] (seconds of signal)."""
    out = []
    for part in filter(None, text.split(",")):
        try:
            a, b = part.split(":")
            out.append((float(a), float(b)))
        except ValueError:
            raise ConfigError(f"lead-off interval {part!r}: expected START:END in seconds") from None
    return out


class _Source:
    """µV samples from the generator or a looped recording."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        if cfg.replay:
            from ecgedge.signals import load_record

            rec = load_record(cfg.replay, sampling_rate=cfg.sampling_rate)
            self._rec = np.asarray(rec.signal_uv, np.float64)
            if self._rec.size == 0:
                raise ConfigError(f"replay record {cfg.replay} holds no samples")
            self._pos = 0
            self.stream = None
        else:
            from ecgedge.signals import EcgStream

            self.stream = EcgStream(sampling_rate=cfg.sampling_rate, heart_rate=cfg.hr, k_mmol=cfg.k,
                                    noise=cfg.noise, seed=cfg.seed)
            self._buf = np.zeros(0)

    def read(self, n: int) -> np.ndarray:
        if self.stream is not None:
            # the generator's cost is mostly per call: draw a second at a time (same samples either way)
            if self._buf.size < n:
                self._buf = np.concatenate([self._buf, self.stream.read(max(n, int(self.cfg.sampling_rate)))])
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        idx = (self._pos + np.arange(n)) % self._rec.size
        self._pos += n
        return self._rec[idx]


class EngineProcess:
    """Our C engine's host build for one package (firmware_bridge/c/host_sim.c: compiled once, cached), kept
    running: the same engine, generated model and input quantisation (ecg_input.h) as the firmware, so the
    simulator's answers are the firmware's, bit for bit (and tflite-micro's)."""

    def __init__(self, package_dir, input_size: int, output_size: int):
        import subprocess

        from ecgedge.firmware_bridge.build import host_for_package

        self.input_size, self.output_size = int(input_size), int(output_size)
        exe = host_for_package(package_dir, "sim")
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def _ask(self, command: bytes) -> tuple[np.ndarray, int]:
        """(int8 outputs, the inference's own time in µs as the engine measured it: its thread's CPU time)."""
        n = self.output_size + 4
        try:
            self.proc.stdin.write(command)
            self.proc.stdin.flush()
            out = self.proc.stdout.read(n)
        except (BrokenPipeError, ValueError):
            out = b""
        if len(out) != n:
            raise ModelError(f"the C engine (host build) ended with exit {self.proc.poll()} instead of answering")
        return np.frombuffer(out[:self.output_size], np.int8).copy(), int.from_bytes(out[self.output_size:], sys.byteorder)

    def run_int8(self, q: np.ndarray) -> tuple[np.ndarray, int]:
        """(outputs, µs) for a quantised input (LOAD_INPUT + INFER)."""
        return self._ask(b"Q" + np.ascontiguousarray(q, np.int8).reshape(-1)[: self.input_size].tobytes())

    def run_uv(self, x_uv: np.ndarray) -> tuple[np.ndarray, int]:
        """(outputs, µs) for a window of filtered microvolts, quantised by the firmware's own code (WINDOW_INFER)."""
        return self._ask(b"U" + np.ascontiguousarray(x_uv, "<f8").reshape(-1)[: self.input_size].tobytes())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, Exception):  # noqa: BLE001 - a dead pipe or a slow exit: end it
                self.proc.kill()
                self.proc.wait()


class _DeviceModel:
    """The INT8 model a device runs (our C engine's host build of the package's model) plus the device-side
    window buffer."""

    def __init__(self, package_dir: str, sampling_rate: int):
        from ecgedge.contract.package import load_package

        self.package = load_package(package_dir, allow_unsigned=True)
        if not self.package.has("model_int8.tflite"):
            raise ConfigError(f"sim package {package_dir} has no model_int8.tflite")
        self.tflite_sha = bytes.fromhex(self.package.model_sha256)
        self.input_buf: np.ndarray | None = None
        self.window = self.package.window_samples
        if int(self.package.sampling_rate) != sampling_rate:
            raise ConfigError(f"sim at {sampling_rate} Hz cannot run WINDOW_INFER for a "
                              f"{self.package.sampling_rate:g} Hz model; set fs={self.package.sampling_rate:g}")
        shape = self.package.input.get("tflite_shape") or [self.window]
        self.input_size = int(np.prod(shape))
        try:
            self.engine = EngineProcess(self.package.path, self.input_size, len(self.package.outputs))
        except EdgeError as e:
            raise ConfigError(f"sim package {package_dir}: cannot build its model with our C engine: {e}") from None
        from ecgedge.signals import StreamingFilter

        self.filter = StreamingFilter(sampling_rate, self.package.preprocessing)
        self.filtered = np.zeros(0)
        self.filtered_first = 0  # sample index of filtered[0]

    def push(self, counts: np.ndarray, uv_per_lsb: float) -> None:
        y = self.filter.process(counts.astype(np.float64) * uv_per_lsb)
        self.filtered = np.concatenate([self.filtered, y])
        keep = 4 * self.window
        if self.filtered.size > keep:
            cut = self.filtered.size - keep
            self.filtered = self.filtered[cut:]
            self.filtered_first += cut

    def close(self) -> None:
        self.engine.close()


class VirtualDevice:
    def __init__(self, cfg: SimConfig):
        cfg.validate()
        self.cfg = cfg
        self.source = _Source(cfg)
        self.model = _DeviceModel(cfg.package, cfg.sampling_rate) if cfg.package else None
        self._rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0xD509]))
        self._sink = None
        self._send_lock = asyncio.Lock()
        self._tx_seq = int(cfg.seq0)
        self._decoder = P.FrameDecoder()
        self._stream_task: asyncio.Task | None = None
        self.streaming = False  # a session started and not stopped
        self.generated = 0  # samples the ADC produced since START
        self.next_send = 0  # next sample index to send
        self.boot_monotonic = time.monotonic()
        self._t0 = self.boot_monotonic
        self._history: collections.deque = collections.deque()  # (first_index, counts, dropped) recent frames
        self.dropped: list[tuple[int, int]] = []  # (start_sample, length) lost to overruns
        self.corrupted: list[tuple[int, int]] = []  # (start_sample, length) sent corrupted
        self.overruns = 0
        self.dropped_samples = 0
        self._drop_left = 0
        self._truth_chunks: list[np.ndarray] = []
        self._truth_file = None
        self._truth_flushed = 0.0
        self.connections = 0
        self.disconnect_after_frames: int | None = None  # fault injection: drop the link after N frames
        if cfg.truth:
            Path(cfg.truth).parent.mkdir(parents=True, exist_ok=True)
            self._truth_file = open(str(cfg.truth) + ".i16", "wb")

    # -- ground truth ------------------------------------------------------------------------
    def truth_counts(self) -> np.ndarray:
        return np.concatenate(self._truth_chunks) if self._truth_chunks else np.zeros(0, np.int16)

    def truth_meta(self) -> dict:
        return {"sampling_rate": self.cfg.sampling_rate, "uv_per_lsb": self.cfg.uv_per_lsb,
                "samples": self.generated, "dropped": [list(d) for d in self.dropped],
                "corrupted": [list(d) for d in self.corrupted], "lost": [list(d) for d in self.lost_ranges()],
                "lead_off": [list(x) for x in self.cfg.lead_off], "k": self.cfg.k, "hr": self.cfg.hr,
                "seed": self.cfg.seed, "replay": self.cfg.replay}

    def flush_truth(self) -> None:
        if self._truth_file is None:
            return
        self._truth_file.flush()
        tmp = Path(str(self.cfg.truth) + ".json.tmp")
        tmp.write_text(json.dumps(self.truth_meta()))
        tmp.replace(str(self.cfg.truth) + ".json")

    def close(self) -> None:
        if self._stream_task is not None:
            self._stream_task.cancel()
        if self.model is not None:
            self.model.close()
        self.flush_truth()
        if self._truth_file is not None:
            self._truth_file.close()
            self._truth_file = None

    # -- status --------------------------------------------------------------------------------
    def signal_seconds(self) -> float:
        return self.generated / self.cfg.sampling_rate

    def lead_off_at(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.cfg.lead_off)

    def battery_pct(self) -> int:
        return int(round(max(0.0, self.cfg.battery - self.signal_seconds() / 3600 * self.cfg.battery_drain_pct_per_h)))

    def status(self) -> P.Status:
        return P.Status(int(self.lead_off_at(self.signal_seconds())), self.battery_pct(), self.overruns,
                        self.dropped_samples, self.generated)

    def info(self) -> P.Info:
        flags, window, scale, zp, n_out, sha, arena = 0, 0, 0.0, 0, 0, bytes(32), 0
        if self.model is not None:
            pkg = self.model.package
            flags = P.INFO_FLAG_MODEL | (P.INFO_FLAG_DEMO if pkg.demo else 0)
            window, n_out, sha = pkg.window_samples, len(pkg.outputs), self.model.tflite_sha
            scale, zp = float(pkg.input["tflite_scale"]), int(pkg.input.get("tflite_zero_point", 0))
        return P.Info(P.PROTO_VERSION, flags, self.cfg.sampling_rate, self.cfg.uv_per_lsb, window, scale, zp, n_out,
                      int(P.CounterKind.MICROSECONDS) if self.model else 0, arena, sha,
                      f"{FIRMWARE_NAME} {self.cfg.model}")

    # -- link ------------------------------------------------------------------------------------
    def attach(self, sink) -> None:
        """A host connected; `sink` is an async callable taking bytes."""
        self._sink = sink
        self._decoder.reset()
        self.connections += 1

    def detach(self) -> None:
        """The link went away: stop sending (the session stays open and resumes on the next START)."""
        self._sink = None
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    async def _send(self, msg_type, payload=b"", corrupt: bool = False) -> None:
        if self._sink is None:
            return
        async with self._send_lock:  # a frame is written whole, never interleaved with another
            sink = self._sink
            if sink is None:
                return
            data = P.encode_frame(msg_type, self._tx_seq, payload)
            self._tx_seq = (self._tx_seq + 1) & 0xFFFF
            if corrupt:  # a line error: one byte changed (never the delimiter)
                b = bytearray(data)
                pos = int(self._rng.integers(0, len(b) - 1))
                b[pos] ^= int(self._rng.integers(1, 256))
                data = bytes(b)
            await sink(data)

    async def _error(self, code, related_seq, msg):
        await self._send(P.MsgType.ERROR, P.pack_error(P.ErrorMsg(int(code), related_seq, msg)))

    async def _ack(self, frame, status=0):
        await self._send(P.MsgType.ACK, P.pack_ack(P.Ack(int(frame.type), frame.seq, status)))

    async def receive(self, data: bytes) -> None:
        before = dict(self._decoder.stats)
        frames = self._decoder.feed(data)
        if self._decoder.stats["crc_errors"] > before["crc_errors"]:
            await self._error(P.ErrorCode.ERR_CRC, 0, self._decoder.last_error or "crc")
        if self._decoder.stats["unknown_type"] > before["unknown_type"]:
            await self._error(P.ErrorCode.ERR_TYPE, 0, self._decoder.last_error or "type")
        if self._decoder.stats["version_errors"] > before["version_errors"]:
            await self._error(P.ErrorCode.ERR_VERSION, 0, self._decoder.last_error or "version")
        for f in frames:
            try:
                await self.handle(f)
            except ProtocolError as e:
                await self._error(P.ErrorCode.ERR_LENGTH, f.seq, str(e))

    async def handle(self, f: P.Frame) -> None:
        T = P.MsgType
        if f.type in (T.INFO, T.SAMPLES, T.RESULT, T.ACK, T.STATUS, T.ERROR):
            await self._error(P.ErrorCode.ERR_TYPE, f.seq, f"{T(f.type).name} is device -> host")
            return
        payload = P.unpack_payload(f)
        if f.type == T.HELLO:
            await self._send(T.INFO, P.pack_info(self.info()))
        elif f.type == T.GET_STATUS:
            await self._send(T.STATUS, P.pack_status(self.status()))
        elif f.type == T.START:
            self._start()
            await self._ack(f)
            self._ensure_streaming()
        elif f.type == T.STOP:
            self.streaming = False
            if self._stream_task is not None:
                self._stream_task.cancel()
                self._stream_task = None
            self.flush_truth()
            await self._ack(f)
        elif f.type == T.LOAD_INPUT:
            await self._load_input(f, payload)
        elif f.type == T.INFER:
            await self._infer(f, payload)
        elif f.type == T.WINDOW_INFER:
            await self._window_infer(f, payload)

    def _start(self) -> None:
        if self.streaming:
            # resume: resend recent frames (the host drops duplicates by sample index)
            spf = self.cfg.samples_per_frame
            rewind = int(self.cfg.rewind_s * self.cfg.sampling_rate) // spf * spf
            oldest = self._history[0][0] if self._history else self.next_send
            self.next_send = max(oldest, self.next_send - rewind)
            return
        self.streaming = True
        self.generated = 0
        self.next_send = 0
        self._history.clear()
        self._t0 = time.monotonic()

    def _ensure_streaming(self):
        if self._stream_task is None or self._stream_task.done():
            self._stream_task = asyncio.get_running_loop().create_task(self._stream_loop())

    # -- sampling ----------------------------------------------------------------------------
    def _produce_frame(self) -> None:
        """The ADC makes one frame of samples; an overrun may lose it."""
        n = self.cfg.samples_per_frame
        first = self.generated
        x = self.source.read(n) * self.cfg.gain
        t = (first + np.arange(n)) / self.cfg.sampling_rate
        counts = np.round(x / self.cfg.uv_per_lsb)
        if self.cfg.lead_off:
            off = np.array([self.lead_off_at(ti) for ti in t])
            counts[off] = 32767  # an open electrode drives the front end to the rail
        counts = np.clip(counts, -32768, 32767).astype(np.int16)
        self.generated += n
        self._truth_chunks.append(counts)
        if self._truth_file is not None:
            self._truth_file.write(counts.astype("<i2").tobytes())
        if self.model is not None:
            self.model.push(counts, self.cfg.uv_per_lsb)
        lost = False
        if self._drop_left > 0:
            self._drop_left -= 1
            lost = True
        elif self.cfg.drop > 0 and self._rng.random() < self.cfg.drop:
            self._drop_left = self.cfg.burst - 1
            self.overruns += 1
            lost = True
        if lost:
            self.dropped_samples += n
            self._record_loss(self.dropped, first, n)
        self._history.append((first, counts, lost))
        limit = int(self.cfg.max_buffer_s * self.cfg.sampling_rate)
        while self._history and self._history[0][0] < first - limit:
            self._history.popleft()

    def _clock_offset_us(self, index: int) -> int:
        t = index / self.cfg.sampling_rate
        return int(sum(jump for at, jump in self.cfg.clock_jump if t >= at) * 1e6)

    @staticmethod
    def _record_loss(ranges: list, first: int, n: int) -> None:
        if ranges and ranges[-1][0] + ranges[-1][1] == first:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + n)
        elif not ranges or ranges[-1][0] + ranges[-1][1] < first:
            ranges.append((first, n))

    def lost_ranges(self) -> list[tuple[int, int]]:
        """Every sample range the host cannot have received (overruns + corrupted frames), merged."""
        out: list = []
        for a, n in sorted(self.dropped + self.corrupted):
            if out and out[-1][0] + out[-1][1] >= a:
                end = max(out[-1][0] + out[-1][1], a + n)
                out[-1] = (out[-1][0], end - out[-1][0])
            else:
                out.append((a, n))
        return out

    def _due_samples(self) -> int:
        elapsed = time.monotonic() - self._t0
        return int(elapsed * self.cfg.speed * self.cfg.sampling_rate * (1 + self.cfg.drift_ppm * 1e-6))

    async def _stream_loop(self):
        frames_sent = 0
        period_us = 1e6 / self.cfg.sampling_rate
        boot_us = int((self._t0 - self.boot_monotonic) * 1e6)
        try:
            while self.streaming and self._sink is not None:
                due = self._due_samples()
                made = 0
                ahead = int(2 * self.cfg.sampling_rate)  # a slow host back-pressures the simulated clock
                while self.generated + self.cfg.samples_per_frame <= due and made < 20 \
                        and self.generated - self.next_send < ahead:
                    self._produce_frame()
                    made += 1
                sent_any = False
                spf = self.cfg.samples_per_frame
                while self._sink is not None and self._history and self.next_send + spf <= self.generated:
                    first, counts, lost = self._history[(self.next_send - self._history[0][0]) // spf]
                    self.next_send = first + counts.size
                    if lost:
                        continue
                    t_us = boot_us + int(first * period_us) + self._clock_offset_us(first)
                    payload = P.pack_samples(P.Samples(first & 0xFFFFFFFF, t_us, counts))
                    bad = self.cfg.corrupt > 0 and self._rng.random() < self.cfg.corrupt
                    if bad:
                        self._record_loss(self.corrupted, first, counts.size)
                    await self._send(P.MsgType.SAMPLES, payload, corrupt=bad)
                    sent_any = True
                    frames_sent += 1
                    if frames_sent % 8 == 0:
                        await asyncio.sleep(0)  # let the host's requests in
                    if self.disconnect_after_frames and frames_sent >= self.disconnect_after_frames:
                        self.disconnect_after_frames = None
                        raise ConnectionResetError("fault injection: link dropped")
                now = time.monotonic()
                if self._truth_file is not None and now - self._truth_flushed > 0.5:
                    self._truth_flushed = now
                    self.flush_truth()
                if not sent_any:
                    # sleep until the next frame is due
                    need = self.generated + self.cfg.samples_per_frame
                    wait = need / (self.cfg.speed * self.cfg.sampling_rate * (1 + self.cfg.drift_ppm * 1e-6)) \
                        - (now - self._t0)
                    await asyncio.sleep(min(max(wait, 0.0005), 0.05))
                else:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except (OSError, EdgeError) as e:
            log.info("link lost while streaming: %s", e)
            self._sink_lost()

    def _sink_lost(self):
        self._sink = None
        self._stream_task = None
        if hasattr(self, "on_link_lost") and self.on_link_lost:
            self.on_link_lost()

    on_link_lost = None

    # -- inference ---------------------------------------------------------------------------
    async def _load_input(self, f, m: P.LoadInput):
        if self.model is None:
            await self._error(P.ErrorCode.ERR_STATE, f.seq, "no model built in")
            return
        size = self.model.input_size
        if m.offset + len(m.data) > size:
            await self._error(P.ErrorCode.ERR_RANGE, f.seq, f"offset {m.offset}+{len(m.data)} > input size {size}")
            return
        if self.model.input_buf is None:
            self.model.input_buf = np.zeros(size, np.int8)
        self.model.input_buf[m.offset:m.offset + len(m.data)] = np.frombuffer(m.data, np.int8)
        await self._ack(f)

    async def _run(self, f, q: np.ndarray | None, count=1, warmup=0, x_uv: np.ndarray | None = None):
        """Run the model (q: a loaded int8 input; x_uv: filtered microvolts the engine quantises itself)."""
        out, us = None, 0
        try:
            for _ in range(max(1, count + warmup)):  # the last run's time: the engine's own, not the pipe's
                out, us = self.model.engine.run_int8(q) if x_uv is None else self.model.engine.run_uv(x_uv)
        except EdgeError as e:
            await self._error(P.ErrorCode.ERR_MODEL, f.seq, str(e)[:200])
            return
        r = P.Result(tuple(int(v) for v in out), int(P.CounterKind.MICROSECONDS), us, us)
        await self._send(P.MsgType.RESULT, P.pack_result(r))

    async def _infer(self, f, m: P.Infer):
        if self.model is None or self.model.input_buf is None:
            await self._error(P.ErrorCode.ERR_STATE, f.seq, "INFER before any input" if self.model else "no model")
            return
        await self._run(f, self.model.input_buf, m.count, m.warmup)

    async def _window_infer(self, f, m: P.WindowInfer):
        if self.model is None:
            await self._error(P.ErrorCode.ERR_STATE, f.seq, "no model built in")
            return
        w = self.model.window
        a = m.first_index - self.model.filtered_first
        if a < 0 or a + w > self.model.filtered.size:
            await self._error(P.ErrorCode.ERR_RANGE, f.seq,
                              f"window {m.first_index}..{m.first_index + w} not in the device buffer "
                              f"{self.model.filtered_first}..{self.model.filtered_first + self.model.filtered.size}")
            return
        # quantised by the device's own code (the firmware's ecg_input.h, in the engine process), not the host's
        await self._run(f, None, x_uv=self.model.filtered[a:a + w])


def ground_truth(cfg: SimConfig, n_samples: int) -> np.ndarray:
    """The first `n_samples` ADC counts a device with this configuration produces after START (no link, no
    model): what any recording of it must hold. Same seed, same samples, every time."""
    import dataclasses

    dev = VirtualDevice(dataclasses.replace(cfg, package=None, truth=None, drop=0.0, corrupt=0.0))
    while dev.generated < n_samples:
        dev._produce_frame()
    return dev.truth_counts()[:n_samples]


def read_truth(prefix: str | Path) -> tuple[np.ndarray, dict]:
    """Ground truth written by a simulator run with `truth=PREFIX`: (int16 counts, meta)."""
    counts = np.fromfile(str(prefix) + ".i16", dtype="<i2")
    meta_path = Path(str(prefix) + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return counts, meta

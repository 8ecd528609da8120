"""fault://<inner url>: a transport wrapper that injects link faults into the real byte stream.

Parameters (taken out of the inner URL's query before the inner transport sees it):
  byte_error_rate=P   each received byte is XOR-ed with a random non-zero value with probability P
  dup=P               a complete received frame is delivered twice with probability P
  reorder=P           a complete frame is swapped with the next frame of the same read with probability P
  drop_link_every=N   after every N frames, half of the next frame arrives and the link drops (TransportError)
  reboot_every=N      like drop_link_every, but a sim:// device also reboots (a fresh device, index 0)
  wrong_baud_every=N  after every N received bytes, a burst of `baud_burst` bytes (default 256) is read at the wrong
                      baud rate (`baud_ratio`, default 8: sent at 921600, sampled at 115200): a UART model (start
                      bit, 8 data bits LSB first, stop bit) samples the sender's line at the receiver's rate; a
                      framing error delivers 0x00 (Linux's default), and with probability `overrun` (default 0.5)
                      the receive FIFO overruns and loses up to 64 bytes of the burst
  fault_seed=S        seed of the injector (default 0)
Faults act on device -> host bytes, as radio and UART errors do; the runtime parses what arrives.
"""

from __future__ import annotations

import dataclasses
import numpy as np

from ecgedge.edge_runtime.transports.base import Transport, split_wrapper_url
from ecgedge.errors import ConfigError, ProtocolError, TransportError
from ecgedge.firmware_bridge.protocol import FrameDecoder, MsgType, unpack_samples

FAULT_PARAMS = {"byte_error_rate": float, "dup": float, "reorder": float, "drop_link_every": int,
                "reboot_every": int, "fault_seed": int, "wrong_baud_every": int, "baud_burst": int,
                "baud_ratio": float, "overrun": float}


def uart_misread(data: bytes, ratio: float) -> bytes:
    """What a UART receiving at 1/`ratio` of the sender's baud rate makes of `data` (8N1, idle high): it waits for
    a start bit, samples 8 data bits and the stop bit at its own bit time, and delivers 0x00 on a framing error
    (stop bit low)."""
    bits = np.ones(len(data) * 10 + 10, np.uint8)  # the line, one entry per sender bit time
    for j, b in enumerate(data):
        bits[10 * j] = 0
        bits[10 * j + 1:10 * j + 9] = [(b >> k) & 1 for k in range(8)]
    lows = np.flatnonzero(bits == 0)
    n = bits.size

    def at(t: float) -> int:
        i = int(t)
        return int(bits[i]) if i < n else 1

    out, t = bytearray(), 0.0
    while True:
        k = int(np.searchsorted(lows, np.ceil(t)))
        if k >= lows.size:
            break
        start = float(lows[k])
        if at(start + ratio / 2) != 0:  # a glitch, not a start bit
            t = start + 1
            continue
        byte = sum(at(start + ratio * (i + 1.5)) << i for i in range(8))
        out.append(byte if at(start + ratio * 9.5) == 1 else 0)
        t = start + ratio * 9.5
    return bytes(out)


class FaultTransport(Transport):
    def __init__(self, url: str):
        super().__init__(url)
        inner, own = split_wrapper_url(url, "fault", FAULT_PARAMS, "fault://sim://pocket_k?dup=0.01")
        self.params = {}
        for k, v in own:
            try:
                self.params[k] = FAULT_PARAMS[k](v)
            except ValueError:
                raise ConfigError(f"fault parameter {k}={v!r} is not a {FAULT_PARAMS[k].__name__}") from None
        for k in ("byte_error_rate", "dup", "reorder", "overrun"):
            if not 0 <= self.params.get(k, 0.0) < 1:
                raise ConfigError(f"fault parameter {k}={self.params[k]}: expected a probability in [0, 1)")
        for k in ("drop_link_every", "reboot_every", "wrong_baud_every", "baud_burst"):
            if self.params.get(k, 1) < 1:
                raise ConfigError(f"fault parameter {k}={self.params[k]}: expected >= 1")
        if not 0.05 <= self.params.get("baud_ratio", 8.0) <= 20:
            raise ConfigError(f"fault parameter baud_ratio={self.params['baud_ratio']}: expected 0.05..20")
        from ecgedge.edge_runtime.transports.base import open_transport

        self.inner = open_transport(inner)
        if "reboot_every" in self.params and not hasattr(self.inner, "device"):
            raise ConfigError(f"{url!r}: reboot_every needs a sim:// inner device")
        self._rng = np.random.default_rng(self.params.get("fault_seed", 0))
        self._partial = b""  # bytes of a frame not yet complete
        self._held: bytes | None = None  # a frame held back to be sent after the next one (reorder)
        self._frames_since_cut = 0
        self.devices: list = []  # every sim device this link talked to (one more per reboot)
        self.injected = {"bytes_corrupted": 0, "frames_duplicated": 0, "frames_reordered": 0, "link_drops": 0,
                         "reboots": 0, "wrong_baud_bursts": 0, "bytes_overrun": 0}
        self._bytes_seen = 0
        # (device first index, samples) of every SAMPLES frame a link drop destroyed: what a host can never have
        self.destroyed: list[tuple[int, int]] = []

    async def open(self):
        self._partial = b""
        self._held = None
        await self.inner.open()
        dev = getattr(self.inner, "device", None)
        if dev is not None and (not self.devices or self.devices[-1] is not dev):
            self.devices.append(dev)
        self.is_open = True

    def _reboot(self):
        from ecgedge.device_sim.device import VirtualDevice

        old = self.inner.device
        old.close()
        cfg = dataclasses.replace(old.cfg, seed=old.cfg.seed + 1000 * (len(self.devices)), truth=None)
        self.inner.device = VirtualDevice(cfg)

    def _note_destroyed(self, data: bytes) -> None:
        for fr in FrameDecoder().feed(data):
            if fr.type == MsgType.SAMPLES:
                try:
                    smp = unpack_samples(fr.payload)
                except ProtocolError:
                    continue
                self.destroyed.append((smp.first_index, smp.samples.size))

    async def _cut(self, head: bytes, kind: str) -> None:
        """The link dies with `head` (part of a frame) delivered; the caller returns it, next read raises."""
        self.injected["reboots" if kind == "reboot" else "link_drops"] += 1
        if kind == "reboot":
            self._reboot()
        await self.inner.close()
        self._dead = True

    _dead = False

    async def read(self, timeout=1.0):
        if self._dead:
            self._dead = False
            self.is_open = False
            raise TransportError(f"{self.url}: link dropped (fault injection)")
        data = await self.inner.read(timeout)
        if not data:
            return data
        p = self.params
        if p.get("wrong_baud_every"):
            data = self._wrong_baud(data)
        if p.get("byte_error_rate", 0) > 0:
            buf = np.frombuffer(data, np.uint8).copy()
            hit = self._rng.random(buf.size) < p["byte_error_rate"]
            if hit.any():
                buf[hit] ^= self._rng.integers(1, 256, int(hit.sum()), dtype=np.uint8)
                self.injected["bytes_corrupted"] += int(hit.sum())
            data = buf.tobytes()
        stream = self._partial + data
        cut = stream.rfind(b"\x00") + 1
        frames = [f + b"\x00" for f in stream[:cut].split(b"\x00")[:-1]]
        self._partial = stream[cut:]
        out: list[bytes] = []
        i = 0
        every = p.get("reboot_every") or p.get("drop_link_every")
        while i < len(frames):
            f = frames[i]
            if every and self._frames_since_cut >= every and len(f) > 2:
                self._frames_since_cut = 0
                self._note_destroyed(b"".join(frames[i:]))
                await self._cut(f[: len(f) // 2], "reboot" if "reboot_every" in p else "drop")
                self._partial = b""
                return b"".join(out) + f[: len(f) // 2]
            if self._held is not None:
                # a frame held back from the previous read goes out right after this one (swapped)
                out += [f, self._held]
                self._held = None
                i += 1
                self._frames_since_cut += 2
                continue
            if p.get("reorder", 0) > 0 and self._rng.random() < p["reorder"]:
                self.injected["frames_reordered"] += 1
                if i + 1 < len(frames):
                    out += [frames[i + 1], f]
                    i += 2
                    self._frames_since_cut += 2
                else:
                    # last frame of this read: hold it so reads of one frame each are reordered too
                    self._held = f
                    i += 1
                continue
            out.append(f)
            if p.get("dup", 0) > 0 and self._rng.random() < p["dup"]:
                out.append(f)
                self.injected["frames_duplicated"] += 1
            i += 1
            self._frames_since_cut += 1
        return b"".join(out)

    def _wrong_baud(self, data: bytes) -> bytes:
        """A burst read at the wrong baud rate (and maybe an overrun) where the byte count crosses a multiple of
        wrong_baud_every."""
        p, every = self.params, self.params["wrong_baud_every"]
        before, self._bytes_seen = self._bytes_seen, self._bytes_seen + len(data)
        if self._bytes_seen // every == before // every:
            return data
        k = (before // every + 1) * every - before
        burst = data[k:k + p.get("baud_burst", 256)]
        bad = uart_misread(burst, p.get("baud_ratio", 8.0))
        if self._rng.random() < p.get("overrun", 0.5) and bad:
            a = int(self._rng.integers(0, len(bad)))
            n = int(self._rng.integers(1, 65))
            self.injected["bytes_overrun"] += len(bad[a:a + n])
            bad = bad[:a] + bad[a + n:]
        self.injected["wrong_baud_bursts"] += 1
        return data[:k] + bad + data[k + len(burst):]

    async def write(self, data):
        if self._dead:
            raise TransportError(f"{self.url}: link dropped (fault injection)")
        await self.inner.write(data)

    async def close(self):
        self._dead = False
        await self.inner.close()
        self.is_open = False


@dataclasses.dataclass(frozen=True)
class KillWorkerAt:
    """A bench `on_window` hook that kills the worker running a window (the farm's fault: a worker process that
    crashes or is OOM-killed mid-shard). The first process to reach `window` writes its PID to `marker` and
    SIGKILLs itself; once the marker exists the hook does nothing, so the retried shard runs through.
    Picklable, so it travels to local worker processes and Ray workers alike."""
    window: int
    marker: str

    def __call__(self, i: int, device) -> None:
        import os
        import signal

        if i != self.window:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

"""fault://<inner url>: a transport wrapper that injects link faults into the real byte stream.

Parameters (taken out of the inner URL's query before the inner transport sees it):
  byte_error_rate=P   each received byte is XOR-ed with a random non-zero value with probability P
  dup=P               a complete received frame is delivered twice with probability P
  reorder=P           a complete frame is swapped with the next frame of the same read with probability P
  drop_link_every=N   after every N frames, half of the next frame arrives and the link drops (TransportError)
  reboot_every=N      like drop_link_every, but a sim:// device also reboots (a fresh device, index 0)
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
                "reboot_every": int, "fault_seed": int}


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
        for k in ("byte_error_rate", "dup", "reorder"):
            if not 0 <= self.params.get(k, 0.0) < 1:
                raise ConfigError(f"fault parameter {k}={self.params[k]}: expected a probability in [0, 1)")
        for k in ("drop_link_every", "reboot_every"):
            if self.params.get(k, 1) < 1:
                raise ConfigError(f"fault parameter {k}={self.params[k]}: expected >= 1 frames")
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
                         "reboots": 0}
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

    async def write(self, data):
        if self._dead:
            raise TransportError(f"{self.url}: link dropped (fault injection)")
        await self.inner.write(data)

    async def close(self):
        self._dead = False
        await self.inner.close()
        self.is_open = False

"""DeviceLink: framing, sequence numbers and request/response over any Transport. Never hangs."""

from __future__ import annotations

import asyncio
import collections
import logging

from ecgedge.errors import DeviceTimeout, ProtocolError
from ecgedge.firmware_bridge.protocol import FrameDecoder, Frame, MsgType, encode_frame, unpack_error

log = logging.getLogger("ecgedge.link")


class DeviceErrorReply(ProtocolError):
    """The device answered a request with an ERROR frame (code and message in the text)."""

    def __init__(self, msg: str, code: int):
        super().__init__(msg)
        self.code = code


class DeviceLink:
    def __init__(self, transport, log_defects: bool = True):
        self.transport = transport
        self.decoder = FrameDecoder(log=(lambda m: log.warning("%s: %s", transport.url, m)) if log_defects else None)
        self._pending: collections.deque[Frame] = collections.deque()
        self._tx_seq = 0
        self._rx_last: int | None = None
        self.frames_lost = 0  # seq gaps in what the device sent
        self.frames_in = 0
        self.frames_out = 0
        self.frames_reordered = 0  # swapped neighbours put back in order
        self.frames_late = 0  # arrived after a later frame (counted lost first, then taken back)
        self.frames_repeated = 0  # the same seq again (a duplicate on the link)
        self._missing: collections.deque[int] = collections.deque(maxlen=256)  # seqs counted lost, may come late
        self._held: Frame | None = None
        self._lock = asyncio.Lock()

    @property
    def stats(self) -> dict:
        return {**self.decoder.stats, "frames_lost": self.frames_lost, "frames_in": self.frames_in,
                "frames_out": self.frames_out, "frames_reordered": self.frames_reordered,
                "frames_late": self.frames_late, "frames_repeated": self.frames_repeated}

    async def open(self):
        await self.transport.open()

    async def close(self):
        await self.transport.close()

    def resync(self):
        """Forget partial input and the receive sequence (after a reconnect)."""
        self.decoder.reset()
        self._pending.clear()
        self._rx_last = None
        self._held = None
        self._missing.clear()

    async def send(self, msg_type: int, payload: bytes = b"") -> int:
        seq = self._tx_seq
        self._tx_seq = (self._tx_seq + 1) & 0xFFFF
        await self.transport.write(encode_frame(msg_type, seq, payload))
        self.frames_out += 1
        return seq

    def _accept(self, frame: Frame) -> None:
        """Queue a frame in sequence order: a frame that skips exactly one seq is held back until the next
        frame, so two frames swapped on the way (radio retransmission) are delivered in order."""
        held, self._held = self._held, None
        if held is not None:
            if frame.seq == (self._rx_last + 1) & 0xFFFF and held.seq == (frame.seq + 1) & 0xFFFF:
                self.frames_reordered += 1
                self._deliver(frame)
                self._deliver(held)
                return
            self._deliver(held)
        if self._rx_last is not None and frame.seq == (self._rx_last + 2) & 0xFFFF:
            self._held = frame
            return
        self._deliver(frame)

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._deliver(held)

    def _deliver(self, frame: Frame) -> None:
        """Queue a frame; count the sequence numbers it skips as lost (modulo 2^16). A frame BEHIND the newest
        one (late, or a duplicate) never moves the sequence back, and a late one takes its loss back: moving
        back made the next frame look like a skip (frames counted lost that were not)."""
        ahead = True
        if self._rx_last is not None:
            gap = (frame.seq - self._rx_last - 1) & 0xFFFF
            if gap and gap < 0x8000:
                self.frames_lost += gap
                self._missing.extend((self._rx_last + 1 + k) & 0xFFFF for k in range(min(gap, 256)))
            elif gap >= 0x8000:  # at or behind the newest seq
                ahead = False
                self.frames_repeated += int(frame.seq == self._rx_last)
                if frame.seq in self._missing:
                    self._missing.remove(frame.seq)
                    self.frames_lost -= 1
                    self.frames_late += 1
        if ahead:
            self._rx_last = frame.seq
        self.frames_in += 1
        self._pending.append(frame)

    async def _fill(self, timeout: float) -> None:
        data = await self.transport.read(timeout)
        for f in self.decoder.feed(data):
            self._accept(f)
        if not data:  # nothing more came within the timeout: the frame in between is lost, not late
            self._release_held()

    async def recv(self, timeout: float = 2.0) -> Frame:
        """Next frame; DeviceTimeout if none arrives within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending:
            left = deadline - loop.time()
            if left <= 0:
                raise DeviceTimeout(f"{self.transport.url}: no frame within {timeout:g} s")
            await self._fill(min(left, 0.5))
        return self._pending.popleft()

    def take_received(self, msg_type: int) -> list[Frame]:
        """After the link died: the frames of one type that arrived whole but were not yet read (a frame held
        back for reordering included), so a reconnect does not throw away data that did arrive."""
        self._release_held()
        return self.take_pending(msg_type)

    def take_pending(self, msg_type: int) -> list[Frame]:
        """Remove and return the queued frames of one type (e.g. SAMPLES that arrived during a request)."""
        keep, out = collections.deque(), []
        for f in self._pending:
            (out if f.type == msg_type else keep).append(f)
        self._pending = keep
        return out

    async def request(self, msg_type: int, payload: bytes = b"", expect: int | None = None,
                      timeout: float = 2.0) -> Frame:
        """Send and wait for the answer of type `expect`. Other frames stay queued for recv().

        A device ERROR naming this request raises ProtocolError; silence raises DeviceTimeout.
        """
        async with self._lock:
            seq = await self.send(msg_type, payload)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            scanned = 0
            while True:
                items = list(self._pending)
                for i in range(scanned, len(items)):
                    f = items[i]
                    if f.type == expect or (expect is None and f.type != MsgType.SAMPLES):
                        del self._pending[i]
                        return f
                    if f.type == MsgType.ERROR:
                        err = unpack_error(f.payload)
                        if err.related_seq == seq:
                            del self._pending[i]
                            raise DeviceErrorReply(f"device answered {MsgType(msg_type).name} with error "
                                                   f"{err.code}: {err.msg}", err.code)
                scanned = len(items)
                left = deadline - loop.time()
                if left <= 0:
                    raise DeviceTimeout(f"{self.transport.url}: no {MsgType(expect).name if expect else 'answer'} "
                                        f"to {MsgType(msg_type).name} within {timeout:g} s")
                await self._fill(min(left, 0.5))

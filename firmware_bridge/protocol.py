"""Python codec of the ecgedge wire protocol, version 1 (spec: docs/protocol.md).

Pure Python + cobs + numpy, no heavy imports: the handheld runtime, the device simulator, the HIL
bench and the tests all use it. The C codec (firmware_bridge/c/) is written apart and tested against
this one.

    wire:  COBS(frame) 0x00
    frame: version:u8 type:u8 seq:u16 len:u16 payload[len] crc:u16   (little-endian)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

import numpy as np
from cobs import cobs

from ecgedge.errors import ProtocolError

PROTO_VERSION = 1
MAX_PAYLOAD = 1024
HEADER_SIZE = 6  # version, type, seq, len
CRC_SIZE = 2
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 1032
MAX_ENCODED = 1 + MAX_FRAME + -(-MAX_FRAME // 254)  # COBS worst case, without the 0x00
SAMPLES_HEADER = 14  # first_index:u32 t_us:u64 n:u16
MAX_SAMPLES_PER_FRAME = (MAX_PAYLOAD - SAMPLES_HEADER) // 2  # 505

_HEADER = struct.Struct("<BBHH")


class MsgType(enum.IntEnum):
    HELLO = 0x01
    INFO = 0x02
    SAMPLES = 0x03
    START = 0x04
    STOP = 0x05
    LOAD_INPUT = 0x10
    INFER = 0x11
    RESULT = 0x12
    ACK = 0x13
    STATUS = 0x20
    GET_STATUS = 0x21
    WINDOW_INFER = 0x22
    ERROR = 0x7F


class ErrorCode(enum.IntEnum):
    ERR_VERSION = 1
    ERR_TYPE = 2
    ERR_LENGTH = 3
    ERR_CRC = 4
    ERR_RANGE = 5
    ERR_STATE = 6
    ERR_MODEL = 7


class CounterKind(enum.IntEnum):
    NONE = 0
    INSTRUCTIONS = 1
    CYCLES = 2
    MICROSECONDS = 3


INFO_FLAG_DEMO = 0x01
INFO_FLAG_MODEL = 0x02
INFO_FLAG_OPTIMIZED = 0x04

_KNOWN_TYPES = frozenset(int(t) for t in MsgType)


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _make_crc_table() -> list[int]:
    return [crc16_ccitt(bytes([i]), 0) for i in range(256)]


_CRC_TABLE = _make_crc_table()


def crc16_fast(data: bytes, crc: int = 0xFFFF) -> int:
    """Table-driven CRC-16/CCITT-FALSE (same result as `crc16_ccitt`, used on the hot path)."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class Frame:
    type: int  # a MsgType value
    seq: int
    payload: bytes = b""
    version: int = PROTO_VERSION

    @property
    def msg_type(self) -> MsgType:
        return MsgType(self.type)


def frame_bytes(msg_type: int, seq: int, payload: bytes = b"", version: int = PROTO_VERSION) -> bytes:
    """The raw (un-COBSed) frame: header + payload + crc."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    if not 0 <= int(seq) <= 0xFFFF:
        raise ProtocolError(f"seq {seq} outside 0..65535")
    body = _HEADER.pack(version & 0xFF, int(msg_type) & 0xFF, int(seq), len(payload)) + payload
    return body + struct.pack("<H", crc16_fast(body))


def encode_frame(msg_type: int, seq: int, payload: bytes = b"", version: int = PROTO_VERSION) -> bytes:
    """COBS-encoded frame followed by the 0x00 delimiter, ready for the wire."""
    return cobs.encode(frame_bytes(msg_type, seq, payload, version)) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one COBS block (without its 0x00 delimiter). Raises ProtocolError naming the defect."""
    return _parse(encoded)[0]


class _FrameDefect(ProtocolError):
    def __init__(self, kind: str, msg: str):
        super().__init__(msg)
        self.kind = kind


def _parse(encoded: bytes) -> tuple[Frame, None]:
    if len(encoded) > MAX_ENCODED:
        raise _FrameDefect("length_errors", f"encoded frame of {len(encoded)} bytes exceeds {MAX_ENCODED}")
    try:
        raw = cobs.decode(bytes(encoded))
    except cobs.DecodeError as e:
        raise _FrameDefect("cobs_errors", f"COBS decode failed: {e}") from None
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise _FrameDefect("length_errors", f"frame of {len(raw)} bytes is shorter than the 8-byte minimum")
    version, mtype, seq, length = _HEADER.unpack_from(raw)
    if length > MAX_PAYLOAD:
        raise _FrameDefect("length_errors", f"len={length} exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    if len(raw) != HEADER_SIZE + length + CRC_SIZE:
        raise _FrameDefect("length_errors", f"frame of {len(raw)} bytes does not match len={length} (expected {8 + length})")
    (crc,) = struct.unpack_from("<H", raw, HEADER_SIZE + length)
    calc = crc16_fast(raw[: HEADER_SIZE + length])
    if crc != calc:
        raise _FrameDefect("crc_errors", f"CRC 0x{crc:04X} != computed 0x{calc:04X} (seq {seq})")
    if version != PROTO_VERSION:
        raise _FrameDefect("version_errors", f"protocol version {version}, expected {PROTO_VERSION}")
    if mtype not in _KNOWN_TYPES:
        raise _FrameDefect("unknown_type", f"unknown message type 0x{mtype:02X}")
    return Frame(MsgType(mtype), seq, bytes(raw[HEADER_SIZE : HEADER_SIZE + length]), version), None


class FrameDecoder:
    """Incremental decoder: feed any bytes, get whole valid frames; defects are counted and skipped.

    Never raises on input. After a bad frame it resynchronises at the next 0x00. A run of more than
    MAX_ENCODED bytes without a delimiter is dropped (counted once as a length error).
    """

    STAT_KEYS = ("frames", "crc_errors", "cobs_errors", "length_errors", "unknown_type", "version_errors", "bytes")

    def __init__(self, log=None):
        self._buf = bytearray()
        self._overflow = False
        self.stats: dict[str, int] = {k: 0 for k in self.STAT_KEYS}
        self.last_error: str | None = None
        self._log = log  # optional callable(str) for defects

    @property
    def errors(self) -> int:
        return sum(v for k, v in self.stats.items() if k not in ("frames", "bytes"))

    def reset(self) -> None:
        self._buf.clear()
        self._overflow = False

    def _defect(self, kind: str, msg: str) -> None:
        self.stats[kind] += 1
        self.last_error = msg
        if self._log is not None:
            self._log(msg)

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        self.stats["bytes"] += len(data)
        start = 0
        data = bytes(data)
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                chunk = data[start:]
                if not self._overflow:
                    self._buf += chunk
                    if len(self._buf) > MAX_ENCODED:
                        self._defect("length_errors", f"no delimiter within {MAX_ENCODED} bytes; dropping until next 0x00")
                        self._buf.clear()
                        self._overflow = True
                break
            chunk = data[start:end]
            start = end + 1
            if self._overflow:
                self._overflow = False
                self._buf.clear()
                continue
            block = bytes(self._buf) + chunk if self._buf else chunk
            self._buf.clear()
            if not block:
                continue  # empty block between delimiters (idle line / resync padding)
            try:
                frame, _ = _parse(block)
            except _FrameDefect as e:
                self._defect(e.kind, str(e))
                continue
            self.stats["frames"] += 1
            frames.append(frame)
        return frames


# ---------------------------------------------------------------- payloads

def _need(payload: bytes, size: int, name: str, exact: bool = True) -> None:
    if (len(payload) != size) if exact else (len(payload) < size):
        rel = "" if exact else "at least "
        raise ProtocolError(f"{name} payload of {len(payload)} bytes, expected {rel}{size}")


@dataclass(frozen=True)
class Info:
    proto_version: int = PROTO_VERSION
    flags: int = 0
    sample_rate_hz: int = 500
    uv_per_lsb: float = 1.0
    window_len: int = 0
    input_scale: float = 0.0
    input_zero_point: int = 0
    n_outputs: int = 0
    counter_kind: int = 0
    arena_bytes: int = 0
    model_sha256: bytes = bytes(32)
    name: str = ""

    @property
    def demo(self) -> bool:
        return bool(self.flags & INFO_FLAG_DEMO)

    @property
    def has_model(self) -> bool:
        return bool(self.flags & INFO_FLAG_MODEL)

    @property
    def model_sha256_hex(self) -> str:
        return bytes(self.model_sha256).hex()


_INFO = struct.Struct("<BBHfIfiBBI32sB")


def pack_info(info: Info) -> bytes:
    name = info.name.encode("utf-8")[:255]
    sha = bytes(info.model_sha256)
    if len(sha) != 32:
        raise ProtocolError(f"model_sha256 of {len(sha)} bytes, expected 32")
    return _INFO.pack(info.proto_version, info.flags, info.sample_rate_hz, info.uv_per_lsb, info.window_len,
                      info.input_scale, info.input_zero_point, info.n_outputs, info.counter_kind,
                      info.arena_bytes, sha, len(name)) + name


def unpack_info(payload: bytes) -> Info:
    _need(payload, _INFO.size, "INFO", exact=False)
    v = _INFO.unpack_from(payload)
    name_len = v[-1]
    _need(payload, _INFO.size + name_len, "INFO")
    name = bytes(payload[_INFO.size:]).decode("utf-8", errors="replace")
    return Info(*v[:-1], name=name)


@dataclass(frozen=True)
class Samples:
    first_index: int
    t_us: int
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    def __eq__(self, other):
        return (isinstance(other, Samples) and self.first_index == other.first_index and self.t_us == other.t_us
                and np.array_equal(self.samples, other.samples))


_SAMPLES = struct.Struct("<IQH")


def pack_samples(s: Samples) -> bytes:
    arr = np.asarray(s.samples)
    if arr.size > MAX_SAMPLES_PER_FRAME:
        raise ProtocolError(f"{arr.size} samples exceed {MAX_SAMPLES_PER_FRAME} per SAMPLES frame")
    return _SAMPLES.pack(s.first_index & 0xFFFFFFFF, s.t_us, arr.size) + arr.astype("<i2").tobytes()


def unpack_samples(payload: bytes) -> Samples:
    _need(payload, _SAMPLES.size, "SAMPLES", exact=False)
    first, t_us, n = _SAMPLES.unpack_from(payload)
    _need(payload, _SAMPLES.size + 2 * n, f"SAMPLES (n={n})")
    return Samples(first, t_us, np.frombuffer(payload, "<i2", n, _SAMPLES.size).astype(np.int16))


@dataclass(frozen=True)
class LoadInput:
    offset: int
    data: bytes


def pack_load_input(m: LoadInput) -> bytes:
    if 4 + len(m.data) > MAX_PAYLOAD:
        raise ProtocolError(f"LOAD_INPUT chunk of {len(m.data)} bytes exceeds {MAX_PAYLOAD - 4}")
    return struct.pack("<I", m.offset) + bytes(m.data)


def unpack_load_input(payload: bytes) -> LoadInput:
    _need(payload, 4, "LOAD_INPUT", exact=False)
    return LoadInput(struct.unpack_from("<I", payload)[0], bytes(payload[4:]))


@dataclass(frozen=True)
class Infer:
    count: int = 1
    warmup: int = 0


def pack_infer(m: Infer) -> bytes:
    return struct.pack("<HH", m.count, m.warmup)


def unpack_infer(payload: bytes) -> Infer:
    _need(payload, 4, "INFER")
    return Infer(*struct.unpack("<HH", payload))


@dataclass(frozen=True)
class Result:
    outputs: tuple[int, ...]
    counter_kind: int = 0
    counter: int = 0
    infer_us: int = 0


def pack_result(r: Result) -> bytes:
    outs = [int(v) for v in r.outputs]
    if len(outs) > 255:
        raise ProtocolError(f"{len(outs)} outputs exceed 255")
    return (struct.pack("<B", len(outs)) + struct.pack(f"<{len(outs)}b", *outs)
            + struct.pack("<BQI", r.counter_kind, r.counter, r.infer_us))


def unpack_result(payload: bytes) -> Result:
    _need(payload, 1, "RESULT", exact=False)
    n = payload[0]
    _need(payload, 1 + n + 13, f"RESULT (n={n})")
    outs = struct.unpack_from(f"<{n}b", payload, 1)
    kind, counter, us = struct.unpack_from("<BQI", payload, 1 + n)
    return Result(tuple(outs), kind, counter, us)


@dataclass(frozen=True)
class Ack:
    acked_type: int
    acked_seq: int
    status: int = 0

    @property
    def ok(self) -> bool:
        return self.status == 0


def pack_ack(a: Ack) -> bytes:
    return struct.pack("<BHB", a.acked_type, a.acked_seq, a.status)


def unpack_ack(payload: bytes) -> Ack:
    _need(payload, 4, "ACK")
    return Ack(*struct.unpack("<BHB", payload))


@dataclass(frozen=True)
class Status:
    lead_off: int = 0
    battery_pct: int = 100
    overruns: int = 0
    dropped: int = 0
    total: int = 0


def pack_status(s: Status) -> bytes:
    return struct.pack("<BBIII", s.lead_off, s.battery_pct, s.overruns, s.dropped, s.total)


def unpack_status(payload: bytes) -> Status:
    _need(payload, 14, "STATUS")
    return Status(*struct.unpack("<BBIII", payload))


@dataclass(frozen=True)
class WindowInfer:
    first_index: int


def pack_window_infer(m: WindowInfer) -> bytes:
    return struct.pack("<I", m.first_index & 0xFFFFFFFF)


def unpack_window_infer(payload: bytes) -> WindowInfer:
    _need(payload, 4, "WINDOW_INFER")
    return WindowInfer(struct.unpack("<I", payload)[0])


@dataclass(frozen=True)
class ErrorMsg:
    code: int
    related_seq: int = 0
    msg: str = ""


def pack_error(e: ErrorMsg) -> bytes:
    msg = e.msg.encode("utf-8")[:255]
    return struct.pack("<BHB", e.code, e.related_seq, len(msg)) + msg


def unpack_error(payload: bytes) -> ErrorMsg:
    _need(payload, 4, "ERROR", exact=False)
    code, seq, n = struct.unpack_from("<BHB", payload)
    _need(payload, 4 + n, f"ERROR (msg_len={n})")
    return ErrorMsg(code, seq, bytes(payload[4:]).decode("utf-8", errors="replace"))


def _empty(name):
    def unpack(payload: bytes) -> None:
        _need(payload, 0, name)
        return None
    return unpack


# type -> (payload class or None, pack, unpack); empty-payload messages unpack to None.
PAYLOADS = {
    MsgType.HELLO: (None, None, _empty("HELLO")),
    MsgType.INFO: (Info, pack_info, unpack_info),
    MsgType.SAMPLES: (Samples, pack_samples, unpack_samples),
    MsgType.START: (None, None, _empty("START")),
    MsgType.STOP: (None, None, _empty("STOP")),
    MsgType.LOAD_INPUT: (LoadInput, pack_load_input, unpack_load_input),
    MsgType.INFER: (Infer, pack_infer, unpack_infer),
    MsgType.RESULT: (Result, pack_result, unpack_result),
    MsgType.ACK: (Ack, pack_ack, unpack_ack),
    MsgType.STATUS: (Status, pack_status, unpack_status),
    MsgType.GET_STATUS: (None, None, _empty("GET_STATUS")),
    MsgType.WINDOW_INFER: (WindowInfer, pack_window_infer, unpack_window_infer),
    MsgType.ERROR: (ErrorMsg, pack_error, unpack_error),
}
_TYPE_OF_CLASS = {cls: t for t, (cls, _, _) in PAYLOADS.items() if cls is not None}


def pack_message(msg) -> tuple[MsgType, bytes]:
    """(type, payload bytes) for a payload object (Info, Samples, ...)."""
    t = _TYPE_OF_CLASS.get(type(msg))
    if t is None:
        raise ProtocolError(f"no message type for payload object {type(msg).__name__}")
    return t, PAYLOADS[t][1](msg)


def unpack_payload(frame: Frame):
    """The typed payload of a frame (None for the empty ones). Raises ProtocolError on a bad length."""
    return PAYLOADS[MsgType(frame.type)][2](frame.payload)


def samples_frames(first_index: int, t_us: int, samples: np.ndarray, period_us: float,
                   per_frame: int = MAX_SAMPLES_PER_FRAME) -> list[Samples]:
    """Split a block of samples into SAMPLES payload objects (t_us advanced by the sample period)."""
    out = []
    for off in range(0, len(samples), per_frame):
        out.append(Samples((first_index + off) & 0xFFFFFFFF, int(t_us + off * period_us),
                           np.asarray(samples[off : off + per_frame], np.int16)))
    return out

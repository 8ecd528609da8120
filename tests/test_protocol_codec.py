"""Wire protocol codec (docs/protocol.md): framing, CRC, payloads, and a decoder that never raises."""

import struct

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings, strategies as st

from ecgedge.errors import ProtocolError
from ecgedge.firmware_bridge import protocol as P


def test_crc_check_value():
    assert P.crc16_ccitt(b"123456789") == 0x29B1
    assert P.crc16_fast(b"123456789") == 0x29B1


@given(st.binary(max_size=300))
def test_table_crc_equals_bitwise(data):
    assert P.crc16_fast(data) == P.crc16_ccitt(data)


def test_frame_layout_matches_spec():
    enc = P.encode_frame(P.MsgType.GET_STATUS, 0x1234, b"\x01\x02")
    assert enc.endswith(b"\x00") and b"\x00" not in enc[:-1]
    raw = cobs.decode(enc[:-1])
    assert raw[:6] == bytes([1, 0x21, 0x34, 0x12, 2, 0]) and raw[6:8] == b"\x01\x02"
    assert struct.unpack("<H", raw[8:])[0] == P.crc16_ccitt(raw[:8])
    assert P.MAX_SAMPLES_PER_FRAME == 505 and P.MAX_ENCODED == 1 + 1032 + 5


@settings(max_examples=200)
@given(st.sampled_from(list(P.MsgType)), st.integers(0, 0xFFFF), st.binary(max_size=P.MAX_PAYLOAD))
def test_frame_round_trip(t, seq, payload):
    dec = P.FrameDecoder()
    frames = dec.feed(P.encode_frame(t, seq, payload))
    assert frames == [P.Frame(t, seq, payload)]
    assert dec.errors == 0


def test_oversized_payload_refused_on_encode():
    with pytest.raises(ProtocolError, match="1025"):
        P.encode_frame(P.MsgType.SAMPLES, 0, bytes(1025))


def _raw_block(version=1, mtype=0x21, seq=0, payload=b"", length=None, crc=None):
    body = struct.pack("<BBHH", version, mtype, seq, len(payload) if length is None else length) + payload
    c = P.crc16_ccitt(body) if crc is None else crc
    return cobs.encode(body + struct.pack("<H", c)) + b"\x00"


def test_each_defect_counted_and_skipped():
    good = P.encode_frame(P.MsgType.HELLO, 7)
    stream = (
        _raw_block(crc=0x1234) + good           # bad CRC
        + _raw_block(mtype=0x55) + good         # unknown type
        + _raw_block(version=2) + good          # wrong version
        + _raw_block(payload=b"ab", length=5)   # len does not match size
        + _raw_block(payload=b"", length=2000)  # len > MAX_PAYLOAD
        + b"\x05ab\x00"                         # COBS error
        + b"\x04\x01\x02\x03\x00"               # too short
        + good
    )
    dec = P.FrameDecoder()
    frames = dec.feed(stream)
    assert frames == [P.Frame(P.MsgType.HELLO, 7)] * 4
    s = dec.stats
    assert (s["crc_errors"], s["unknown_type"], s["version_errors"], s["length_errors"], s["cobs_errors"]) == (1, 1, 1, 3, 1)
    assert s["frames"] == 4 and s["bytes"] == len(stream)


def test_run_without_delimiter_is_dropped_then_resyncs():
    dec = P.FrameDecoder()
    assert dec.feed(b"\x07" * 5000) == []
    assert dec.stats["length_errors"] == 1
    assert dec.feed(b"\x07" * 10 + b"\x00" + P.encode_frame(P.MsgType.START, 1)) == [P.Frame(P.MsgType.START, 1)]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise(chunks):
    dec = P.FrameDecoder()
    for c in chunks:
        for f in dec.feed(c):
            assert f.type in set(P.MsgType)
    assert dec.stats["bytes"] == sum(map(len, chunks))


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(min_size=0, max_size=80)), min_size=1, max_size=10),
       st.data())
def test_corruption_is_counted_not_delivered(msgs, data):
    """Flip one byte inside one encoded frame: that frame is lost and counted; the others arrive intact."""
    encoded = [P.encode_frame(P.MsgType.SAMPLES, s, p) for s, p in msgs]
    victim = data.draw(st.integers(0, len(encoded) - 1))
    pos = data.draw(st.integers(0, len(encoded[victim]) - 2))
    flip = data.draw(st.integers(1, 255))
    bad = bytearray(encoded[victim])
    bad[pos] ^= flip
    encoded[victim] = bytes(bad)
    dec = P.FrameDecoder()
    # feed in random splits
    stream = b"".join(encoded)
    cut = data.draw(st.integers(0, len(stream)))
    frames = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
    expected = [P.Frame(P.MsgType.SAMPLES, s, p) for i, (s, p) in enumerate(msgs) if i != victim]
    # a flipped byte that became 0x00 splits the victim in two; both halves are rejected
    assert [f for f in frames if f in expected] == expected
    assert len(frames) == len(expected)
    assert dec.errors >= 1


def test_payload_round_trips():
    objs = [
        P.Info(1, P.INFO_FLAG_DEMO | P.INFO_FLAG_MODEL, 500, 0.5, 5000, 0.0123, -3, 3, 1, 123456, bytes(range(32)),
               "ecgedge-fw 0.1.0 cortex-m7"),
        P.Samples(4_000_000_000, 2**40 + 5, np.arange(-250, 255, dtype=np.int16)),
        P.LoadInput(4096, bytes(range(256)) * 3),
        P.Infer(5, 2),
        P.Result((-128, 0, 127), 1, 2**50, 1234),
        P.Ack(0x10, 65535, 0),
        P.Status(1, 87, 3, 4, 5_000_000),
        P.WindowInfer(123456),
        P.ErrorMsg(P.ErrorCode.ERR_STATE, 42, "INFER before any input"),
    ]
    for o in objs:
        t, payload = P.pack_message(o)
        assert len(payload) <= P.MAX_PAYLOAD
        (frame,) = P.FrameDecoder().feed(P.encode_frame(t, 3, payload))
        back = P.unpack_payload(frame)
        if isinstance(o, P.Info):
            assert back.uv_per_lsb == 0.5 and abs(back.input_scale - 0.0123) < 1e-7
            assert back.demo and back.has_model and back.name == o.name and back.model_sha256 == o.model_sha256
        else:
            assert back == o, (o, back)
    assert P.unpack_payload(P.Frame(P.MsgType.HELLO, 0, b"")) is None


@pytest.mark.parametrize("t,payload", [(P.MsgType.STATUS, b"\x00" * 13), (P.MsgType.INFER, b"\x00"),
                                       (P.MsgType.SAMPLES, struct.pack("<IQH", 0, 0, 3) + b"\x00" * 4),
                                       (P.MsgType.RESULT, b"\x05\x00"), (P.MsgType.HELLO, b"x")])
def test_bad_payload_length_raises_protocol_error(t, payload):
    with pytest.raises(ProtocolError, match="expected"):
        P.unpack_payload(P.Frame(t, 0, payload))


def test_too_many_samples_refused():
    with pytest.raises(ProtocolError, match="506"):
        P.pack_samples(P.Samples(0, 0, np.zeros(506, np.int16)))
    parts = P.samples_frames(10, 0, np.arange(1200, dtype=np.int16), 2000.0)
    assert [p.first_index for p in parts] == [10, 515, 1020] and parts[1].t_us == 505 * 2000

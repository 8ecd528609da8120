"""Unit tests of the BLE GATT payload codecs (PMD, HRS) and of ble:// URL parsing. No radio needed."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgedge.firmware_bridge import ble_gatt as g
from ecgedge.edge_runtime.transports import open_transport
from ecgedge.edge_runtime.transports.ble import BleTransport
from ecgedge.errors import ConfigError, ProtocolError


def test_pmd_ecg_frame_layout_by_hand():
    # [type 0][u64 ts of the LAST sample][frame type 0][3-byte little-endian signed µV]
    data = g.pmd_ecg_frame(0x0102030405060708, np.array([1, -1, 8388607, -8388608, 0]))
    assert data[0] == 0x00 and data[9] == 0x00
    assert struct.unpack_from("<Q", data, 1)[0] == 0x0102030405060708
    assert data[10:] == bytes.fromhex("010000" "ffffff" "ffff7f" "000080" "000000")


def test_pmd_ecg_frame_rejects_values_beyond_24_bits():
    with pytest.raises(ProtocolError, match="24-bit"):
        g.pmd_ecg_frame(0, np.array([1 << 23]))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.lists(st.integers(-(1 << 23), (1 << 23) - 1), max_size=80))
def test_pmd_ecg_frame_round_trip(ts, samples):
    f = g.parse_pmd_ecg_frame(g.pmd_ecg_frame(ts, np.array(samples, np.int64)))
    assert f.timestamp_ns == ts
    assert f.samples_uv.tolist() == samples


@pytest.mark.parametrize("data, what", [
    (b"\x00" * 9, "expected >= 10"),
    (bytes([2]) + bytes(9), "measurement type 2"),
    (bytes(9) + bytes([1]), "frame type 1"),
    (bytes(10) + b"\x01\x02", "3-byte"),
])
def test_pmd_ecg_frame_defects_are_named(data, what):
    with pytest.raises(ProtocolError, match=what):
        g.parse_pmd_ecg_frame(data)


def test_pmd_control_point_messages():
    assert g.pmd_start_request() == bytes.fromhex("0200" "00018200" "01010e00")  # 130 Hz, 14 bit
    assert g.pmd_stop_request() == bytes.fromhex("0300")
    r = g.parse_pmd_response(g.pmd_response(g.PMD_OP_GET_SETTINGS, 0, 0, g.pmd_ecg_settings()))
    assert r.ok and r.op == g.PMD_OP_GET_SETTINGS
    assert g.parse_pmd_settings(r.params) == {g.PMD_SETTING_SAMPLE_RATE: [130], g.PMD_SETTING_RESOLUTION: [14]}
    assert not g.parse_pmd_response(bytes([0xF0, 2, 0, g.PmdStatus.ALREADY_IN_STATE, 0])).ok
    with pytest.raises(ProtocolError):
        g.parse_pmd_response(b"\x02\x00")
    with pytest.raises(ProtocolError, match="truncated"):
        g.parse_pmd_settings(bytes([0, 2, 0x82, 0]))


def test_pmd_samples_per_frame_matches_polar_h10():
    assert g.pmd_samples_per_frame(232) == 73  # what an H10 sends at its usual MTU
    assert g.pmd_samples_per_frame(23) == 3


def test_heart_rate_measurement_by_hand():
    # flags: contact supported+detected, RR present; 8-bit HR 72; RR 853/1024 s
    data = g.encode_heart_rate(g.HeartRateMeasurement(72, (853 / 1024,), contact=True))
    assert data == bytes([0x16, 72]) + struct.pack("<H", 853)
    m = g.decode_heart_rate(bytes([0x01]) + struct.pack("<H", 300))  # uint16 HR
    assert m.bpm == 300 and m.contact is None and m.rr_s == ()


@given(st.integers(20, 400), st.lists(st.floats(0.2, 3.0), max_size=4), st.sampled_from([None, True, False]),
       st.sampled_from([None, 0, 1234]))
def test_heart_rate_round_trip(bpm, rr, contact, energy):
    m = g.decode_heart_rate(g.encode_heart_rate(g.HeartRateMeasurement(bpm, tuple(rr), contact, energy)))
    assert (m.bpm, m.contact, m.energy_kj) == (bpm, contact, energy)
    assert np.allclose(m.rr_s, rr, atol=0.5 / 1024)


def test_heart_rate_defects_are_named():
    with pytest.raises(ProtocolError, match=">= 2"):
        g.decode_heart_rate(b"\x00")
    with pytest.raises(ProtocolError, match="RR"):
        g.decode_heart_rate(bytes([0x10, 60, 1]))


def test_ble_urls():
    t = open_transport("ble://AA:bb:CC:DD:EE:FF?backend=bumble&profile=pmd&timeout=2")
    assert isinstance(t, BleTransport)
    assert (t.address, t.name, t.profile, t.backend, t.timeout) == ("AA:BB:CC:DD:EE:FF", None, "pmd", "bumble", 2.0)
    t = BleTransport("ble://name=Polar H10 1234")
    assert (t.name, t.address, t.profile, t.backend) == ("Polar H10 1234", None, "auto", "default")
    assert BleTransport("ble://name=Pocket-K?hr=1").want_hr is True


@pytest.mark.parametrize("url, what", [
    ("ble://", "expected ble://AA"),
    ("ble://AA:BB:CC", "expected ble://AA"),
    ("ble://name=X?profile=uart", "profile='uart'"),
    ("ble://name=X?backend=winrt", "backend='winrt'"),
    ("ble://name=X?timeout=soon", "timeout"),
])
def test_bad_ble_urls_say_what_is_wrong(url, what):
    with pytest.raises(ConfigError, match=what):
        BleTransport(url)


def test_sim_urls_need_the_bumble_backend():
    t = BleTransport("ble://name=X?backend=bumble&sim=pocket_k&k=6.2&speed=5&services=pmd,hrs&timeout=3")
    assert t.sim_url == "sim://pocket_k?k=6.2&speed=5" and t.sim_services == ("pmd", "hrs") and t.timeout == 3
    with pytest.raises(ConfigError, match="sim= needs backend=bumble"):
        BleTransport("ble://name=X?sim=pocket_k")

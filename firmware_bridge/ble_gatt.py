"""GATT profiles spoken over BLE: UUIDs and payload codecs, shared by the runtime's BLE transport and
the simulator's BLE peripheral (one table, two users).

Profiles
--------
- ``ecgedge``: our own service. TX (notify, device -> host) and RX (write without response,
  host -> device) carry the wire protocol of docs/protocol.md byte for byte: the same COBS frames as
  on a UART, cut into ATT_MTU - 3 byte pieces. COBS's 0x00 delimiter re-frames them on the far side.
- ``pmd``: Polar Measurement Data (Polar H10 compatible), ECG at 130 Hz, samples in µV.
- ``hrs``: the standard Heart Rate Service (0x180D), heart rate measurement 0x2A37.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ecgedge.errors import ProtocolError


def _uuid16(short: int) -> str:
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


# --- ecgedge service (128-bit UUIDs of our own) ----------------------------------------------------
ECGEDGE_SERVICE_UUID = "7e1a0001-4c2b-4d8e-9f3a-5e0c9b2d6a10"
ECGEDGE_TX_UUID = "7e1a0002-4c2b-4d8e-9f3a-5e0c9b2d6a10"  # notify: wire bytes device -> host
ECGEDGE_RX_UUID = "7e1a0003-4c2b-4d8e-9f3a-5e0c9b2d6a10"  # write without response: host -> device

# --- Polar Measurement Data (PMD) ------------------------------------------------------------------
PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"  # read / write / indicate
PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"  # notify

PMD_MEASUREMENT_ECG = 0x00
PMD_ECG_RATE_HZ = 130
PMD_ECG_RESOLUTION_BITS = 14
PMD_ECG_FRAME_TYPE = 0x00  # 3-byte signed little-endian µV samples
PMD_OP_GET_SETTINGS = 0x01
PMD_OP_START = 0x02
PMD_OP_STOP = 0x03
PMD_RESPONSE = 0xF0
PMD_FEATURES = 0x0F  # first byte of a control point read
PMD_SETTING_SAMPLE_RATE = 0x00
PMD_SETTING_RESOLUTION = 0x01
PMD_HEADER_BYTES = 10  # type u8, timestamp u64, frame type u8
#: PMD timestamps count nanoseconds since 2000-01-01T00:00:00 UTC; this is that instant in Unix ns.
PMD_EPOCH_UNIX_NS = 946_684_800 * 1_000_000_000


class PmdStatus:
    SUCCESS = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_STATE = 12


# --- Heart Rate Service ----------------------------------------------------------------------------
HRS_SERVICE_UUID = _uuid16(0x180D)
HRS_MEASUREMENT_UUID = _uuid16(0x2A37)
HRS_BODY_SENSOR_LOCATION_UUID = _uuid16(0x2A38)
HRS_BODY_SENSOR_CHEST = 1
HRS_FLAG_UINT16 = 0x01
HRS_FLAG_CONTACT_DETECTED = 0x02
HRS_FLAG_CONTACT_SUPPORTED = 0x04
HRS_FLAG_ENERGY = 0x08
HRS_FLAG_RR = 0x10

PROFILES = ("ecgedge", "pmd", "hrs")
PROFILE_SERVICE = {"ecgedge": ECGEDGE_SERVICE_UUID, "pmd": PMD_SERVICE_UUID, "hrs": HRS_SERVICE_UUID}


# --- PMD codec -------------------------------------------------------------------------------------
def pmd_ecg_settings() -> bytes:
    """The ECG settings block (as in a get-settings response and a start request): 130 Hz, 14 bit."""
    return struct.pack(
        "<BBHBBH",
        PMD_SETTING_SAMPLE_RATE, 1, PMD_ECG_RATE_HZ,
        PMD_SETTING_RESOLUTION, 1, PMD_ECG_RESOLUTION_BITS,
    )


def pmd_start_request(measurement: int = PMD_MEASUREMENT_ECG) -> bytes:
    return bytes([PMD_OP_START, measurement]) + pmd_ecg_settings()


def pmd_stop_request(measurement: int = PMD_MEASUREMENT_ECG) -> bytes:
    return bytes([PMD_OP_STOP, measurement])


def pmd_get_settings_request(measurement: int = PMD_MEASUREMENT_ECG) -> bytes:
    return bytes([PMD_OP_GET_SETTINGS, measurement])


def pmd_response(op: int, measurement: int, status: int, params: bytes = b"") -> bytes:
    return bytes([PMD_RESPONSE, op, measurement, status, 0]) + params


@dataclass(frozen=True)
class PmdResponse:
    op: int
    measurement: int
    status: int
    params: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == PmdStatus.SUCCESS


def parse_pmd_response(data: bytes) -> PmdResponse:
    if len(data) < 4 or data[0] != PMD_RESPONSE:
        raise ProtocolError(f"PMD control point response {bytes(data).hex()!r}: expected 0xF0 op type status ...")
    return PmdResponse(data[1], data[2], data[3], bytes(data[5:]))


def parse_pmd_settings(params: bytes) -> dict[int, list[int]]:
    """{setting type: [values]} from a settings block (u8 type, u8 count, count x u16)."""
    out: dict[int, list[int]] = {}
    i = 0
    while i + 2 <= len(params):
        kind, count = params[i], params[i + 1]
        i += 2
        if i + 2 * count > len(params):
            raise ProtocolError(f"PMD settings block {params.hex()} truncated at setting 0x{kind:02x}")
        out[kind] = list(struct.unpack_from(f"<{count}H", params, i))
        i += 2 * count
    return out


def pmd_ecg_frame(timestamp_ns: int, samples_uv: np.ndarray) -> bytes:
    """One PMD ECG data notification: [0x00][u64 ts of the LAST sample][0x00][3-byte LE signed µV]..."""
    uv = np.asarray(samples_uv, dtype=np.int64)
    if uv.size and (uv.min() < -(1 << 23) or uv.max() >= (1 << 23)):
        raise ProtocolError(f"ECG sample outside the 24-bit PMD range: {uv.min()}..{uv.max()} µV")
    raw = (uv & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    return struct.pack("<BQB", PMD_MEASUREMENT_ECG, timestamp_ns, PMD_ECG_FRAME_TYPE) + raw.tobytes()


@dataclass(frozen=True)
class PmdEcgFrame:
    timestamp_ns: int  # of the last sample, ns since 2000-01-01
    samples_uv: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))


def parse_pmd_ecg_frame(data: bytes) -> PmdEcgFrame:
    data = bytes(data)
    if len(data) < PMD_HEADER_BYTES:
        raise ProtocolError(f"PMD data notification of {len(data)} bytes, expected >= {PMD_HEADER_BYTES}")
    measurement, ts, frame_type = struct.unpack_from("<BQB", data)
    if measurement != PMD_MEASUREMENT_ECG:
        raise ProtocolError(f"PMD measurement type {measurement}, expected {PMD_MEASUREMENT_ECG} (ECG)")
    if frame_type != PMD_ECG_FRAME_TYPE:
        raise ProtocolError(f"PMD ECG frame type {frame_type}, expected {PMD_ECG_FRAME_TYPE} (3-byte µV)")
    body = data[PMD_HEADER_BYTES:]
    if len(body) % 3:
        raise ProtocolError(f"PMD ECG body of {len(body)} bytes is not a whole number of 3-byte samples")
    b = np.frombuffer(body, np.uint8).reshape(-1, 3).astype(np.int32)
    value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    value = np.where(value & 0x800000, value - (1 << 24), value).astype(np.int32)
    return PmdEcgFrame(ts, value)


def pmd_samples_per_frame(att_mtu: int) -> int:
    """Samples that fit one data notification at this ATT MTU (H10 sends 73 at MTU 232)."""
    return max(1, (att_mtu - 3 - PMD_HEADER_BYTES) // 3)


# --- HRS codec -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeartRateMeasurement:
    bpm: int
    rr_s: tuple[float, ...] = ()
    contact: bool | None = None  # None: sensor does not report contact
    energy_kj: int | None = None


def encode_heart_rate(m: HeartRateMeasurement) -> bytes:
    flags = 0
    body = b""
    if m.bpm > 255:
        flags |= HRS_FLAG_UINT16
        body += struct.pack("<H", m.bpm)
    else:
        body += struct.pack("<B", m.bpm)
    if m.contact is not None:
        flags |= HRS_FLAG_CONTACT_SUPPORTED | (HRS_FLAG_CONTACT_DETECTED if m.contact else 0)
    if m.energy_kj is not None:
        flags |= HRS_FLAG_ENERGY
        body += struct.pack("<H", m.energy_kj)
    if m.rr_s:
        flags |= HRS_FLAG_RR
        body += b"".join(struct.pack("<H", int(round(rr * 1024))) for rr in m.rr_s)
    return bytes([flags]) + body


def decode_heart_rate(data: bytes) -> HeartRateMeasurement:
    data = bytes(data)
    if len(data) < 2:
        raise ProtocolError(f"heart rate measurement of {len(data)} bytes, expected >= 2")
    flags = data[0]
    i = 1
    if flags & HRS_FLAG_UINT16:
        if len(data) < 3:
            raise ProtocolError("heart rate measurement flags say uint16 but only 1 byte follows")
        bpm = struct.unpack_from("<H", data, i)[0]
        i += 2
    else:
        bpm = data[i]
        i += 1
    contact = bool(flags & HRS_FLAG_CONTACT_DETECTED) if flags & HRS_FLAG_CONTACT_SUPPORTED else None
    energy = None
    if flags & HRS_FLAG_ENERGY:
        energy = struct.unpack_from("<H", data, i)[0]
        i += 2
    rr: tuple[float, ...] = ()
    if flags & HRS_FLAG_RR:
        if (len(data) - i) % 2:
            raise ProtocolError(f"heart rate RR block of {len(data) - i} bytes is not whole uint16s")
        rr = tuple(v / 1024.0 for v in struct.unpack_from(f"<{(len(data) - i) // 2}H", data, i))
    return HeartRateMeasurement(bpm, rr, contact, energy)

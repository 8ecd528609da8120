"""ble://: the device link over Bluetooth LE, through bleak (BlueZ on a Pi; bumble in tests).

URLs::

    ble://AA:BB:CC:DD:EE:FF                 by address
    ble://name=Pocket-K                     by advertised local name
    ...?profile=auto|ecgedge|pmd|hrs        GATT profile (default auto: ecgedge, else pmd, else hrs)
    ...&backend=bluez|NAME                  bleak backend (default: bleak's platform backend; NAME: one a
                                            plug-in registers, e.g. the simulator's "bumble")
    ...&timeout=10&mtu=247&hr=1             scan/connect timeout (s), ATT MTU asked (bumble), HRS on/off
    ...&backend=bumble&sim=pocket_k&k=6.2&speed=20&services=ecgedge,pmd,hrs
                                            also start the simulator's BLE peripheral in this process
                                            (a demo of the whole BLE path without hardware; every
                                            other query parameter goes to its sim:// URL); the
                                            backend's plug-in provides it

Back-ends other than bleak's own come from plug-ins (entry point group ``ecgedge.ble_backends``, see
``ecgedge.edge_runtime.transports.base``): an object with ``scanner`` and ``client`` (bleak backend
classes), ``client_kwargs(transport)`` and, for ``sim=``, ``async start_simulator(transport)``.

Profiles (see ``ecgedge.firmware_bridge.ble_gatt``):

- ``ecgedge``: our service carries the wire protocol unchanged: notifications of the TX
  characteristic are the device's bytes, writes to RX are the host's bytes (cut to the MTU).
- ``pmd``: a Polar H10 (or compatible) strap. The transport speaks the wire protocol to the runtime
  on the strap's behalf: HELLO -> INFO (130 Hz, 1 µV per LSB), START/STOP -> PMD control point
  start/stop of ECG, GET_STATUS -> STATUS. Each PMD ECG notification becomes one SAMPLES frame whose
  sample indices follow from the frame timestamps at 130 Hz, so a lost notification shows up to the
  runtime as an exact gap (start, length) and is never filled.
- ``hrs``: heart rate only (no ECG): INFO says sample_rate_hz 0 and no SAMPLES ever arrive.

Whatever the profile, when the peripheral has the Heart Rate Service and ``hr`` is on (default for
pmd/hrs), its measurements collect in :attr:`BleTransport.heart_rates`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import numpy as np

from ecgedge.firmware_bridge import ble_gatt as g
from ecgedge.edge_runtime.transports.base import QueueReader, Transport, ble_backend, query_number, url_query
from ecgedge.errors import ConfigError, TransportError
from ecgedge.firmware_bridge import protocol as p

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
BLEAK_BACKENDS = ("bluez", "default")  # bleak's own; others are plug-ins (ble_backend)
OWN_PARAMS = ("profile", "backend", "timeout", "mtu", "hr", "name", "sim", "services")
PROFILES = ("auto",) + g.PROFILES
I16_MAX = 32767


@dataclass(frozen=True)
class HeartRateReading:
    bpm: int
    rr_s: tuple[float, ...]
    contact: bool | None
    received_s: float  # loop time when it arrived


def _backend(name: str):
    """The plug-in back-end named `name`, or None for bleak's own choice."""
    return None if name in BLEAK_BACKENDS else ble_backend(name, also=BLEAK_BACKENDS)


class BleTransport(Transport):
    def __init__(self, url: str):
        super().__init__(url)
        u = urlsplit(url)
        if u.scheme != "ble":
            raise ConfigError(f"{url!r}: expected a ble:// URL")
        target = unquote(u.netloc + u.path).strip("/")
        q = url_query(url)
        self.address: str | None = None
        self.name: str | None = None
        if target.startswith("name="):
            self.name = target[len("name="):]
        elif _ADDRESS.match(target):
            self.address = target.upper()
        elif "name" in q:
            self.name = q["name"]
        if not (self.name or self.address):
            raise ConfigError(
                f"{url!r}: expected ble://AA:BB:CC:DD:EE:FF or ble://name=<advertised name>"
            )
        self.profile = q.get("profile", "auto")
        if self.profile not in PROFILES:
            raise ConfigError(f"{url!r}: profile={self.profile!r}, expected one of {', '.join(PROFILES)}")
        self.backend = q.get("backend", "default")
        try:
            self._backend = _backend(self.backend)
        except ConfigError as e:  # a back-end nothing provides
            raise ConfigError(f"{url!r}: backend={self.backend!r}: {e}") from None
        self.timeout = query_number(q, "timeout", 10.0, float)
        self.mtu = query_number(q, "mtu", 247, int)
        hr = query_number(q, "hr", None, int)
        self.want_hr: bool | None = None if hr is None else bool(hr)  # None: on for pmd/hrs
        self.sim_url: str | None = None
        if "sim" in q:
            if not hasattr(self._backend, "start_simulator"):
                raise ConfigError(f"{url!r}: sim= needs backend=bumble (the simulated peripheral lives on "
                                  "bumble's virtual radio)")
            from urllib.parse import urlencode

            sim_q = {k: v for k, v in q.items() if k not in OWN_PARAMS}
            self.sim_url = f"sim://{q['sim'] or 'pocket_k'}" + (f"?{urlencode(sim_q)}" if sim_q else "")
            self.sim_services = tuple(filter(None, q.get("services", ",".join(g.PROFILES)).split(",")))
        self.heart_rates: list[HeartRateReading] = []
        self.stats = {"notifications": 0, "bytes_in": 0, "bytes_out": 0, "writes": 0,
                      "pmd_frames": 0, "pmd_samples": 0, "pmd_gaps": 0, "pmd_samples_missing": 0,
                      "pmd_duplicates": 0, "pmd_bad_frames": 0, "clipped_samples": 0}
        self.active_profile: str | None = None
        self.device_name: str | None = None
        self._client = None
        self._q: QueueReader | None = None
        self._rx_char = None
        self._pmd: _PmdAdapter | None = None
        # PMD sample timeline (index, timestamp ns of the last sample delivered). It survives
        # reconnects: a strap's clock keeps running, so the time without a link becomes an exact
        # gap. Only a STOP from the host ends it (the next START counts from 0, as on our devices).
        self.pmd_timeline: tuple[int, int] | None = None

    # -- Transport interface ----------------------------------------------------------------------
    async def open(self) -> None:
        from bleak import BleakClient, BleakScanner
        from bleak.exc import BleakError

        scanner_backend = getattr(self._backend, "scanner", None)
        client_backend = getattr(self._backend, "client", None)
        await self._disconnect_quietly()  # an earlier link not closed
        if self.sim_url is not None:
            await self._backend.start_simulator(self)
        self._q = QueueReader()
        self.heart_rates = []
        try:
            if self.address:
                device = await BleakScanner.find_device_by_address(
                    self.address, timeout=self.timeout, backend=scanner_backend)
            else:
                device = await BleakScanner.find_device_by_name(
                    self.name, timeout=self.timeout, backend=scanner_backend)
        except (BleakError, OSError) as e:
            raise TransportError(f"{self.url}: BLE scan failed: {e}") from None
        if device is None:
            what = f"address {self.address}" if self.address else f"name {self.name!r}"
            raise TransportError(f"{self.url}: no BLE device with {what} found within {self.timeout:g} s")
        self.device_name = device.name
        kwargs = self._backend.client_kwargs(self) if self._backend is not None else {}
        client = BleakClient(device, disconnected_callback=self._on_disconnect, timeout=self.timeout,
                             backend=client_backend, **kwargs)
        try:
            await client.connect()
        except (BleakError, asyncio.TimeoutError, OSError) as e:
            raise TransportError(f"{self.url}: cannot connect to {device.address}: {e}") from None
        self._client = client
        try:
            await self._start_profile(client)
        except BaseException:
            await self._disconnect_quietly()
            raise
        self.is_open = True
        log.info("%s: connected to %s (%s), profile %s, MTU %d", self.url, device.address,
                 device.name, self.active_profile, client.mtu_size)

    async def read(self, timeout: float = 1.0) -> bytes:
        if self._q is None:
            raise TransportError(f"{self.url} is not open")
        data = await self._q.read(timeout)
        return data

    async def write(self, data: bytes) -> None:
        if not self.is_open or self._client is None:
            raise TransportError(f"{self.url}: BLE link is not open")
        data = bytes(data)
        self.stats["bytes_out"] += len(data)
        if self._pmd is not None:
            await self._pmd.host_bytes(data)
            return
        if self._rx_char is None:
            raise TransportError(f"{self.url}: profile {self.active_profile} takes no host writes")
        from bleak.exc import BleakError

        step = max(1, self._rx_char.max_write_without_response_size)
        try:
            for i in range(0, len(data), step):
                await self._client.write_gatt_char(self._rx_char, data[i:i + step], response=False)
                self.stats["writes"] += 1
        except (BleakError, OSError) as e:
            raise TransportError(f"{self.url}: BLE write failed: {e}") from None

    async def close(self) -> None:
        self.is_open = False
        if self._q is not None:
            self._q.fail(f"{self.url} closed")
        await self._disconnect_quietly()

    @property
    def mtu_size(self) -> int:
        return self._client.mtu_size if self._client is not None else 23

    # -- internals --------------------------------------------------------------------------------
    async def _disconnect_quietly(self) -> None:
        client, self._client = self._client, None
        self._pmd = None
        self._rx_char = None
        if client is not None:
            try:
                await client.disconnect()
            except Exception as e:  # already gone
                log.debug("%s: disconnect: %s", self.url, e)

    def _on_disconnect(self, _client) -> None:
        self.is_open = False
        if self._q is not None:
            self._q.fail(f"{self.url}: BLE link lost (peripheral disconnected or out of range)")

    def _push(self, data: bytes) -> None:
        if self._q is not None:
            self._q.push(data)

    async def _start_profile(self, client) -> None:
        services = {s.uuid.lower() for s in client.services}
        profile = self.profile
        if profile == "auto":
            profile = next((name for name in g.PROFILES if g.PROFILE_SERVICE[name] in services), None)
            if profile is None:
                raise TransportError(
                    f"{self.url}: the device offers none of the services ecgedge "
                    f"({g.ECGEDGE_SERVICE_UUID}), Polar PMD ({g.PMD_SERVICE_UUID}) or heart rate (0x180D)")
        elif g.PROFILE_SERVICE[profile] not in services:
            raise TransportError(f"{self.url}: the device has no {profile} service "
                                 f"({g.PROFILE_SERVICE[profile]}); it offers {sorted(services)}")
        self.active_profile = profile
        want_hr = self.want_hr if self.want_hr is not None else profile in ("pmd", "hrs")
        if want_hr or profile == "hrs":
            if g.HRS_SERVICE_UUID in services:
                await client.start_notify(g.HRS_MEASUREMENT_UUID, self._on_heart_rate)
            elif profile == "hrs":
                raise TransportError(f"{self.url}: no heart rate service")
        if profile == "ecgedge":
            self._rx_char = client.services.get_characteristic(g.ECGEDGE_RX_UUID)
            if self._rx_char is None:
                raise TransportError(f"{self.url}: ecgedge service lacks its RX characteristic")
            await client.start_notify(g.ECGEDGE_TX_UUID, self._on_tx)
        else:
            self._pmd = _PmdAdapter(self, client, ecg=(profile == "pmd"))
            await self._pmd.start()

    def _on_tx(self, _char, data: bytearray) -> None:
        self.stats["notifications"] += 1
        self.stats["bytes_in"] += len(data)
        self._push(bytes(data))

    def _on_heart_rate(self, _char, data: bytearray) -> None:
        try:
            m = g.decode_heart_rate(data)
        except Exception as e:
            log.warning("%s: bad heart rate measurement %s: %s", self.url, bytes(data).hex(), e)
            return
        self.heart_rates.append(HeartRateReading(m.bpm, m.rr_s, m.contact,
                                                 asyncio.get_running_loop().time()))


class _PmdAdapter:
    """Speaks the wire protocol to the runtime for a PMD/HRS strap (see the module docstring)."""

    def __init__(self, transport: BleTransport, client, ecg: bool):
        self.t = transport
        self.client = client
        self.ecg = ecg
        self.decoder = p.FrameDecoder()
        self.seq = 0
        self.responses: asyncio.Queue[g.PmdResponse] = asyncio.Queue()
        self.streaming = False
        self.delivered = 0
        self.period_ns = 1e9 / g.PMD_ECG_RATE_HZ

    async def start(self) -> None:
        if self.ecg:
            await self.client.start_notify(g.PMD_CONTROL_UUID, self._on_control)
            await self.client.start_notify(g.PMD_DATA_UUID, self._on_data)

    def _send(self, msg_type: int, payload: bytes = b"") -> None:
        self.t._push(p.encode_frame(msg_type, self.seq, payload))
        self.seq = (self.seq + 1) & 0xFFFF

    def _ack(self, frame: p.Frame, status: int = 0) -> None:
        self._send(p.MsgType.ACK, p.pack_ack(p.Ack(frame.type, frame.seq, status)))

    def _error(self, frame: p.Frame, code: int, msg: str) -> None:
        self._send(p.MsgType.ERROR, p.pack_error(p.ErrorMsg(code, frame.seq, msg)))

    def info(self) -> p.Info:
        rate = g.PMD_ECG_RATE_HZ if self.ecg else 0
        kind = "PMD ECG" if self.ecg else "heart rate only"
        return p.Info(sample_rate_hz=rate, uv_per_lsb=1.0,
                      name=f"{self.t.device_name or 'BLE strap'} ({kind} via ecgedge ble)")

    async def host_bytes(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            await self._handle(frame)

    async def _control(self, request: bytes) -> g.PmdResponse:
        while not self.responses.empty():
            self.responses.get_nowait()
        await self.client.write_gatt_char(g.PMD_CONTROL_UUID, request, response=True)
        try:
            return await asyncio.wait_for(self.responses.get(), self.t.timeout)
        except asyncio.TimeoutError:
            raise TransportError(f"{self.t.url}: PMD control point gave no answer to "
                                 f"{request.hex()} within {self.t.timeout:g} s") from None

    async def _handle(self, frame: p.Frame) -> None:
        t = frame.type
        if t == p.MsgType.HELLO:
            self._send(p.MsgType.INFO, p.pack_info(self.info()))
        elif t in (p.MsgType.START, p.MsgType.STOP):
            if not self.ecg:
                self._ack(frame)
                return
            start = t == p.MsgType.START
            r = await self._control(g.pmd_start_request() if start else g.pmd_stop_request())
            if r.ok or r.status == g.PmdStatus.ALREADY_IN_STATE:
                if not start:
                    self.t.pmd_timeline = None
                self.streaming = start
                self._ack(frame)
            else:
                self._ack(frame, status=r.status)
        elif t == p.MsgType.GET_STATUS:
            contact = self.t.heart_rates[-1].contact if self.t.heart_rates else None
            self._send(p.MsgType.STATUS, p.pack_status(p.Status(
                lead_off=1 if contact is False else 0, battery_pct=100, overruns=0,
                dropped=self.t.stats["pmd_samples_missing"] & 0xFFFFFFFF,
                total=self.delivered & 0xFFFFFFFF)))
        else:
            self._error(frame, p.ErrorCode.ERR_TYPE,
                        f"message type 0x{t:02x} is not available on a PMD/HRS strap")

    def _on_control(self, _char, data: bytearray) -> None:
        try:
            self.responses.put_nowait(g.parse_pmd_response(bytes(data)))
        except Exception as e:
            log.warning("%s: %s", self.t.url, e)

    def _on_data(self, _char, data: bytearray) -> None:
        stats = self.t.stats
        stats["notifications"] += 1
        stats["bytes_in"] += len(data)
        try:
            f = g.parse_pmd_ecg_frame(bytes(data))
        except Exception as e:
            stats["pmd_bad_frames"] += 1
            log.warning("%s: dropped PMD notification: %s", self.t.url, e)
            return
        n = len(f.samples_uv)
        if n == 0 or not self.streaming:
            return
        if self.t.pmd_timeline is None:
            first = 0
        else:
            last_index, last_ts = self.t.pmd_timeline
            if f.timestamp_ns <= last_ts:
                stats["pmd_duplicates"] += 1  # replayed or reordered frame: never deliver twice
                return
            # samples between the previous frame's last one and this frame's last one
            steps = int(round((f.timestamp_ns - last_ts) / self.period_ns))
            missing = steps - n
            first = last_index + 1 + max(0, missing)
            if missing > 0:
                stats["pmd_gaps"] += 1
                stats["pmd_samples_missing"] += missing
        last = first + n - 1
        t_first_ns = f.timestamp_ns - int(round((n - 1) * self.period_ns))
        counts = np.clip(f.samples_uv, -I16_MAX, I16_MAX)
        stats["clipped_samples"] += int(np.count_nonzero(counts != f.samples_uv))
        self.t.pmd_timeline = (last, f.timestamp_ns)
        stats["pmd_frames"] += 1
        stats["pmd_samples"] += n
        self.delivered += n
        for s in p.samples_frames(first, max(0, t_first_ns) // 1000, counts.astype(np.int16),
                                  self.period_ns / 1000.0):
            self._send(p.MsgType.SAMPLES, p.pack_samples(s))

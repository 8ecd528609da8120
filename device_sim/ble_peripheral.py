"""The simulator as a BLE GATT peripheral (bumble) on a virtual radio.

The peripheral is a bridge: the device itself is any wire-protocol device reachable as a transport
(normally the in-process virtual Pocket-K, ``sim://pocket_k?...``); this module only puts it on the
air. It offers three services (UUIDs and payloads in ``ecgedge.firmware_bridge.ble_gatt``):

- ecgedge: RX writes go to the device unchanged; the device's bytes go out as TX notifications, cut
  to ATT_MTU - 3. Same COBS frames as on a UART.
- Polar PMD (H10 compatible): the ECG of a second device instance sampling at 130 Hz, started and
  stopped through the PMD control point, sent as µV samples with frame timestamps (ns since
  2000-01-01 of the last sample) on a strap clock running in simulated time, so device drops and
  time without a link become timestamp jumps.
- Heart Rate Service: measurement notifications once per (simulated) second.

Everything runs in the caller's asyncio loop; the central side is ``ecgedge.device_sim.bleak_bumble``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from bumble.core import AdvertisingData, UUID
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from ecgedge.firmware_bridge import ble_gatt as g
from ecgedge.device_sim.bleak_bumble import VirtualRadio, get_radio
from ecgedge.errors import ConfigError, DeviceTimeout, TransportError
from ecgedge.firmware_bridge import protocol as p

log = logging.getLogger(__name__)

DEFAULT_NAME = "Pocket-K"
DEFAULT_ADDRESS = "F0:EC:6E:00:00:01"
#: PMD timestamps of the simulated strap start here (2026-01-01T00:00:00Z in ns since 2000-01-01).
PMD_T0_NS = (1_767_225_600 * 1_000_000_000) - g.PMD_EPOCH_UNIX_NS

_R = Characteristic.Properties
_PERM_R = Characteristic.Permissions.READABLE
_PERM_W = Characteristic.Permissions.WRITEABLE


@dataclass
class PeripheralStats:
    connections: int = 0
    disconnections: int = 0
    tx_notifications: int = 0
    tx_bytes: int = 0
    rx_writes: int = 0
    rx_bytes: int = 0
    pmd_notifications: int = 0
    pmd_samples: int = 0
    pmd_dropped_notifications: int = 0
    hr_notifications: int = 0
    #: PMD ground truth: every notification made (sent or lost), as (PMD session number from 0,
    #: index of its first sample in that device session, µV samples)
    pmd_sent: list[tuple[int, int, np.ndarray]] = field(default_factory=list, repr=False)
    pmd_sessions: int = 0
    pmd_session_t0_ns: list[int] = field(default_factory=list)  # strap time of each stream's sample 0
    cuts_mid_frame: int = 0  # fault injection: links dropped right after a notification that ended mid-frame


def _open_device(url_or_transport: Any):
    if url_or_transport is None or not isinstance(url_or_transport, str):
        return url_or_transport
    from ecgedge.edge_runtime.transports.base import open_transport

    return open_transport(url_or_transport)


class BlePeripheral:
    """A bumble GATT peripheral bridging wire-protocol devices onto a virtual radio.

    Args:
        device: transport (or URL) of the device behind the ecgedge service, e.g.
            ``"sim://pocket_k?k=6.2&speed=50"``; None: no ecgedge service.
        pmd_device: transport (or URL) of a 130 Hz device feeding the PMD ECG stream; None: no PMD.
        heart_rate: callable giving the current heart rate (bpm) for HRS; None: no HRS.
        name / address: advertised local name and LE address.
        radio: the VirtualRadio (default: the running loop's).
        hr_period_s: seconds of device time between HRS notifications.
        speed: simulated seconds per wall second for HRS pacing (PMD and ecgedge are paced by
            their devices); 0 = as fast as possible.
        drop_pmd: predicate on the PMD notification number (0-based): True = not sent (radio loss).
    """

    def __init__(self, device: Any = None, *, pmd_device: Any = None,
                 heart_rate: Callable[[], float] | None = None, name: str = DEFAULT_NAME,
                 address: str = DEFAULT_ADDRESS, radio: VirtualRadio | None = None,
                 hr_period_s: float = 1.0, speed: float = 1.0,
                 drop_pmd: Callable[[int], bool] | None = None):
        if device is None and pmd_device is None and heart_rate is None:
            raise ConfigError("BlePeripheral needs at least one of device, pmd_device, heart_rate")
        self.device = _open_device(device)
        self.pmd_device = _open_device(pmd_device)
        self.heart_rate = heart_rate
        self.name = name
        self.address = address
        self.radio = radio
        self.hr_period_s = hr_period_s
        self.speed = speed
        self.drop_pmd = drop_pmd
        self.stats = PeripheralStats()
        self.bumble: Device | None = None
        self.connection: Connection | None = None
        self.connected = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._pmd_task: asyncio.Task | None = None
        self._hr_task: asyncio.Task | None = None
        self._pump_task: asyncio.Task | None = None
        self._pmd_ending: asyncio.Task | None = None
        self._rx_chain: asyncio.Task | None = None
        self._tx_char = self._pmd_control = self._pmd_data = self._hr_char = None
        self._pmd_link = None
        self._pmd_uv_per_lsb = 1.0
        self._pmd_sent_count = 0
        self._started_at = 0.0

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> "BlePeripheral":
        self.radio = self.radio or get_radio()
        dev = self.bumble = self.radio.make_device(self.name, self.address)
        dev.add_services(self._services())
        dev.on(Device.EVENT_CONNECTION, self._on_connection)
        await dev.power_on()
        dev.advertising_data = bytes(self._advertising_data())
        self._started_at = asyncio.get_running_loop().time()
        await dev.start_advertising(auto_restart=True, advertising_interval_min=20.0,
                                    advertising_interval_max=20.0)
        log.info("BLE peripheral %s (%s) advertising", self.name, self.address)
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect()
        if self.bumble is not None:
            with contextlib.suppress(Exception):
                await self.bumble.stop_advertising()
            self.radio.remove_device(self.bumble)
        for dev in (self.device, self.pmd_device):
            if dev is not None:
                with contextlib.suppress(Exception):
                    await dev.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    async def disconnect(self) -> None:
        """Drop the link from the peripheral's side (as a strap going out of range would)."""
        if self.connection is not None:
            await self.connection.disconnect()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- GATT database ----------------------------------------------------------------------------
    def _services(self) -> list[Service]:
        services = []
        if self.device is not None:
            self._tx_char = Characteristic(g.ECGEDGE_TX_UUID, _R.NOTIFY, _PERM_R, b"")
            rx = Characteristic(g.ECGEDGE_RX_UUID, _R.WRITE_WITHOUT_RESPONSE | _R.WRITE, _PERM_W,
                                CharacteristicValue(write=self._on_rx))
            services.append(Service(g.ECGEDGE_SERVICE_UUID, [self._tx_char, rx]))
        if self.pmd_device is not None:
            self._pmd_control = Characteristic(
                g.PMD_CONTROL_UUID, _R.READ | _R.WRITE | _R.INDICATE, _PERM_R | _PERM_W,
                CharacteristicValue(read=self._pmd_features, write=self._on_pmd_control))
            self._pmd_data = Characteristic(g.PMD_DATA_UUID, _R.NOTIFY, _PERM_R, b"")
            services.append(Service(g.PMD_SERVICE_UUID, [self._pmd_control, self._pmd_data]))
        if self.heart_rate is not None:
            self._hr_char = Characteristic(g.HRS_MEASUREMENT_UUID, _R.NOTIFY, _PERM_R, b"")
            self._hr_char.on(Characteristic.EVENT_SUBSCRIPTION, self._on_hr_subscription)
            location = Characteristic(g.HRS_BODY_SENSOR_LOCATION_UUID, _R.READ, _PERM_R,
                                      bytes([g.HRS_BODY_SENSOR_CHEST]))
            services.append(Service(g.HRS_SERVICE_UUID, [self._hr_char, location]))
        return services

    def _advertising_data(self) -> AdvertisingData:
        ad = [(AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
              (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()[:8 if self.device else 26])]
        if self.device is not None:
            ad.append((AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                       bytes(UUID(g.ECGEDGE_SERVICE_UUID))))
        elif self.heart_rate is not None:
            ad.append((AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                       bytes(UUID.from_16_bits(0x180D))))
        return AdvertisingData(ad)

    # -- connection -------------------------------------------------------------------------------
    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        self.stats.connections += 1
        self.connected.set()
        connection.on(Connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(connection))
        if self.device is not None:
            self._pump_task = self._spawn(self._pump_device(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        self.stats.disconnections += 1
        if self.connection is connection:
            self.connection = None
            self.connected.clear()
        pmd_streaming = self._pmd_task is not None
        self._pmd_ending = self._pmd_task  # still stopping its device when the next START may come
        for task in (self._pmd_task, self._hr_task, self._pump_task):
            if task is not None:
                task.cancel()
        self._pmd_task = self._hr_task = self._pump_task = None
        # Our device sees its host go away: it keeps its session and resumes on the next START, as
        # our firmware does; it is re-attached on the next connection. A PMD strap ends its stream
        # (the cancelled PMD task stops and detaches its device itself).
        if self.device is not None:
            self._spawn(self.device.close())
        if self.pmd_device is not None and not pmd_streaming:
            self._spawn(self.pmd_device.close())

    # -- ecgedge service --------------------------------------------------------------------------
    def _on_rx(self, _connection, value: bytes) -> None:
        self.stats.rx_writes += 1
        self.stats.rx_bytes += len(value)
        # keep the host's byte order: writes are chained, never run concurrently
        previous = self._rx_chain
        self._rx_chain = self._spawn(self._write_device(previous, bytes(value)))

    async def _write_device(self, previous: asyncio.Task | None, data: bytes) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        if not self.device.is_open:
            await self.device.open()
        await self.device.write(data)

    async def _pump_device(self, connection: Connection) -> None:
        """Device bytes -> TX notifications, for the life of one connection."""
        if not self.device.is_open:
            await self.device.open()
        step = connection.att_mtu - 3
        while self.connection is connection:
            try:
                data = await self.device.read(timeout=0.5)
            except TransportError as e:
                log.info("BLE peripheral %s: device link ended: %s", self.name, e)
                return
            if not data:
                continue
            step = connection.att_mtu - 3
            for i in range(0, len(data), step):
                chunk = data[i:i + step]
                await self.bumble.notify_subscriber(connection, self._tx_char, chunk)
                self.stats.tx_notifications += 1
                self.stats.tx_bytes += len(chunk)
                if self._cut_due() and not chunk.endswith(b"\x00"):
                    # fault injection: the link drops with a frame half delivered (the rest never goes out)
                    self.stats.cuts_mid_frame += 1
                    self._next_cut = self.stats.tx_notifications + self.cut_mid_frame_every
                    await connection.disconnect()
                    return

    #: fault injection: drop the link after a notification that ends mid-frame, every N notifications (0: never)
    cut_mid_frame_every = 0
    _next_cut = 0

    def _cut_due(self) -> bool:
        if not self.cut_mid_frame_every:
            return False
        if not self._next_cut:
            self._next_cut = self.cut_mid_frame_every
        return self.stats.tx_notifications >= self._next_cut

    # -- PMD service ------------------------------------------------------------------------------
    def _pmd_features(self, _connection) -> bytes:
        return bytes([g.PMD_FEATURES, 1 << g.PMD_MEASUREMENT_ECG, 0x00])

    def _on_pmd_control(self, connection, value: bytes) -> None:
        self._spawn(self._pmd_command(connection, bytes(value)))

    async def _pmd_command(self, connection, req: bytes) -> None:
        op = req[0] if req else 0
        kind = req[1] if len(req) > 1 else 0
        S = g.PmdStatus
        if op not in (g.PMD_OP_GET_SETTINGS, g.PMD_OP_START, g.PMD_OP_STOP) or len(req) < 2:
            answer = g.pmd_response(op, kind, S.INVALID_OP_CODE if len(req) >= 2 else S.INVALID_LENGTH)
        elif kind != g.PMD_MEASUREMENT_ECG:
            answer = g.pmd_response(op, kind, S.NOT_SUPPORTED)
        elif op == g.PMD_OP_GET_SETTINGS:
            answer = g.pmd_response(op, kind, S.SUCCESS, g.pmd_ecg_settings())
        elif op == g.PMD_OP_START:
            settings = g.parse_pmd_settings(req[2:]) if len(req) > 2 else {}
            rate = settings.get(g.PMD_SETTING_SAMPLE_RATE, [g.PMD_ECG_RATE_HZ])[0]
            res = settings.get(g.PMD_SETTING_RESOLUTION, [g.PMD_ECG_RESOLUTION_BITS])[0]
            if self._pmd_task is not None:
                answer = g.pmd_response(op, kind, S.ALREADY_IN_STATE)
            elif rate != g.PMD_ECG_RATE_HZ:
                answer = g.pmd_response(op, kind, S.INVALID_SAMPLE_RATE)
            elif res != g.PMD_ECG_RESOLUTION_BITS:
                answer = g.pmd_response(op, kind, S.INVALID_RESOLUTION)
            else:
                if self._pmd_ending is not None:
                    await asyncio.wait([self._pmd_ending])
                    self._pmd_ending = None
                await self._pmd_start_device()
                self._pmd_task = self._spawn(self._pmd_stream(connection, self.stats.pmd_sessions))
                self.stats.pmd_sessions += 1
                answer = g.pmd_response(op, kind, S.SUCCESS)
        else:  # stop
            if self._pmd_task is None:
                answer = g.pmd_response(op, kind, S.ALREADY_IN_STATE)
            else:
                self._pmd_task.cancel()
                self._pmd_task = None
                await self._pmd_stop_device()
                answer = g.pmd_response(op, kind, S.SUCCESS)
        with contextlib.suppress(Exception):
            await self.bumble.indicate_subscriber(connection, self._pmd_control, answer)

    async def _pmd_start_device(self) -> None:
        from ecgedge.firmware_bridge.link import DeviceLink

        if not self.pmd_device.is_open:
            await self.pmd_device.open()
        link = self._pmd_link = DeviceLink(self.pmd_device)
        info = p.unpack_info((await link.request(p.MsgType.HELLO, b"", expect=p.MsgType.INFO,
                                                 timeout=5.0)).payload)
        if info.sample_rate_hz != g.PMD_ECG_RATE_HZ:
            raise ConfigError(f"PMD device samples at {info.sample_rate_hz} Hz, expected "
                              f"{g.PMD_ECG_RATE_HZ} Hz (sim://...&fs=130)")
        self._pmd_uv_per_lsb = info.uv_per_lsb
        await link.request(p.MsgType.START, b"", expect=p.MsgType.ACK, timeout=5.0)

    async def _pmd_stop_device(self) -> None:
        if self._pmd_link is not None:
            with contextlib.suppress(Exception):
                await self._pmd_link.request(p.MsgType.STOP, b"", expect=p.MsgType.ACK, timeout=5.0)

    def strap_clock_ns(self) -> int:
        """The simulated strap's clock: PMD time (ns since 2000), running at `speed` x real time."""
        elapsed = asyncio.get_running_loop().time() - self._started_at
        return PMD_T0_NS + int(elapsed * (self.speed if self.speed > 0 else 1.0) * 1e9)

    async def _pmd_stream(self, connection, session: int) -> None:
        period_ns = 1e9 / g.PMD_ECG_RATE_HZ
        link = self._pmd_link
        # sample k of this device session was taken at t0 + k periods on the strap's clock; samples the
        # device lost keep their indices, so they show up as timestamp jumps, as on a real strap
        t0_ns = self.strap_clock_ns()
        self.stats.pmd_session_t0_ns.append(t0_ns)
        try:
            while True:
                try:
                    frame = await link.recv(timeout=1.0)
                except DeviceTimeout:
                    continue
                except TransportError as e:  # the PMD device went away (peripheral stopping)
                    log.info("BLE peripheral %s: PMD device link ended: %s", self.name, e)
                    return
                if frame.type != p.MsgType.SAMPLES:
                    continue
                s = p.unpack_samples(frame.payload)
                uv = np.rint(s.samples.astype(np.float64) * self._pmd_uv_per_lsb).astype(np.int32)
                per = g.pmd_samples_per_frame(connection.att_mtu)
                for off in range(0, len(uv), per):
                    chunk = uv[off:off + per]
                    last = s.first_index + off + len(chunk) - 1
                    number = self._pmd_sent_count
                    self._pmd_sent_count += 1
                    self.stats.pmd_sent.append((session, s.first_index + off, chunk))
                    if self.drop_pmd is not None and self.drop_pmd(number):
                        self.stats.pmd_dropped_notifications += 1
                        continue
                    data = g.pmd_ecg_frame(t0_ns + int(round(last * period_ns)), chunk)
                    await self.bumble.notify_subscriber(connection, self._pmd_data, data)
                    self.stats.pmd_notifications += 1
                    self.stats.pmd_samples += len(chunk)
        finally:
            await self._pmd_stop_device()
            if self.connection is not connection:
                await self.pmd_device.close()

    # -- Heart Rate Service -----------------------------------------------------------------------
    def _on_hr_subscription(self, bearer, notify_enabled: bool, _indicate: bool) -> None:
        if self._hr_task is not None:
            self._hr_task.cancel()
            self._hr_task = None
        if notify_enabled and self.connection is not None:
            self._hr_task = self._spawn(self._hr_stream(self.connection))

    def heart_rate_measurement(self) -> g.HeartRateMeasurement:
        bpm = float(self.heart_rate())
        return g.HeartRateMeasurement(bpm=int(round(bpm)), rr_s=(60.0 / bpm,), contact=True)

    async def _hr_stream(self, connection) -> None:
        while True:
            data = g.encode_heart_rate(self.heart_rate_measurement())
            await self.bumble.notify_subscriber(connection, self._hr_char, data)
            self.stats.hr_notifications += 1
            await asyncio.sleep(self.hr_period_s / self.speed if self.speed > 0 else 0)


def _pmd_url(url: str) -> str:
    """The 130 Hz twin of a sim:// URL (same subject and seed) for the PMD stream."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    u = urlsplit(url)
    q = {k: v for k, v in parse_qsl(u.query, keep_blank_values=True)
         if k not in ("fs", "sampling_rate", "truth", "package")}
    q["fs"] = str(g.PMD_ECG_RATE_HZ)
    q.setdefault("samples_per_frame", "73")  # what a Polar H10 sends per notification at MTU 232
    return urlunsplit((u.scheme, u.netloc, u.path, urlencode(q), ""))


def sim_peripheral(url: str = "sim://pocket_k", *, services: tuple[str, ...] = g.PROFILES,
                   name: str = DEFAULT_NAME, address: str = DEFAULT_ADDRESS,
                   radio: VirtualRadio | None = None,
                   drop_pmd: Callable[[int], bool] | None = None) -> BlePeripheral:
    """The virtual Pocket-K of `url` (``sim://pocket_k?k=6.2&hr=72&speed=50...``) as a BLE peripheral.

    ``services`` picks among "ecgedge" (the device itself), "pmd" (a 130 Hz twin of it, same subject
    and seed, as a Polar PMD ECG stream) and "hrs" (its heart rate). Call ``await p.start()``.
    The devices are ``p.device`` / ``p.pmd_device`` (SimTransport; ``.device`` is the VirtualDevice
    with the ground truth, once a central has connected).
    """
    from ecgedge.device_sim.transport import SimTransport

    unknown = set(services) - set(g.PROFILES)
    if unknown or not services:
        raise ConfigError(f"services={services!r}: expected a non-empty subset of {g.PROFILES}")
    device = SimTransport(url) if "ecgedge" in services else None
    pmd = SimTransport(_pmd_url(url)) if "pmd" in services else None
    config = (device or pmd or SimTransport(url)).config
    heart_rate = (lambda: config.hr) if "hrs" in services else None
    return BlePeripheral(device, pmd_device=pmd, heart_rate=heart_rate, name=name, address=address,
                         radio=radio, speed=config.speed, drop_pmd=drop_pmd)

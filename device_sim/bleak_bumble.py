"""A bleak backend on top of bumble's Python Bluetooth stack.

On a Raspberry Pi bleak talks to BlueZ. Here (and in CI) there is no Bluetooth hardware, so this
module gives bleak a client and a scanner class that drive a bumble host + virtual controller
attached to a :class:`VirtualRadio` (a ``bumble.link.LocalLink``). Any bumble peripheral attached
to the same radio in the same asyncio loop (e.g. ``ecgedge.device_sim.ble_peripheral``) can then be
found, connected, discovered, written and subscribed to by *unchanged* bleak code::

    from ecgedge.device_sim.bleak_bumble import BumbleScanner, BumbleClient
    dev = await BleakScanner.find_device_by_name("Pocket-K", backend=BumbleScanner)
    async with BleakClient(dev, backend=BumbleClient) as client: ...

Everything is real GATT over a real (virtual) link layer: ATT MTU exchange, service discovery,
CCCD writes, notifications and disconnect events. Only the radio is simulated.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid as uuid_module
import weakref
from typing import Any, Callable

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bumble import controller as controller_module
from bumble import hci
from bumble import host as host_module
from bumble.controller import Controller
from bumble.core import AdvertisingData, UUID
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

#: ATT MTU a central asks for (BlueZ and most phones negotiate 247 or more with modern peripherals).
DEFAULT_CENTRAL_MTU = 247

_PROPERTY_NAMES = {
    Characteristic.Properties.BROADCAST: "broadcast",
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
    Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES: "authenticated-signed-writes",
    Characteristic.Properties.EXTENDED_PROPERTIES: "extended-properties",
}


class _QuietController(Controller):
    """bumble's Controller formats every HCI packet into a coloured debug string even when debug
    logging is off (an eager f-string): about a third of the CPU of a streaming session. Same
    behaviour, formatting only when debug logging is on."""

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if _bumble_debug(controller_module.logger):
            return super().send_hci_packet(packet)
        if self.host:
            asyncio.get_running_loop().call_soon(self.host.on_packet, bytes(packet))

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if _bumble_debug(controller_module.logger):
            return super().on_hci_packet(packet)
        match packet:
            case hci.HCI_Command():
                self.on_hci_command_packet(packet)
            case hci.HCI_AclDataPacket():
                self.on_hci_acl_data_packet(packet)
            case hci.HCI_Event():
                self.on_hci_event_packet(packet)
            case _:
                super().on_hci_packet(packet)


class _QuietHost(Host):
    """The host side of the same eager formatting (see _QuietController)."""

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if _bumble_debug(host_module.logger) or self.snooper:
            return super().send_hci_packet(packet)
        if self.hci_sink:
            self.hci_sink.on_packet(bytes(packet))

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if _bumble_debug(host_module.logger) or self.snooper:
            return super().on_hci_packet(packet)
        match packet:
            case hci.HCI_Event():
                self.on_hci_event_packet(packet)
            case hci.HCI_AclDataPacket():
                self.on_hci_acl_data_packet(packet)
            case _:
                super().on_hci_packet(packet)


def _bumble_debug(logger: logging.Logger) -> bool:
    return logger.isEnabledFor(logging.DEBUG)


def bleak_uuid(uuid: UUID) -> str:
    """bumble UUID (little-endian bytes) -> bleak's lower-case 128-bit string."""
    return str(uuid_module.UUID(bytes=bytes(reversed(uuid.uuid_128_bytes))))


class VirtualRadio:
    """A virtual radio (bumble LocalLink) shared by the Bluetooth devices of one asyncio loop.

    Peripherals and centrals made with :meth:`make_device` hear each other's advertisements and can
    connect to each other. bumble's Controller needs a running loop, so create devices in async code.
    """

    _ids = itertools.count(1)

    def __init__(self, le_data_length: int = 251) -> None:
        """``le_data_length``: link-layer payload bytes per packet. 251 models LE Data Length
        Extension (Bluetooth 4.2+, what a Pi's controller and current phones negotiate); 27 models a
        Bluetooth 4.0/4.1 link, where every 244-byte notification is cut into 10 fragments."""
        if not 27 <= le_data_length <= 251:
            raise ValueError(f"le_data_length={le_data_length}: expected 27..251 (Bluetooth LE link layer)")
        self.le_data_length = le_data_length
        self.link = LocalLink()
        #: long-lived peripherals on this radio by name (e.g. started by a ble://...&sim= URL)
        self.peripherals: dict[str, Any] = {}
        self._central_addresses = itertools.count(1)

    def make_device(self, name: str, address: str | None = None) -> Device:
        """A powered-off bumble Device with its own virtual controller on this radio.

        ``address`` is the device's (random static) LE address, e.g. ``"F0:00:00:00:00:01"``; centrals
        get a fresh one.
        """
        if address is None:
            n = next(self._central_addresses)
            address = f"C0:00:00:00:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}"
        controller = _QuietController(f"{name}-{next(self._ids)}", link=self.link)
        controller.le_acl_data_packet_length = self.le_data_length
        controller.supported_max_tx_octets = controller.suggested_max_tx_octets = self.le_data_length
        host = _QuietHost(controller, AsyncPipeSink(controller))
        return Device(name=name, address=hci.Address(address), host=host)

    def remove_device(self, device: Device) -> None:
        """Detach a device's controller from the radio (it no longer hears or is heard)."""
        controller = device.host.controller if device.host else None
        if controller is not None and controller in self.link.controllers:
            self.link.remove_controller(controller)


_radios: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, VirtualRadio]" = (
    weakref.WeakKeyDictionary()
)


def get_radio() -> VirtualRadio:
    """The default virtual radio of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    radio = _radios.get(loop)
    if radio is None:
        radio = _radios[loop] = VirtualRadio()
    return radio


def _radio_from(kwargs: dict[str, Any]) -> VirtualRadio:
    radio = kwargs.get("radio")
    if radio is None:
        radio = kwargs.get("bumble", {}).get("radio") if isinstance(kwargs.get("bumble"), dict) else None
    return radio if radio is not None else get_radio()


def _advertisement_data(advertisement: Any) -> AdvertisementData:
    data: AdvertisingData = advertisement.data
    name = data.get(AdvertisingData.Type.COMPLETE_LOCAL_NAME) or data.get(
        AdvertisingData.Type.SHORTENED_LOCAL_NAME
    )
    service_uuids: list[str] = []
    for ad_type in (
        AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    ):
        for uuids in data.get_all(ad_type):
            service_uuids.extend(bleak_uuid(u) for u in uuids)
    manufacturer_data = {
        company: bytes(payload)
        for company, payload in data.get_all(AdvertisingData.Type.MANUFACTURER_SPECIFIC_DATA)
    }
    service_data: dict[str, bytes] = {}
    for ad_type in (
        AdvertisingData.Type.SERVICE_DATA_16_BIT_UUID,
        AdvertisingData.Type.SERVICE_DATA_32_BIT_UUID,
        AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID,
    ):
        for service_uuid, payload in data.get_all(ad_type):
            service_data[bleak_uuid(service_uuid)] = bytes(payload)
    tx_power = data.get(AdvertisingData.Type.TX_POWER_LEVEL)
    return AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=service_uuids,
        tx_power=tx_power,
        rssi=advertisement.rssi,
        platform_data=(advertisement,),
    )


def _address_str(address: hci.Address) -> str:
    # bumble prints random addresses with a "/P" style suffix only for public ones; keep bare form
    return address.to_string(with_type_qualifier=False)


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend: a bumble central scanning the virtual radio.

    Extra keyword: ``radio`` (a :class:`VirtualRadio`; default: the loop's :func:`get_radio`).
    """

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"
        self._radio_kwargs = kwargs
        self._radio: VirtualRadio | None = None
        self._device: Device | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._radio = _radio_from(self._radio_kwargs)
        self._device = self._radio.make_device("bleak-bumble-scanner")
        await self._device.power_on()
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self._device.start_scanning(active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        if self._device is None:
            return
        device, self._device = self._device, None
        try:
            await device.stop_scanning()
        finally:
            assert self._radio is not None
            self._radio.remove_device(device)

    def _on_advertisement(self, advertisement: Any) -> None:
        adv = _advertisement_data(advertisement)
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = _address_str(advertisement.address)
        device = self.create_or_update_device(
            address,
            address,
            adv.local_name,
            {"radio": self._radio, "address": advertisement.address},
            adv,
        )
        self.call_detection_callbacks(device, adv)


class BumbleClient(BaseBleakClient):
    """bleak client backend: a bumble central connecting over the virtual radio.

    Extra keywords: ``radio`` (default: the radio the BLEDevice was found on, else the loop's
    :func:`get_radio`), ``mtu`` (ATT MTU to request, default 247).
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        services: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details = (
            address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._peer_address: hci.Address | None = (
            details.get("address") if isinstance(details, dict) else None
        )
        self._radio_kwargs = dict(kwargs)
        if isinstance(details, dict) and details.get("radio") is not None:
            self._radio_kwargs.setdefault("radio", details["radio"])
        self._wanted_mtu = int(kwargs.get("mtu", DEFAULT_CENTRAL_MTU))
        self._service_filter = services
        self._radio: VirtualRadio | None = None
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._local_disconnect = False
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    # -- connectivity -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        if self._connection is not None:
            return
        timeout = kwargs.get("timeout", self._timeout)
        self._radio = _radio_from(self._radio_kwargs)
        peer_address = self._peer_address or hci.Address(self.address)
        if self._radio.link.find_le_controller(peer_address) is None:
            raise BleakDeviceNotFoundError(
                self.address, f"device {self.address} is not on the virtual radio"
            )
        self._device = self._radio.make_device("bleak-bumble-central")
        await self._device.power_on()
        try:
            async with asyncio.timeout(timeout):
                connection = await self._device.connect(peer_address)
                self._connection = connection
                self._local_disconnect = False
                connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
                self._peer = Peer(connection)
                if self._wanted_mtu > 23:
                    await self._peer.request_mtu(self._wanted_mtu)
                if pair:
                    await connection.pair()
                self.services = await self._discover()
        except BaseException:
            await self._teardown()
            raise

    async def _discover(self) -> BleakGATTServiceCollection:
        assert self._peer is not None
        await self._peer.discover_all()
        collection = BleakGATTServiceCollection()
        max_write = lambda: self.mtu_size - 3  # noqa: E731  (ATT write command header)
        for service_proxy in self._peer.services:
            service_uuid = bleak_uuid(service_proxy.uuid)
            if self._service_filter and service_uuid not in self._service_filter:
                continue
            service = BleakGATTService(service_proxy, service_proxy.handle, service_uuid)
            collection.add_service(service)
            for char_proxy in service_proxy.characteristics:
                props = [
                    label for flag, label in _PROPERTY_NAMES.items() if char_proxy.properties & flag
                ]
                characteristic = BleakGATTCharacteristic(
                    char_proxy, char_proxy.handle, bleak_uuid(char_proxy.uuid), props, max_write, service
                )
                collection.add_characteristic(characteristic)
                for desc_proxy in char_proxy.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            desc_proxy, desc_proxy.handle, bleak_uuid(desc_proxy.type), characteristic
                        )
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        local = self._local_disconnect
        self._connection = None
        self._peer = None
        self._subscribers.clear()
        if self._device is not None and self._radio is not None:
            self._radio.remove_device(self._device)
        log.debug("bumble central %s disconnected (reason %s, local %s)", self.address, reason, local)
        if not local and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _teardown(self) -> None:
        if self._device is not None and self._radio is not None:
            self._radio.remove_device(self._device)
        self._device = None
        self._connection = None
        self._peer = None

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            await self._teardown()
            return
        self._local_disconnect = True
        done = asyncio.get_running_loop().create_future()
        connection.once(
            Connection.EVENT_DISCONNECTION, lambda *_: done.done() or done.set_result(None)
        )
        try:
            await connection.disconnect()
            async with asyncio.timeout(self._timeout):
                await done
        except Exception as exc:  # link already gone: nothing left to tear down
            log.debug("disconnect of %s: %s", self.address, exc)
        await self._teardown()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        await self._require_connection().pair()

    async def unpair(self) -> None:
        raise BleakError("the bumble virtual backend keeps no bonds, so there is nothing to unpair")

    def _require_connection(self) -> Connection:
        if self._connection is None or self._peer is None:
            raise BleakError(f"not connected to {self.address}")
        return self._connection

    # -- I/O --------------------------------------------------------------------------------------
    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require_connection()
        assert self._peer is not None
        return bytearray(await self._peer.read_value(characteristic.obj))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require_connection()
        assert self._peer is not None
        return bytearray(await self._peer.read_value(descriptor.obj))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        self._require_connection()
        assert self._peer is not None
        await self._peer.write_value(characteristic.obj, bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._require_connection()
        assert self._peer is not None
        await self._peer.write_value(descriptor.obj, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._require_connection()
        assert self._peer is not None

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = on_value
        await self._peer.subscribe(characteristic.obj, on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require_connection()
        assert self._peer is not None
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await self._peer.unsubscribe(characteristic.obj, subscriber)


class BumbleBackend:
    """What ``ble://...&backend=bumble`` loads (entry point ``bumble`` in the group
    ``ecgedge.ble_backends``): the bleak classes above, the ATT MTU to ask for, and the simulator's
    peripheral for ``&sim=...``."""

    scanner = BumbleScanner
    client = BumbleClient

    @staticmethod
    def client_kwargs(transport) -> dict:
        return {"mtu": transport.mtu}

    @staticmethod
    async def start_simulator(transport):
        """Start (once per event loop and name) the simulator's peripheral that `transport` asked for
        with sim=. It outlives the transport's reconnects, as a real device does."""
        from ecgedge.device_sim.ble_peripheral import DEFAULT_ADDRESS, sim_peripheral

        radio = get_radio()
        key = transport.name or transport.address
        if key not in radio.peripherals:
            radio.peripherals[key] = await sim_peripheral(
                transport.sim_url, services=transport.sim_services, name=transport.name or "Pocket-K",
                address=transport.address or DEFAULT_ADDRESS, radio=radio).start()
        return radio.peripherals[key]

"""Byte transports chosen by URL: serial://, socket://, loop://, sim://, qemu://, ble://, spy://<url>, fault://<url>
(fault injection, ecgedge.edge_runtime.faults).

Every transport has the same asyncio interface (open / read / write / close); framing lives in
`ecgedge.edge_runtime.link`. Heavy or optional back-ends (QEMU, BLE, the simulator) import lazily.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ecgedge.edge_runtime.transports.base import Transport
from ecgedge.errors import ConfigError


def _serial(url):
    from ecgedge.edge_runtime.transports.serial_port import SerialTransport
    return SerialTransport(url)


def _socket(url):
    from ecgedge.edge_runtime.transports.tcp import SocketTransport
    return SocketTransport(url)


def _loop(url):
    from ecgedge.edge_runtime.transports.loop import LoopTransport
    return LoopTransport(url)


def _sim(url):
    from ecgedge.device_sim.transport import SimTransport
    return SimTransport(url)


def _qemu(url):
    from ecgedge.edge_runtime.transports.qemu import QemuTransport
    return QemuTransport(url)


def _ble(url):
    from ecgedge.edge_runtime.transports.ble import BleTransport
    return BleTransport(url)


def _spy(url):
    from ecgedge.edge_runtime.transports.spy import SpyTransport
    return SpyTransport(url)


def _fault(url):
    from ecgedge.edge_runtime.faults import FaultTransport
    return FaultTransport(url)


SCHEMES = {"serial": _serial, "socket": _socket, "tcp": _socket, "loop": _loop, "sim": _sim, "qemu": _qemu,
           "ble": _ble, "spy": _spy,
           "fault": _fault}


def open_transport(url: str) -> Transport:
    """A (not yet opened) transport for `url`; ConfigError for an unknown scheme."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown transport URL {url!r}: scheme {scheme!r}, expected one of "
                          + ", ".join(f"{s}://" for s in SCHEMES))
    return SCHEMES[scheme](url)


__all__ = ["SCHEMES", "Transport", "open_transport"]

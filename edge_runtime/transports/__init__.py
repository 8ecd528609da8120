"""Byte transports chosen by URL: serial://, socket://, loop://, qemu://, ble://, spy://<url>, and the
schemes plug-ins register (the simulator's sim:// and fault://<url>); see `base` for the registry.

Every transport has the same asyncio interface (open / read / write / close); framing lives in
`ecgedge.firmware_bridge.link`. Back-ends are imported when a URL asks for them.
"""

from __future__ import annotations

from ecgedge.edge_runtime.transports.base import BUILTIN, Transport, open_transport, transport_schemes

__all__ = ["BUILTIN", "Transport", "open_transport", "transport_schemes"]

"""sim://<model>?k=&hr=&noise=&speed=&seed=&drop=&burst=&package=&replay=: the virtual device in-process."""

from __future__ import annotations

from urllib.parse import urlsplit

from ecgedge.edge_runtime.transports.base import QueueReader, Transport, url_query
from ecgedge.errors import TransportError


class SimTransport(Transport):
    """Bytes written go to a VirtualDevice; its frames come back on read. One device per transport,
    kept across close/open so a reconnect resumes the same session (as a real device would)."""

    def __init__(self, url: str, device=None):
        super().__init__(url)
        from ecgedge.device_sim.device import SimConfig

        u = urlsplit(url)
        self.config = SimConfig.from_query(u.hostname or u.netloc or "pocket_k", url_query(url))
        self.device = device

    async def open(self):
        from ecgedge.device_sim.device import VirtualDevice

        if self.device is None:
            self.device = VirtualDevice(self.config)
        self._q = QueueReader()
        q = self._q

        async def sink(data: bytes):
            q.push(data)

        self.device.attach(sink)
        self.device.on_link_lost = lambda: q.fail("sim link dropped")
        self.is_open = True

    async def read(self, timeout=1.0):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        try:
            return await self._q.read(timeout)
        except TransportError:
            self.is_open = False
            raise

    async def write(self, data):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        await self.device.receive(data)

    async def close(self):
        if self.device is not None:
            self.device.detach()
        if self.is_open:
            self._q.fail("closed")
        self.is_open = False

"""loop://: everything written comes back on read (for tests of the framing layer)."""

from ecgedge.edge_runtime.transports.base import QueueReader, Transport
from ecgedge.errors import TransportError


class LoopTransport(Transport):
    async def open(self):
        self._q = QueueReader()
        self.is_open = True

    async def read(self, timeout=1.0):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        return await self._q.read(timeout)

    async def write(self, data):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        self._q.push(data)

    async def close(self):
        if self.is_open:
            self._q.fail("closed")
        self.is_open = False

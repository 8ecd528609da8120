"""socket://HOST:PORT: a TCP client (the simulator's --tcp server, a socat bridge, a networked bench)."""

import asyncio
from urllib.parse import urlsplit

from ecgedge.edge_runtime.transports.base import Transport, url_query, query_number
from ecgedge.errors import ConfigError, TransportError


class SocketTransport(Transport):
    def __init__(self, url):
        super().__init__(url)
        u = urlsplit(url)
        if not u.hostname or not u.port:
            raise ConfigError(f"{url!r}: expected socket://HOST:PORT")
        self.host, self.port = u.hostname, u.port
        self.connect_timeout = query_number(url_query(url), "timeout", 5.0)
        self._reader = self._writer = None

    async def open(self):
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {e or 'timeout'}") from None
        self.is_open = True

    async def read(self, timeout=1.0):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        try:
            data = await asyncio.wait_for(self._reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return b""
        except OSError as e:
            self.is_open = False
            raise TransportError(f"{self.url}: {e}") from None
        if not data:
            self.is_open = False
            raise TransportError(f"{self.url}: connection closed by the device")
        return data

    async def write(self, data):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as e:
            self.is_open = False
            raise TransportError(f"{self.url}: {e}") from None

    async def close(self):
        self.is_open = False
        if self._writer is not None:
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
            self._writer = None

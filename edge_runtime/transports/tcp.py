"""socket://HOST:PORT: a TCP client (the simulator's --tcp server, a socat bridge, a networked bench)."""

import asyncio
from urllib.parse import urlsplit

from ecgedge.edge_runtime.transports.base import StreamTransport, url_query, query_number
from ecgedge.errors import ConfigError, TransportError


class SocketTransport(StreamTransport):
    def __init__(self, url):
        super().__init__(url)
        u = urlsplit(url)
        if not u.hostname or not u.port:
            raise ConfigError(f"{url!r}: expected socket://HOST:PORT")
        self.host, self.port = u.hostname, u.port
        self.connect_timeout = query_number(url_query(url), "timeout", 5.0)

    async def open(self):
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {e or 'timeout'}") from None
        self.is_open = True

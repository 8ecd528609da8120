"""spy://<url>: wraps any transport and logs every chunk (direction, time, hex).

The log goes to the file named by the inner URL's `spy_log=PATH` parameter (removed before the inner
transport sees it), else to the `ecgedge.spy` logger at DEBUG level.
"""

import logging
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ecgedge.edge_runtime.transports.base import Transport
from ecgedge.errors import ConfigError

log = logging.getLogger("ecgedge.spy")


class SpyTransport(Transport):
    def __init__(self, url):
        super().__init__(url)
        inner = url[len("spy://"):]
        if "://" not in inner:
            raise ConfigError(f"{url!r}: expected spy://<inner url>, e.g. spy://socket://127.0.0.1:5000")
        u = urlsplit(inner)
        q = parse_qsl(u.query, keep_blank_values=True)
        self.log_path = dict(q).get("spy_log")
        inner = urlunsplit(u._replace(query=urlencode([(k, v) for k, v in q if k != "spy_log"])))
        from ecgedge.edge_runtime.transports import open_transport

        self.inner = open_transport(inner)
        self._file = None
        self._t0 = time.monotonic()
        self.bytes_in = self.bytes_out = 0

    def _log(self, direction, data):
        line = f"{time.monotonic() - self._t0:12.6f} {direction} {len(data):5d} {data.hex()}"
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        else:
            log.debug(line)

    async def open(self):
        if self.log_path:
            self._file = open(self.log_path, "a")
        self._log("open", self.inner.url.encode())
        await self.inner.open()
        self.is_open = True

    async def read(self, timeout=1.0):
        data = await self.inner.read(timeout)
        if data:
            self.bytes_in += len(data)
            self._log("<-", data)
        return data

    async def write(self, data):
        self.bytes_out += len(data)
        self._log("->", data)
        await self.inner.write(data)

    async def close(self):
        await self.inner.close()
        self.is_open = False
        if self._file is not None:
            self._file.close()
            self._file = None

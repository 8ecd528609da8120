"""spy://<url>: wraps any transport and logs every chunk (direction, time, hex).

The log goes to the file named by the inner URL's `spy_log=PATH` parameter (removed before the inner
transport sees it), else to the `ecgedge.spy` logger at DEBUG level.
"""

import logging
import time

from ecgedge.edge_runtime.transports.base import Transport, split_wrapper_url

log = logging.getLogger("ecgedge.spy")


class SpyTransport(Transport):
    def __init__(self, url):
        super().__init__(url)
        inner, own = split_wrapper_url(url, "spy", {"spy_log"}, "spy://socket://127.0.0.1:5000")
        self.log_path = dict(own).get("spy_log")
        from ecgedge.edge_runtime.transports.base import open_transport

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

"""serial:///dev/ttyX?baud=921600: pyserial on any serial port, ptys included, read through the event loop."""

import asyncio
import os
from urllib.parse import unquote, urlsplit

from ecgedge.edge_runtime.transports.base import QueueReader, Transport, query_number, url_query
from ecgedge.errors import ConfigError, TransportError


class SerialTransport(Transport):
    def __init__(self, url):
        super().__init__(url)
        u = urlsplit(url)
        self.port = unquote((u.netloc or "") + u.path)
        if not self.port:
            raise ConfigError(f"{url!r}: expected serial:///dev/ttyXXX")
        self.baud = query_number(url_query(url), "baud", 921600, int)
        self._ser = None

    async def open(self):
        import serial

        try:
            self._ser = serial.Serial(self.port, self.baud, timeout=0, write_timeout=2.0, exclusive=False)
        except (serial.SerialException, OSError, ValueError) as e:
            raise TransportError(f"cannot open serial port {self.port}: {e}") from None
        self._fd = self._ser.fileno()
        os.set_blocking(self._fd, False)
        self._q = QueueReader()
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        self.is_open = True

    def _on_readable(self):
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: the other end of a pty went away
            self._detach()
            self._q.fail(f"{self.port}: {e}")
            return
        if not data:
            self._detach()
            self._q.fail(f"{self.port}: end of file")
            return
        self._q.push(data)

    def _detach(self):
        try:
            asyncio.get_running_loop().remove_reader(self._fd)
        except (RuntimeError, ValueError):
            pass

    async def read(self, timeout=1.0):
        if self._ser is None:
            raise TransportError(f"{self.url} is not open")
        try:
            return await self._q.read(timeout)
        except TransportError:
            self.is_open = False
            raise

    async def write(self, data):
        if not self.is_open:
            raise TransportError(f"{self.url} is not open")
        view = memoryview(bytes(data))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while view:
            try:
                n = os.write(self._fd, view)
                view = view[n:]
            except BlockingIOError:
                if loop.time() > deadline:
                    raise TransportError(f"{self.port}: write timed out") from None
                await asyncio.sleep(0.001)
            except OSError as e:
                self.is_open = False
                raise TransportError(f"{self.port}: {e}") from None

    async def close(self):
        if self._ser is not None:
            self._detach()
            try:
                self._ser.close()
            except OSError:
                pass
            self._ser = None
        self.is_open = False

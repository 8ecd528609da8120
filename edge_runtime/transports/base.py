"""The transport interface and small helpers shared by the implementations."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ecgedge.errors import ConfigError, TransportError


def url_query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def query_number(q: dict, name: str, default, kind=float):
    if name not in q:
        return default
    try:
        return kind(q[name])
    except ValueError:
        raise ConfigError(f"URL parameter {name}={q[name]!r} is not a {kind.__name__}") from None


def split_wrapper_url(url: str, scheme: str, own_keys, example: str) -> tuple[str, list[tuple[str, str]]]:
    """A wrapper URL `<scheme>://<inner url>` -> (the inner URL without the wrapper's own query parameters,
    those parameters in order). ConfigError when no inner URL follows."""
    inner = url[len(f"{scheme}://"):]
    if "://" not in inner:
        raise ConfigError(f"{url!r}: expected {scheme}://<inner url>, e.g. {example}")
    u = urlsplit(inner)
    q = parse_qsl(u.query, keep_blank_values=True)
    rest = urlunsplit(u._replace(query=urlencode([(k, v) for k, v in q if k not in own_keys])))
    return rest, [(k, v) for k, v in q if k in own_keys]


class Transport:
    """A byte pipe to a device. read() returns b"" on timeout and raises TransportError once the link is gone."""

    def __init__(self, url: str):
        self.url = url
        self.is_open = False

    async def open(self) -> None:
        raise NotImplementedError

    async def read(self, timeout: float = 1.0) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self):
        await self.open()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.url} {'open' if self.is_open else 'closed'}>"


class StreamTransport(Transport):
    """A Transport over an asyncio StreamReader/StreamWriter pair (TCP, the QEMU UART's unix socket):
    subclasses open the streams; reading, writing and closing them is shared here."""

    closed_message = "connection closed by the device"

    def __init__(self, url: str):
        super().__init__(url)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

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
            raise TransportError(f"{self.url}: {self.closed_message}")
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
            writer, self._writer = self._writer, None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass


class QueueReader:
    """Buffer of received chunks with a timeout read; `fail()` makes further reads raise."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self._event = asyncio.Event()
        self._error: str | None = None

    def push(self, data: bytes) -> None:
        if data:
            self._chunks.append(bytes(data))
            self._event.set()

    def fail(self, why: str) -> None:
        self._error = why
        self._event.set()

    async def read(self, timeout: float) -> bytes:
        if not self._chunks and self._error is None:
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                return b""
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks.clear()
            return data
        raise TransportError(self._error or "link closed")

"""The transport interface, the registry of URL schemes, and small helpers shared by the implementations.

`open_transport(url)` picks the transport by the URL's scheme: the runtime's own (BUILTIN: serial://,
socket:// / tcp://, loop://, qemu://, ble://, spy://) or one a plug-in registers under the entry point
group `ecgedge.transports` (name = scheme, value = "module:Class" of a Transport taking the URL). The
simulator registers sim:// and fault:// that way (pyproject.toml), so the runtime never imports it; a
scheme whose plug-in is missing or cannot be imported is refused with a one-line ConfigError saying
what is missing. bleak back-ends for ble:// register the same way under `ecgedge.ble_backends`.
Plug-ins implement this module's Transport (and may use the registry to open an inner transport).
"""

from __future__ import annotations

import asyncio
import importlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ecgedge.errors import ConfigError, TransportError

TRANSPORT_GROUP = "ecgedge.transports"
BLE_BACKEND_GROUP = "ecgedge.ble_backends"
# The runtime's own transports, imported when a URL asks for them.
BUILTIN = {
    "serial": "ecgedge.edge_runtime.transports.serial_port:SerialTransport",
    "socket": "ecgedge.edge_runtime.transports.tcp:SocketTransport",
    "tcp": "ecgedge.edge_runtime.transports.tcp:SocketTransport",
    "loop": "ecgedge.edge_runtime.transports.loop:LoopTransport",
    "qemu": "ecgedge.edge_runtime.transports.qemu:QemuTransport",
    "ble": "ecgedge.edge_runtime.transports.ble:BleTransport",
    "spy": "ecgedge.edge_runtime.transports.spy:SpyTransport",
}
# Where schemes the runtime knows of, but does not provide, come from (for the error message only).
PROVIDERS = {"sim": "the device simulator (ecgedge.device_sim)",
             "fault": "the fault injector of the device simulator (ecgedge.device_sim)",
             "bumble": "the device simulator's bleak-over-bumble back-end (ecgedge.device_sim, extra 'sim')"}


def plugins(group: str) -> dict[str, str]:
    """{name: "module:attr"} registered under an entry point group by the installed distributions."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=group)}


def load_object(target: str, what: str):
    """The object "module:attr" names; ConfigError naming `what` and the missing module otherwise."""
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except ImportError as e:
        hint = " (pip install 'ecgedge[sim]')" if getattr(e, "name", "") in ("bumble", "bleak") else ""
        raise ConfigError(f"{what} needs {target}, which cannot be imported here: {e}{hint}") from None
    except AttributeError as e:
        raise ConfigError(f"{what}: {target} is not importable ({e})") from None
    return obj


def _missing(kind: str, name: str, group: str, known) -> str:
    who = PROVIDERS.get(name)
    if who:
        return (f"{kind} {name!r} comes from {who}, which has not registered it in this install (entry point "
                f"group {group!r}); install ecgedge with it (pip install 'ecgedge[sim]'; a checkout installed "
                f"before the plug-ins existed: pip install -e . again)")
    return f"unknown {kind} {name!r}; expected one of {', '.join(known)}"


def transport_schemes() -> dict[str, str]:
    """Every URL scheme open_transport knows now: the built-in ones and the registered plug-ins."""
    return {**plugins(TRANSPORT_GROUP), **BUILTIN}


def open_transport(url: str) -> "Transport":
    """A (not yet opened) transport for `url`; ConfigError for a scheme nothing provides."""
    scheme = urlsplit(url).scheme
    schemes = transport_schemes()
    if scheme not in schemes:
        raise ConfigError(f"transport URL {url!r}: " + _missing("scheme", scheme, TRANSPORT_GROUP,
                                                                 [f"{s}://" for s in sorted(schemes)]))
    return load_object(schemes[scheme], f"{scheme}://")(url)


def ble_backend(name: str, also=()):
    """The bleak back-end a plug-in registers under `name` (group ecgedge.ble_backends); `also`: the
    names the caller handles itself, for the error message."""
    backends = plugins(BLE_BACKEND_GROUP)
    if name not in backends:
        raise ConfigError(_missing("BLE backend", name, BLE_BACKEND_GROUP, [*also, *sorted(backends)]))
    return load_object(backends[name], f"BLE backend {name!r}")


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

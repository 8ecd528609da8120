"""Expose a VirtualDevice over a real pty (the host opens /dev/pts/N with pyserial) or a TCP server."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import tty

log = logging.getLogger("ecgedge.sim")


def open_pty() -> tuple[int, str]:
    """A raw pty pair: returns (master fd, slave path). The slave fd is kept open so the host may come and go."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    _keep.append(slave)
    return master, path


_keep: list[int] = []


def pty_sink(master: int):
    """An async byte sink writing whole to a non-blocking pty master (waits while the host is not reading)."""
    async def sink(data: bytes):
        view = memoryview(data)
        while view:
            try:
                n = os.write(master, view)
                view = view[n:]
            except BlockingIOError:
                await asyncio.sleep(0.001)  # host not reading yet: the pty buffer is full
    return sink


async def serve_pty(device, master: int, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    sink = pty_sink(master)

    def on_readable():
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        if data:
            loop.create_task(device.receive(data))

    device.attach(sink)
    loop.add_reader(master, on_readable)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(master)
        device.detach()


async def serve_tcp(device, host: str, port: int, stop: asyncio.Event, ready=None) -> None:
    """One host at a time; a new connection replaces the old one (the session resumes on START)."""
    current = {"writer": None}

    async def handle(reader, writer):
        old = current["writer"]
        if old is not None:
            old.close()
        current["writer"] = writer

        async def sink(data: bytes):
            writer.write(data)
            await writer.drain()

        def lost():
            writer.close()

        device.attach(sink)
        device.on_link_lost = lost
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await device.receive(data)
        except OSError:
            pass
        finally:
            if current["writer"] is writer:
                device.detach()
                current["writer"] = None
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    addr = server.sockets[0].getsockname()
    if ready is not None:
        ready(addr)
    async with server:
        await stop.wait()

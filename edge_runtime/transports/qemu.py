"""qemu://<core or MCU target>?package=DIR[&machine=M][&optimize=size] | ?elf=PATH: boots the firmware
under QEMU and talks to its UART0 socket. Cores: firmware_bridge/cores.toml (cortex-m0 ... cortex-m55);
MCU targets (targets.toml) build for their engine core; an ELF boots on the machine it was linked for."""

import asyncio
from urllib.parse import urlsplit

from ecgedge.edge_runtime.transports.base import StreamTransport, url_query
from ecgedge.errors import ConfigError, TransportError


class QemuTransport(StreamTransport):
    closed_message = "QEMU closed the UART"

    def __init__(self, url):
        super().__init__(url)
        u = urlsplit(url)
        self.target = u.hostname or "cortex-m7"
        q = url_query(url)
        self.package = q.get("package")
        self.elf = q.get("elf")
        self.machine = q.get("machine")
        self.optimize = q.get("optimize", "speed")
        if not (self.package or self.elf):
            raise ConfigError(f"{url!r}: expected qemu://{self.target}?package=DIR or ?elf=PATH")
        self._dev = None

    def _boot(self):
        from ecgedge.firmware_bridge.qemu import QemuDevice

        elf = self.elf
        if elf is None:
            from ecgedge.firmware_bridge.build import firmware_for_package

            elf = firmware_for_package(self.package, target=self.target, optimize=self.optimize,
                                       machine=self.machine)
        dev = QemuDevice(elf)
        dev.__enter__()
        return dev

    async def open(self):
        loop = asyncio.get_running_loop()
        self._dev = await loop.run_in_executor(None, self._boot)
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self._dev.uart_path)), 10.0)
        except (OSError, asyncio.TimeoutError) as e:
            await self.close()
            raise TransportError(f"cannot connect to QEMU UART {self._dev.uart_path}: {e}") from None
        self.is_open = True

    async def close(self):
        await super().close()
        if self._dev is not None:
            dev, self._dev = self._dev, None
            await asyncio.get_running_loop().run_in_executor(None, dev.__exit__, None, None, None)

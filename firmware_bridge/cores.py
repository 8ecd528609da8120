"""Cortex-M cores the C engine builds for, as data (cores.toml): compiler flags, kernel path, QEMU machine."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ecgedge.errors import FirmwareError

CORES_TOML = Path(__file__).resolve().parent / "cores.toml"
KERNEL_PATHS = ("c", "dsp", "mve")


@dataclass(frozen=True)
class Core:
    name: str
    arch: str
    cflags: tuple[str, ...]
    kernels: str                       # "c" | "dsp" | "mve"
    qemu_machine: str | None = None
    qemu_machine_small: str | None = None

    @property
    def is_host(self) -> bool:
        return self.name == "host"


@lru_cache(maxsize=1)
def cores() -> dict[str, Core]:
    table = tomllib.loads(CORES_TOML.read_text())
    out = {}
    for name, row in table.items():
        if row.get("kernels") not in KERNEL_PATHS:
            raise FirmwareError(f"core {name!r} in {CORES_TOML.name}: kernels {row.get('kernels')!r}, "
                                f"expected one of {', '.join(KERNEL_PATHS)}")
        out[name] = Core(name=name, arch=row["arch"], cflags=tuple(row.get("cflags", ())), kernels=row["kernels"],
                         qemu_machine=row.get("qemu_machine"), qemu_machine_small=row.get("qemu_machine_small"))
    return out


def get_core(name: str) -> Core:
    table = cores()
    if name not in table:
        raise FirmwareError(f"unknown core {name!r}; supported: {', '.join(table)}")
    return table[name]

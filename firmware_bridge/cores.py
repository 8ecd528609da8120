"""Cortex-M cores the C engine builds for, and the QEMU machines that run them, as data (cores.toml):
compiler flags and kernel path per core; memory map, HAL and SysTick clock per machine."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ecgedge.errors import FirmwareError

CORES_TOML = Path(__file__).resolve().parent / "cores.toml"
KERNEL_PATHS = ("c", "dsp", "mve")
HALS = ("cmsdk", "nrf51")
# what the compiler must define for a kernel path (checked on each cross build)
KERNEL_FEATURES = {"c": None, "dsp": "__ARM_FEATURE_DSP", "mve": "__ARM_FEATURE_MVE"}


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

    @property
    def machines(self) -> tuple[str, ...]:
        """QEMU machines that run this core's builds (the default first)."""
        return tuple(m for m in (self.qemu_machine, self.qemu_machine_small) if m)


@dataclass(frozen=True)
class Region:
    origin: int
    length: int


@dataclass(frozen=True)
class Machine:
    name: str
    cpu: str                           # the core QEMU models on this machine
    code: Region
    ram: Region
    hal: str                           # "cmsdk" | "nrf51": c/hal_<hal>.c
    uart_base: int
    systick_hz: int
    ring_samples: int
    vectors: Region | None = None      # a separate region for the reset vector table
    stack_bytes: int = 0x10000
    heap_bytes: int = 0x10000

    @property
    def instructions_per_tick(self) -> float:
        """Instructions per SysTick tick under -icount shift=0 (1 ns of virtual time per instruction)."""
        return 1e9 / self.systick_hz


def _region(machine: str, key: str, value) -> Region:
    if not isinstance(value, dict) or set(value) != {"origin", "length"}:
        raise FirmwareError(f"machine {machine!r} in {CORES_TOML.name}: {key} = {value!r}, expected "
                            "{ origin = ..., length = ... }")
    return Region(int(value["origin"]), int(value["length"]))


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, Core], dict[str, Machine]]:
    table = tomllib.loads(CORES_TOML.read_text())
    machine_rows = table.pop("machine", {})
    out = {}
    for name, row in table.items():
        if row.get("kernels") not in KERNEL_PATHS:
            raise FirmwareError(f"core {name!r} in {CORES_TOML.name}: kernels {row.get('kernels')!r}, "
                                f"expected one of {', '.join(KERNEL_PATHS)}")
        out[name] = Core(name=name, arch=row["arch"], cflags=tuple(row.get("cflags", ())), kernels=row["kernels"],
                         qemu_machine=row.get("qemu_machine"), qemu_machine_small=row.get("qemu_machine_small"))
    machines = {}
    for name, row in machine_rows.items():
        if row.get("hal") not in HALS:
            raise FirmwareError(f"machine {name!r} in {CORES_TOML.name}: hal {row.get('hal')!r}, "
                                f"expected one of {', '.join(HALS)}")
        machines[name] = Machine(
            name=name, cpu=row["cpu"], code=_region(name, "code", row["code"]), ram=_region(name, "ram", row["ram"]),
            hal=row["hal"], uart_base=int(row["uart_base"]), systick_hz=int(row["systick_hz"]),
            ring_samples=int(row["ring_samples"]),
            vectors=_region(name, "vectors", row["vectors"]) if "vectors" in row else None,
            stack_bytes=int(row.get("stack_bytes", 0x10000)), heap_bytes=int(row.get("heap_bytes", 0x10000)))
    for core in out.values():
        for m in core.machines:
            if m not in machines:
                raise FirmwareError(f"core {core.name!r} in {CORES_TOML.name}: QEMU machine {m!r} has no "
                                    f"[machine.{m}] table")
    return out, machines


def cores() -> dict[str, Core]:
    return _table()[0]


def machines() -> dict[str, Machine]:
    return _table()[1]


def get_core(name: str) -> Core:
    table = cores()
    if name not in table:
        raise FirmwareError(f"unknown core {name!r}; supported: {', '.join(table)}")
    return table[name]


def get_machine(name: str) -> Machine:
    table = machines()
    if name not in table:
        raise FirmwareError(f"unknown QEMU machine {name!r}; supported: {', '.join(table)}")
    return table[name]


def mcu_cores() -> list[str]:
    """The Cortex-M cores (every core but the host)."""
    return [n for n, c in cores().items() if not c.is_host]


def resolve_core(name: str) -> Core:
    """A core by its own name or by an MCU target's name (targets.toml `engine_core`)."""
    if name in cores():
        return cores()[name]
    from ecgedge.errors import ConfigError
    from ecgedge.targets import load_targets
    targets = load_targets()
    t = targets.get(name)
    if t is not None and t.engine_core:
        return get_core(t.engine_core)
    if t is not None:
        raise FirmwareError(f"target {name!r} ({t.kind}) has no engine core; firmware is built for the MCU "
                            f"targets ({', '.join(n for n, x in targets.items() if x.engine_core)}) and the "
                            f"cores {', '.join(mcu_cores())}")
    raise ConfigError(f"unknown core or target {name!r}; cores: {', '.join(mcu_cores())}")

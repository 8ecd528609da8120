"""Target profiles as data: one TOML table (targets.toml), users may add their own TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from ecgedge.errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str
    board: str
    kind: str  # "mcu" or "linux"
    core: str
    isa: tuple[str, ...]
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    model_flash_budget: int
    model_ram_budget: int
    cycles_per_mac: float
    latency_budget_ms: float
    runtime: str
    formats: tuple[str, ...]
    engine_core: str | None = None     # MCU targets: the core of firmware_bridge/cores.toml
    source: str = field(default="builtin", compare=False)

    @property
    def is_mcu(self) -> bool:
        return self.kind == "mcu"

    @property
    def mac_budget(self) -> int:
        """MACs per inference that fit the latency budget at the profile's cycles per MAC."""
        return int(self.latency_budget_ms * 1e-3 * self.clock_hz / self.cycles_per_mac)

    def estimate_latency_ms(self, macs: int) -> float:
        """Latency ESTIMATE from MACs and the profile's cycles-per-MAC figure."""
        return macs * self.cycles_per_mac / self.clock_hz * 1e3


_REQUIRED = [f.name for f in fields(Target) if f.name not in ("name", "engine_core", "source")]


def _parse(table: dict, source: str) -> dict[str, Target]:
    out = {}
    for name, row in table.items():
        if not isinstance(row, dict):
            raise ConfigError(f"target {name!r} in {source}: expected a table, got {type(row).__name__}")
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise ConfigError(f"target {name!r} in {source}: missing keys {missing}")
        unknown = sorted(set(row) - set(_REQUIRED) - {"engine_core"})
        if unknown:
            raise ConfigError(f"target {name!r} in {source}: unknown keys {unknown}")
        kind = row["kind"]
        if kind not in ("mcu", "linux"):
            raise ConfigError(f"target {name!r} in {source}: kind {kind!r}, expected 'mcu' or 'linux'")
        vals = dict(row)
        vals["isa"] = tuple(vals["isa"])
        vals["formats"] = tuple(vals["formats"])
        out[name] = Target(name=name, source=source, **vals)
    return out


def builtin_targets() -> dict[str, Target]:
    text = resources.files("ecgedge").joinpath("targets.toml").read_text()
    return _parse(tomllib.loads(text), "builtin")


def load_targets(extra: str | Path | None = None) -> dict[str, Target]:
    """Built-in profiles, plus (overriding) those of a user's TOML file."""
    targets = builtin_targets()
    if extra is not None:
        path = Path(extra)
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"target file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"target file {str(path)!r} is not valid TOML: {e}") from None
        targets.update(_parse(table, str(path)))
    return targets


def get_target(name: str, extra: str | Path | None = None) -> Target:
    targets = load_targets(extra)
    if name not in targets:
        raise ConfigError(f"unknown target {name!r}; valid targets: {', '.join(sorted(targets))}")
    return targets[name]

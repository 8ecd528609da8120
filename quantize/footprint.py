"""Footprint budgets of an INT8 model: flash (model bytes), RAM (the arena of the runtime the target runs:
our engine's plan for its core, or the smallest tflite-micro arena that allocates), MACs and the target's
latency ESTIMATE; and the budget check."""

from __future__ import annotations

from ecgedge.errors import BudgetError


def mac_budget(target, latency_ms: float | None = None) -> int:
    """MACs per inference allowed by `latency_ms` (or the target's latency budget)."""
    if latency_ms is None:
        return int(target.mac_budget)
    return int(latency_ms * 1e-3 * target.clock_hz / target.cycles_per_mac)


def budgets(target, latency_ms=None, flash_budget=None, ram_budget=None, model_caps: dict | None = None) -> dict:
    """Flash / RAM / MAC budget of one export: the target's (or the caller's) budget, lowered to the
    model's own cap on that target where its spec has one (ModelSpec.target_caps[target.name])."""
    out = {
        "flash_bytes": int(flash_budget if flash_budget is not None else target.model_flash_budget),
        "ram_bytes": int(ram_budget if ram_budget is not None else target.model_ram_budget),
        "macs": mac_budget(target, latency_ms),
    }
    cap = (model_caps or {}).get(target.name) or {}
    for key in ("flash_bytes", "ram_bytes", "macs"):
        if cap.get(key) is not None:
            out[key] = min(out[key], int(cap[key]))
    return out


def runtime_arena(target, tflite: bytes, arena_tflm: int, optimize: str = "speed") -> tuple[int | None, dict]:
    """(our engine's arena for the target's core or None, the RAM check's basis). A target whose runtime is
    our C engine ("ecgedge-c") reserves the arena the engine plans for its core's kernels and `optimize`
    goal, not tflite-micro's; where the engine cannot lower an op (or the target runs another runtime) the
    check uses tflite-micro's."""
    if getattr(target, "runtime", None) != "ecgedge-c":
        return None, {"arena_bytes": arena_tflm, "basis": f"tflite-micro (the target runs {target.runtime})"}
    from ecgedge.errors import FirmwareError
    from ecgedge.firmware_bridge.build import firmware_core
    from ecgedge.firmware_bridge.codegen import planned_arena
    try:
        core = firmware_core(target)
        engine = planned_arena(tflite, core.kernels, optimize)
    except FirmwareError as e:
        return None, {"arena_bytes": arena_tflm, "basis": f"tflite-micro (our engine cannot run it: {e})"}
    return engine, {"arena_bytes": engine,
                    "basis": f"ecgedge C engine ({core.name}, {core.kernels} kernels, optimise for {optimize})"}


def overflows(flash_bytes: int, arena_bytes: int, macs: int, budget: dict) -> list[str]:
    """Human-readable list of what exceeds the budget, by how much."""
    out = []
    if flash_bytes > budget["flash_bytes"]:
        out.append(f"weights need {flash_bytes} B of flash, budget {budget['flash_bytes']} B "
                   f"(over by {flash_bytes - budget['flash_bytes']} B)")
    if arena_bytes > budget["ram_bytes"]:
        out.append(f"the tensor arena needs {arena_bytes} B of RAM, budget {budget['ram_bytes']} B "
                   f"(over by {arena_bytes - budget['ram_bytes']} B)")
    if macs > budget["macs"]:
        out.append(f"{macs} MACs per inference, budget {budget['macs']} (over by {macs - budget['macs']})")
    return out


def require_fit(target_name: str, flash_bytes: int, arena_bytes: int, macs: int, budget: dict) -> None:
    problems = overflows(flash_bytes, arena_bytes, macs, budget)
    if problems:
        raise BudgetError(f"the model does not fit {target_name}: " + "; ".join(problems))


def check_fit(target, tflite: bytes, arena_tflm: int, macs: int, budget: dict,
              optimize: str = "speed") -> tuple[int | None, dict, list[str]]:
    """(our engine's arena or None, the RAM check's basis, overflows) of an INT8 model on `target`, its RAM
    checked with the arena of the runtime the target runs (runtime_arena); BudgetError when it does not fit."""
    engine, ram_check = runtime_arena(target, tflite, arena_tflm, optimize)
    problems = overflows(len(tflite), ram_check["arena_bytes"], macs, budget)
    require_fit(target.name, len(tflite), ram_check["arena_bytes"], macs, budget)
    return engine, ram_check, problems

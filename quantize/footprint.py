"""Footprint budgets of an INT8 model: flash (model bytes), RAM (the smallest tflite-micro arena that
allocates: ecgedge.contract.runners.smallest_arena), MACs and the target's latency ESTIMATE; and the
budget check."""

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

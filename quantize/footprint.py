"""Footprint of an INT8 model: flash (model bytes), the smallest tflite-micro arena that allocates,
MACs, and the target's latency ESTIMATE; and the budget check."""

from __future__ import annotations

from ecgedge.errors import BudgetError, ExportError
from ecgedge.quantize.validate import tflm_allocates

ARENA_ALIGN = 16


def smallest_arena(tflite: bytes, start: int = 64 * 1024, limit: int = 64 * 1024 * 1024) -> int:
    """Smallest tflite-micro arena (bytes, multiple of 16) in which the model allocates (bisection).

    The probes run in a child process: tflite-micro's allocator can crash (SIGSEGV) on some arena sizes
    that are too small for a large graph instead of reporting the failure (seen on a 1,058-op unrolled
    LSTM at 131,072 B). A crashed probe counts as "does not allocate" and the search goes on in a new
    child from where it stopped."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="ecgedge-arena-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(tflite)
        lo, hi, known_hi = 0, start, False
        for _ in range(64):
            cmd = [sys.executable, "-m", "ecgedge.quantize.footprint", str(path), str(lo), str(hi),
                   "1" if known_hi else "0", str(limit)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            trying = None
            for line in r.stdout.splitlines():
                word, _, value = line.partition(" ")
                if word == "try":
                    trying = int(value)
                elif word in ("ok", "fail"):
                    trying = None
                    if word == "ok":
                        hi, known_hi = int(value), True
                    else:
                        lo = max(lo, int(value))
                elif word == "arena":
                    return int(value)
                elif word == "limit":
                    raise ExportError(f"tflite-micro cannot allocate the model even with a {limit} B arena")
            if r.returncode == 0 or trying is None:
                raise ExportError(f"tflite-micro arena search failed (exit {r.returncode}): {r.stderr[-300:]}")
            lo = max(lo, trying)                 # the probe crashed: that size does not work
            if not known_hi and lo >= hi:
                hi = lo * 2
        raise ExportError("tflite-micro arena search did not converge")


def _probe_main(argv: list[str]) -> None:
    """Child of smallest_arena: bisection between lo (fails) and hi, one line per probe."""
    path, lo, hi, known_hi, limit = argv[0], int(argv[1]), int(argv[2]), argv[3] == "1", int(argv[4])
    tflite = open(path, "rb").read()

    def probe(n: int) -> bool:
        print(f"try {n}", flush=True)
        ok = tflm_allocates(tflite, n)
        print(f"{'ok' if ok else 'fail'} {n}", flush=True)
        return ok

    if not known_hi:
        while not probe(hi):
            lo = hi
            hi *= 2
            if hi > limit:
                print("limit", flush=True)
                return
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= lo:
            break
        if probe(mid):
            hi = mid
        else:
            lo = mid
    print(f"arena {hi}", flush=True)


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


if __name__ == "__main__":
    import sys as _sys
    _probe_main(_sys.argv[1:])

"""The engine on many models: bit-exactness vs tflite-micro, arena vs tflite-micro's smallest, exact QEMU
instruction counts, flash - for the named models (one per op family; image, audio, GRU, LSTM, float edges),
random models and optional .tflite files (e.g. exported packages).

    python benchmarks/engine_suite.py [--seeds 200] [--qemu-seeds 20] [--core cortex-m7] [--models A.tflite ...]
                                      [--out engine_suite.json]

Writes JSON (every result) and prints a short table. Exit 1 when anything is not bit-exact or an arena is
larger than tflite-micro's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200, help="random models on the host build (default 200)")
    ap.add_argument("--qemu-seeds", type=int, default=20, help="of them, run in QEMU on --core (default 20)")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--core", default="cortex-m7")
    ap.add_argument("--models", nargs="*", type=Path, default=[], help="more .tflite files (host and --core)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("engine_suite.json"))
    a = ap.parse_args(argv)

    from ecgedge.device_sim.random_models import NAMED, ensure_models
    from ecgedge.firmware_bridge.verify import problems, verify_many

    t0 = time.time()
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    paths = ensure_models(NAMED + seeds, workers=a.workers)
    t_conv = time.time() - t0
    paths.update({str(m): m for m in a.models})
    keys = NAMED + [str(m) for m in a.models]
    jobs = [(k, paths[k], "host", 5) for k in keys + seeds]
    jobs += [(k, paths[k], a.core, 5) for k in keys + seeds[:a.qemu_seeds]]
    t1 = time.time()
    results = verify_many(jobs, workers=a.workers)
    t_verify = time.time() - t1
    bad = problems(results)
    host = [r for r in results if r["core"] == "host" and r["error"] is None]
    ratios = np.array([r["arena_bytes"] / r["arena_bytes_tflm"] for r in host])
    summary = {"random_models_host": len(seeds), "random_models_qemu": min(a.qemu_seeds, len(seeds)),
               "named": NAMED, "problems": bad, "arena_ratio_max": float(ratios.max()),
               "arena_ratio_median": float(np.median(ratios)), "ops_covered": sorted({o for r in host for o in r["ops"]}),
               "seconds_conversion": round(t_conv, 1), "seconds_verify": round(t_verify, 1)}
    a.out.write_text(json.dumps({"summary": summary, "results": results}, indent=1, default=str))

    by = {(r["key"], r["core"]): r for r in results}
    print(f"{'model':<34} {'host':>5} {a.core:>10} {'arena':>8} {'tflm':>8} {'ratio':>6} {'instr/inf':>11} "
          f"{'instr/MAC':>9} {'flash':>9}")
    for k in keys + seeds[:a.qemu_seeds]:
        h, q = by.get((k, "host")), by.get((k, a.core))
        if h is None or q is None:
            continue
        ok = lambda r: "ERR" if r["error"] else ("1.0" if r["bit_exact_fraction"] == 1.0 else "NO")  # noqa: E731
        name = Path(k).name if isinstance(k, str) and k.endswith(".tflite") else str(k)
        ipm = q.get("instructions_per_mac")
        print(f"{name:<34} {ok(h):>5} {ok(q):>10} {h.get('arena_bytes', 0):>8} {h.get('arena_bytes_tflm', 0):>8} "
              f"{(h.get('arena_bytes', 0) / h['arena_bytes_tflm']) if h.get('arena_bytes_tflm') else 0:>6.3f} "
              f"{q.get('instructions_per_inference') or 0:>11,} {ipm or 0:>9.2f} {q.get('flash_bytes') or 0:>9,}")
    print(f"random models: {len(seeds)} on host, {summary['random_models_qemu']} on {a.core}; arena ratio max "
          f"{summary['arena_ratio_max']:.3f}, median {summary['arena_ratio_median']:.3f}; "
          f"{len(summary['ops_covered'])} ops covered; conversion {t_conv:.0f} s, verify {t_verify:.0f} s")
    for line in bad:
        print("PROBLEM:", line)
    print(f"wrote {a.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

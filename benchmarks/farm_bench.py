"""The bench at scale: one bench run with 1 and 2 local worker processes and on a local Ray cluster, plus a run
in which a worker is killed mid-shard. Writes JSON + a short table.

    python benchmarks/farm_bench.py --model dist/af_lead1-cortex-m7 --data /work/shared/data/cinc2017 --records 2493
    python benchmarks/farm_bench.py --model dist/pocket_k-cortex-m7 --windows 2493   # synthetic windows

Figures: wall time of each run after an untimed warm-up run in this process (the whole bench: eval set,
references, device, scoring, reports), the ratio
1 worker / 2 workers, whether every report is equal to the 1-worker one (hil_report.json without its
RUN_DEPENDENT_KEYS, windows.json without timings), and for the killed worker: completed, every window scored
once, the retry in the report. The machine's load average is recorded before each run: on a shared machine the
ratio says little unless it is quiet. The Ray run starts a local cluster (about 4 s on a quiet machine) unless
one is running (RAY_ADDRESS or `ray start`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ecgedge.device_sim.faults import KillWorkerAt
from ecgedge.hil_tests.bench import RUN_DEPENDENT_KEYS, BenchConfig, run_bench
from ecgedge.hil_tests.evalset import labels_file_in, read_labels


def stable(report_dir: Path) -> tuple[dict, dict]:
    rep = json.loads((report_dir / "hil_report.json").read_text())
    win = json.loads((report_dir / "windows.json").read_text())
    return ({k: v for k, v in rep.items() if k not in RUN_DEPENDENT_KEYS},
            {k: v for k, v in win.items() if k not in ("latency_ms", "round_trip_ms")})


def one(args, name: str, out: Path, **kw) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = run_bench(BenchConfig(model_dir=args.model, device_url=args.device, windows=args.windows,
                                data_dir=args.data, records=args.record_names, report_dir=out / name,
                                progress=False, **kw))
    wall = time.perf_counter() - t0
    rep = res.report
    row = {"run": name, "wall_s": round(wall, 1), "load_avg_1min_before": round(load, 2),
           "windows": rep["windows"], "bit_exact_fraction": rep["bit_exact_fraction"], "error": rep["error"],
           "executor": rep["executor"], "shards": len(rep["shards"]), "retries": rep["retries"]}
    print(f"{name}: {row['wall_s']} s, {row['windows']} windows, load {load:.2f}", flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="package folder")
    p.add_argument("--device", default="host")
    p.add_argument("--data", type=Path, default=None, help="records with labels (e.g. /work/shared/data/cinc2017)")
    p.add_argument("--windows", type=int, default=None, help="windows (default: all of --data, else 2493)")
    p.add_argument("--records", type=int, default=None,
                   help="with --data: the first N labelled records (sorted by name), every window of each")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/farm"))
    args = p.parse_args(argv)
    if args.windows is None and args.data is None:
        args.windows = 2493
    args.record_names = None
    if args.records is not None:
        if args.data is None or args.records < 1:
            p.error("--records N needs --data and N >= 1")
        labelled = sorted(read_labels(labels_file_in(args.data)))   # the labels file the bench itself reads
        args.record_names = labelled[:args.records]
    args.out.mkdir(parents=True, exist_ok=True)
    # warm-up (untimed): this process's imports and caches, so that the 1-worker run is not charged for them
    run_bench(BenchConfig(model_dir=args.model, device_url=args.device, windows=2, report_dir=args.out / "warmup",
                          progress=False))
    rows = [one(args, "workers1", args.out, workers=1), one(args, "workers2", args.out, workers=2)]
    if not args.no_ray:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        rows.append(one(args, "ray", args.out, ray="auto"))
    marker = args.out / "killed.marker"
    marker.unlink(missing_ok=True)
    n_windows = rows[0]["windows"]
    rows.append(one(args, "workers2_killed", args.out, workers=2,
                    on_window=KillWorkerAt(n_windows - max(1, n_windows // 10), str(marker))))
    base = stable(args.out / "workers1")
    for r in rows:
        r["report_equal_to_workers1"] = stable(args.out / r["run"]) == base
    killed = rows[-1]
    summary = {
        "model": str(args.model), "device": args.device, "data": str(args.data) if args.data else None,
        "records": len(args.record_names) if args.record_names else None,
        "windows": n_windows, "cpus": os.cpu_count(), "runs": rows,
        "speedup_2_workers": round(rows[0]["wall_s"] / rows[1]["wall_s"], 2),
        "speedup_ray": round(rows[0]["wall_s"] / rows[2]["wall_s"], 2) if not args.no_ray else None,
        "killed_worker": {"completed": killed["error"] is None and killed["windows"] == n_windows,
                          "worker_killed": marker.is_file(), "retries": killed["retries"],
                          "every_window_scored_once": killed["report_equal_to_workers1"]},
    }
    (args.out / "farm_bench.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{'run':<18}{'wall s':>9}{'load':>7}{'windows':>9}{'shards':>8}{'retries':>9}  equal")
    for r in rows:
        print(f"{r['run']:<18}{r['wall_s']:>9}{r['load_avg_1min_before']:>7}{r['windows']:>9}{r['shards']:>8}"
              f"{len(r['retries']):>9}  {r['report_equal_to_workers1']}")
    print(f"speedup with 2 workers: {summary['speedup_2_workers']}x; Ray: {summary['speedup_ray']}x; "
          f"killed worker: {summary['killed_worker']['completed']} "
          f"(retries {len(killed['retries'])}, every window once: {killed['report_equal_to_workers1']})")
    ok = all(r["report_equal_to_workers1"] for r in rows) and summary["killed_worker"]["completed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

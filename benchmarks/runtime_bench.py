"""Runtime benchmark: real-time factor on one core and window-last-sample -> result latency (sim, pty).

    python benchmarks/runtime_bench.py --model DIR [--out runtime_bench.json] [--minutes 10]

Real-time factor = seconds of signal processed per CPU second of this process, pinned to one core
(resampling off, filters + SQI + windows + LiteRT INT8 inference, no pacing). Latency = from the arrival
of the frame holding a window's last sample to its result being written, over a live session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def realtime_factor(pkg, minutes: float) -> dict:
    from ecgedge.edge_runtime.inference import HostInference
    from ecgedge.edge_runtime.processing import Processor, window_result
    from ecgedge.signals import QualityThresholds
    from ecgedge.signals import EcgStream

    fs = int(pkg.sampling_rate)
    n = int(minutes * 60 * fs)
    counts = np.clip(np.round(EcgStream(fs, k_mmol=5.0, seed=0).read(n)), -32768, 32767).astype(np.int16)
    engine = HostInference(pkg)
    proc = Processor(fs, 1.0, fs, pkg.window_samples, None, pkg.preprocessing)
    proc.restart(0)
    th = QualityThresholds()
    windows = skipped = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(0, n, 50):  # 50-sample frames, as the device sends them
        for win in proc.push(i, counts[i:i + 50]):
            rec = window_result(win, pkg, lambda w: engine.infer(w.filtered), th, proc.rail_uv, fs)
            windows += 1
            skipped += rec["skipped"]
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"signal_s": n / fs, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "windows": windows, "windows_inferred": windows - skipped,
            "realtime_factor_cpu": round(n / fs / cpu, 1), "realtime_factor_wall": round(n / fs / wall, 1)}


def _percentiles(lat):
    a = np.asarray(lat)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def latency_sim(pkg, seconds: float, speed: float) -> dict:
    from ecgedge.edge_runtime.session import Session, SessionOptions

    out = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    s = Session(pkg, SessionOptions(source=f"sim://pocket_k?k=5&speed={speed}", out_dir=out, duration_s=seconds,
                                    hop=pkg.window_samples // 5, record=True))
    summary = asyncio.run(s.run())
    return {**_percentiles(s.latencies_ms), "speed": speed, "samples_lost": summary["samples_lost"]}


def latency_pty(pkg_dir: str, seconds: float, speed: float) -> dict:
    bindir = Path(sys.executable).parent
    sim = subprocess.Popen([str(bindir / "edge-sim"), "serve", "--pty", "--speed", str(speed), "--k", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        pty = sim.stdout.readline().strip()
        out = Path(tempfile.mkdtemp(prefix="bench-pty-"))
        hop = json.loads((Path(pkg_dir) / "manifest.json").read_text())["input"]["window_samples"] // 5
        subprocess.run([str(bindir / "edge-run"), "--model", pkg_dir, "--source", f"serial://{pty}", "--duration",
                        str(seconds), "--out", str(out), "--quiet", "--hop", str(hop)], check=True,
                       capture_output=True, timeout=600)
    finally:
        sim.terminate()
        sim.wait(10)
    lat = [json.loads(x)["latency_ms"] for x in (out / "results.jsonl").read_text().splitlines()
           if not json.loads(x)["skipped"]]
    summary = json.loads((out / "summary.json").read_text())
    return {**_percentiles(lat), "speed": speed, "samples_lost": summary["samples_lost"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", default="runtime_bench.json")
    p.add_argument("--minutes", type=float, default=10.0, help="signal minutes for the real-time factor")
    p.add_argument("--latency-seconds", type=float, default=120.0)
    a = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from ecgedge.contract.package import load_package

    pkg = load_package(a.model)
    res = {"model": pkg.model, "model_sha256": pkg.model_sha256, "machine": platform.machine(),
           "python": platform.python_version(), "cpus_pinned": 1,
           "load_average_at_start": os.getloadavg()[0],
           "throughput": realtime_factor(pkg, a.minutes),
           "latency": {"sim": latency_sim(pkg, a.latency_seconds, 10.0),
                       "pty": latency_pty(a.model, a.latency_seconds, 10.0)}}
    Path(a.out).write_text(json.dumps(res, indent=1))
    t = res["throughput"]
    print(f"real-time factor (1 core, CPU time): {t['realtime_factor_cpu']}x  ({t['signal_s']:.0f} s of signal, "
          f"{t['windows']} windows, {t['cpu_s']} s CPU)")
    print(f"{'link':6} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for k, v in res["latency"].items():
        print(f"{k:6} {v['n']:5d} {v['p50_ms']:8.2f} {v['p95_ms']:8.2f} {v['p99_ms']:8.2f}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

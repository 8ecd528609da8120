"""BLE benchmark: the runtime over bleak -> bumble virtual link -> the simulator's GATT peripheral.

    python benchmarks/ble_bench.py --model DIR [--out ble_bench.json] [--notifications 5000] [--minutes 10]

- notify: raw GATT throughput, unchanged bleak client subscribed to the ecgedge TX characteristic while
  the peripheral notifies full-MTU (244-byte) values as fast as it can; received must equal sent.
- session: a live Session over ``ble://`` (simulated time ``--speed`` x real time): samples/s through
  the link, notifications/s, samples lost (must be 0), and latency from the arrival of the frame holding
  a window's last sample to its result (p50/p95/p99), hop = window / 5.
No radio timing is modelled (LocalLink delivers at once): these figures are the host stack's ceiling
(CPU), not what a 2M PHY delivers; a real link at 7.5 ms intervals carries far fewer notifications/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


async def notify_throughput(count: int) -> dict:
    from bleak import BleakClient, BleakScanner

    from ecgedge.device_sim.ble_peripheral import sim_peripheral
    from ecgedge.firmware_bridge import ble_gatt as g
    from ecgedge.device_sim.bleak_bumble import BumbleClient, BumbleScanner

    per = await sim_peripheral("sim://pocket_k?speed=1", services=("ecgedge",), name="Bench").start()
    try:
        dev = await BleakScanner.find_device_by_name("Bench", timeout=5, backend=BumbleScanner)
        received = {"n": 0, "bytes": 0}
        done = asyncio.Event()

        def on_tx(_char, data):
            received["n"] += 1
            received["bytes"] += len(data)
            if received["n"] >= count:
                done.set()

        async with BleakClient(dev, backend=BumbleClient) as client:
            await client.start_notify(g.ECGEDGE_TX_UUID, on_tx)
            payload = bytes(range(1, 245))
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(count):
                await per.bumble.notify_subscriber(per.connection, per._tx_char, payload)
            await asyncio.wait_for(done.wait(), 120)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            mtu = client.mtu_size
    finally:
        await per.stop()
    return {"sent": count, "received": received["n"], "mtu": mtu, "value_bytes": 244,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "notifications_per_s": round(received["n"] / wall, 1),
            "notifications_per_cpu_s": round(received["n"] / cpu, 1),
            "payload_kbytes_per_s": round(received["bytes"] / wall / 1000, 1)}


def _percentiles(lat) -> dict:
    a = np.asarray(lat)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


async def session_over_ble(pkg, minutes: float, speed: float) -> dict:
    from ecgedge.device_sim.ble_peripheral import sim_peripheral
    from ecgedge.edge_runtime.session import Session, SessionOptions

    per = await sim_peripheral(f"sim://pocket_k?k=5&speed={speed}&samples_per_frame=250&seed=0",
                               services=("ecgedge",)).start()
    try:
        out = Path(tempfile.mkdtemp(prefix="bench-ble-"))
        s = Session(pkg, SessionOptions(source="ble://name=Pocket-K?backend=bumble", out_dir=out,
                                        duration_s=minutes * 60, hop=pkg.window_samples // 5))
        t0, c0 = time.perf_counter(), time.process_time()
        summary = await s.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        truth = per.device.device.truth_counts()
        from ecgedge.edge_runtime.recorder import read_partial

        rec = read_partial(out)
        equal = bool(np.array_equal(rec.counts, truth[:rec.counts.size]))
    finally:
        await per.stop()
    return {"signal_s": minutes * 60, "speed": speed, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "samples_received": summary["samples_received"], "samples_lost": summary["samples_lost"],
            "recording_equals_truth": equal, "windows": summary["windows"],
            "samples_per_s": round(summary["samples_received"] / wall, 1),
            "realtime_factor_cpu": round(minutes * 60 / cpu, 1),  # peripheral + sim + runtime, one process
            "notifications": per.stats.tx_notifications,
            "notifications_per_s": round(per.stats.tx_notifications / wall, 1),
            "window_latency": _percentiles(s.latencies_ms)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model package folder (dist/...)")
    p.add_argument("--out", default="ble_bench.json")
    p.add_argument("--notifications", type=int, default=5000)
    p.add_argument("--minutes", type=float, default=10.0, help="signal minutes of the BLE session")
    p.add_argument("--speed", type=float, default=40.0, help="simulated seconds per wall second")
    a = p.parse_args(argv)
    from ecgedge.contract.package import load_package

    pkg = load_package(a.model)
    res = {"model": pkg.model, "machine": platform.machine(), "python": platform.python_version(),
           "load_average_at_start": os.getloadavg()[0], "radio": "bumble LocalLink (no radio timing)",
           "notify": asyncio.run(notify_throughput(a.notifications)),
           "session": asyncio.run(session_over_ble(pkg, a.minutes, a.speed))}
    Path(a.out).write_text(json.dumps(res, indent=1))
    n, s = res["notify"], res["session"]
    print(f"raw notify   : {n['received']}/{n['sent']} x {n['value_bytes']} B at MTU {n['mtu']}: "
          f"{n['notifications_per_s']:.0f} notifications/s ({n['notifications_per_cpu_s']:.0f} per CPU s), "
          f"{n['payload_kbytes_per_s']:.0f} kB/s")
    print(f"session      : {s['samples_received']} samples ({s['signal_s']:.0f} s at {s['speed']:g}x) in "
          f"{s['wall_s']:.1f} s: {s['samples_per_s']:.0f} samples/s, {s['notifications_per_s']:.0f} notifications/s, "
          f"lost {s['samples_lost']}, equal to truth: {s['recording_equals_truth']}")
    lat = s["window_latency"]
    if lat["n"]:
        print(f"window latency over BLE: n={lat['n']} p50 {lat['p50_ms']:.2f} ms  p95 {lat['p95_ms']:.2f} ms  "
              f"p99 {lat['p99_ms']:.2f} ms")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

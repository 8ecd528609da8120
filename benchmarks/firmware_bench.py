"""Firmware benchmark: instructions per inference of the generated C engine on one MCU target's core (QEMU +
our TCG plugin: exact counts), optimised vs reference kernels, per layer with MACs, arena vs tflite-micro's
smallest arena, flash/RAM, and bit-exactness against tflite-micro. Writes JSON and prints a table.
(benchmarks/engine_bench.py compares every core.)

    python benchmarks/firmware_bench.py [--package DIR] [--target cortex-m7] [--windows 50] [--out firmware_bench.json]

Without --package it benchmarks the op-coverage test model (tests/golden/firmware_opmix_int8.tflite).
Times are ESTIMATES from instruction counts at the target clock with an assumed CPI (QEMU counts
instructions, not M7 cycles).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CPI_ASSUMED = 1.0


def measure(elf, q, plugin=True):
    from ecgedge.firmware_bridge.client import FirmwareClient
    from ecgedge.firmware_bridge.qemu import QemuDevice

    with QemuDevice(elf, plugin=plugin) as dev:
        c = FirmwareClient(sock=dev.connect())
        info = c.hello()
        res = [c.infer(x, timeout=300) for x in q]
        c.close()
        dev.stop()
        return info, res, dev.plugin_records()


def run(package: Path, windows: int, out: Path, work: Path, target_name: str = "cortex-m7") -> dict:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ecgedge.firmware_bridge.build import build_firmware, build_host
    from ecgedge.contract.runners import open_int8_runner, smallest_arena
    from ecgedge.device_sim.testmodels import int8_vectors
    from ecgedge.targets import get_target

    import subprocess

    tfl = package / "model_int8.tflite"
    target = get_target(target_name)
    with Progress() as prog:
        task = prog.add_task("firmware bench", total=7)
        b_opt = build_firmware(package, target_name, work / "opt", optimized=True)
        prog.advance(task)
        b_ref = build_firmware(package, target_name, work / "ref", optimized=False)
        prog.advance(task)
        q = int8_vectors(tfl, windows, seed=2024)
        expected = open_int8_runner(tfl, "tflm").run(q)
        prog.advance(task)
        host = build_host(package, work / "host", "run", optimized=True)
        r = subprocess.run([str(host)], input=q.tobytes(), capture_output=True, check=True, timeout=600)
        host_out = np.frombuffer(r.stdout, np.int8).reshape(len(q), -1)
        prog.advance(task)
        info, res, recs = measure(b_opt.elf, q)
        prog.advance(task)
        _, res_ref, recs_ref = measure(b_ref.elf, q[:2])
        prog.advance(task)
        tflm_arena = smallest_arena(tfl)
        prog.advance(task)
    m7_out = np.array([x.outputs for x in res], np.int8)
    opt_total = int(np.median([rc["total"] for rc in recs]))
    ref_total = int(recs_ref[-1]["total"])
    layers = []
    last = recs[-1]["layers"]
    last_ref = recs_ref[-1]["layers"]
    conv_instr = conv_macs = 0
    for L in b_opt.layers:
        n = int(last.get(L["index"], 0))
        row = dict(L, instructions=n, instructions_reference=int(last_ref.get(L["index"], 0)),
                   instructions_per_mac=(n / L["macs"]) if L["macs"] else None)
        layers.append(row)
        if L["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            conv_instr += n
            conv_macs += L["macs"]
    report = {
        "model": str(tfl), "model_sha256": b_opt.model_sha256, "target": target_name, "core": b_opt.core,
        "kernels": b_opt.kernels, "qemu_machine": b_opt.machine,
        "counter": "exact TCG plugin count of executed guest instructions in ecg_model_invoke",
        "windows": windows, "macs": b_opt.macs,
        "instructions_per_inference_optimized": opt_total,
        "instructions_per_inference_reference": ref_total,
        "speedup_reference_over_optimized": ref_total / opt_total,
        "instructions_per_mac": opt_total / b_opt.macs,
        "instructions_per_mac_reference": ref_total / b_opt.macs,
        "conv_instructions_per_mac": conv_instr / conv_macs if conv_macs else None,
        "result_counter_vs_plugin_max_abs_diff": int(max(abs(x.counter - rc["total"]) for x, rc in zip(res, recs))),
        "bit_exact_m7_vs_tflm": int((m7_out == expected).all(axis=1).sum()),
        "bit_exact_host_vs_tflm": int((host_out == expected).all(axis=1).sum()),
        "arena_bytes": b_opt.arena_bytes, "tflm_min_arena_bytes": tflm_arena,
        "flash_bytes": b_opt.flash_bytes, "ram_bytes": b_opt.ram_bytes, "text": b_opt.text, "data": b_opt.data,
        "bss": b_opt.bss, "const_bytes": b_opt.const_bytes,
        "target_flash_bytes": target.flash_bytes, "target_ram_bytes": target.ram_bytes,
        "cpi_assumed": CPI_ASSUMED,
        "latency_estimate_ms_at_target_clock": opt_total * CPI_ASSUMED / target.clock_hz * 1e3,
        "layers": layers,
    }
    out.write_text(json.dumps(report, indent=1))
    con = Console()
    t = Table(title=f"firmware bench ({tfl.name}, {windows} windows)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k in ("macs", "instructions_per_inference_optimized", "instructions_per_inference_reference",
              "speedup_reference_over_optimized", "instructions_per_mac", "conv_instructions_per_mac",
              "bit_exact_m7_vs_tflm", "bit_exact_host_vs_tflm", "arena_bytes", "tflm_min_arena_bytes",
              "flash_bytes", "ram_bytes", "latency_estimate_ms_at_target_clock"):
        v = report[k]
        t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    con.print(t)
    lt = Table(title="per layer (optimised)")
    for col in ("#", "op", "MACs", "instr", "instr/MAC", "summary"):
        lt.add_column(col)
    for L in layers:
        ipm = L["instructions_per_mac"]
        lt.add_row(str(L["index"]), L["op"], str(L["macs"]), str(L["instructions"]),
                   f"{ipm:.2f}" if ipm else "-", L["summary"])
    con.print(lt)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, help="model package folder (model_int8.tflite + manifest.json)")
    ap.add_argument("--windows", type=int, default=50)
    ap.add_argument("--target", default="cortex-m7", help="MCU target of targets.toml (its engine core)")
    ap.add_argument("--out", type=Path, default=Path("firmware_bench.json"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fwbench-") as tmp:
        work = Path(tmp)
        pkg = a.package
        if pkg is None:
            from ecgedge.device_sim.testmodels import write_test_package

            pkg = write_test_package(work / "pkg", (ROOT / "tests/golden/firmware_opmix_int8.tflite").read_bytes())
        run(pkg, a.windows, a.out, work, a.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

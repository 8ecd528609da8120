"""C library and board firmware benchmark: for each package, the c/ library built with CMake for the host
(checked bit-exact with tflite-micro on N windows, through ecg_model_invoke and through ecg_model_run_mv) and
for its own core with the library's toolchain file; sizes per core (report.json `c_library`, measured again
here when absent); every board's firmware image for the package's model (flash, RAM, arena region, map check,
or why it does not fit); exact QEMU instruction counts where a QEMU machine runs the image. Writes JSON and
prints a table.

    python benchmarks/clib_bench.py PACKAGE [PACKAGE ...] [--windows 20] [--out clib_bench.json]

Instruction counts are exact (QEMU + our TCG plugin); cycles on silicon are not measured here (no board).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _sh(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))}: {r.stderr[-2000:]}")
    return r


def _cmake_app(root: Path, c_dir: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.13)
project(bench C CXX)
set(CMAKE_C_STANDARD 99)
set(CMAKE_CXX_STANDARD 17)
add_subdirectory("{c_dir}" ecgedge_model)
add_executable(run_one "{c_dir}/extras/run_one.c")
target_link_libraries(run_one ecgedge_model)
add_executable(run_mv "{c_dir}/extras/run_mv.cpp")
target_link_libraries(run_mv ecgedge_model)
""")
    return root


def bench_package(pkg: Path, windows: int, work: Path) -> dict:
    from ecgedge.contract.quantization import quantize_input, window_int8
    from ecgedge.firmware_bridge import clib
    from ecgedge.firmware_bridge.board_firmware import boards, build_board_firmware
    from ecgedge.contract.runners import tflm_run_tensors as tflm_outputs
    from ecgedge.targets import get_target

    manifest = json.loads((pkg / "manifest.json").read_text())
    report = json.loads((pkg / "report.json").read_text()) if (pkg / "report.json").exists() else {}
    tfl = pkg / "model_int8.tflite"
    target = get_target(manifest["target"])
    out = {"package": str(pkg), "model": manifest["model"], "target": target.name, "demo": manifest.get("demo")}
    c_dir = pkg / "c"
    if not (c_dir / "CMakeLists.txt").exists():   # a package exported before the library existed
        c_dir = work / "c"
        clib.write_c_library(pkg, c_dir, manifest=manifest)
        out["library_written_here"] = True
    out["layout_problems"] = clib.layout_problems(c_dir)
    sizes = report.get("c_library") or clib.measure_library(c_dir)
    out["c_library"] = sizes

    # host: CMake (add_subdirectory), -Wall -Wextra -Werror, then windows through both calls
    t0 = time.perf_counter()
    app = _cmake_app(work / "host-app", c_dir)
    strict = "-Wall -Wextra -Werror"
    _sh(["cmake", "-S", app, "-B", work / "host", f"-DCMAKE_C_FLAGS={strict}", f"-DCMAKE_CXX_FLAGS={strict}"])
    _sh(["cmake", "--build", work / "host"])
    out["host_build_s"] = round(time.perf_counter() - t0, 1)
    contract = manifest["input"]
    n = int(np.prod(contract["tflite_shape"]))
    rng = np.random.default_rng(2026)
    t = np.arange(n) / contract["sampling_rate_hz"]
    mv = np.stack([np.sin(2 * np.pi * (1.0 + 0.1 * i) * t) * (0.5 + 0.1 * i) + rng.normal(0, 0.05, n)
                   for i in range(windows)]).astype(np.float32)
    q = np.stack([quantize_input(w.astype(np.float64) * 1000.0 / contract["scale_uv"], contract["tflite_scale"],
                                 contract["tflite_zero_point"]) for w in mv])
    assert np.array_equal(q, np.stack([window_int8(w.astype(np.float64) * 1000.0, contract) for w in mv]))
    ref = tflm_outputs(tfl, q)
    (work / "q.bin").write_bytes(q.tobytes())
    r = subprocess.run([work / "host/run_one", work / "q.bin"], capture_output=True, timeout=600)
    got = np.frombuffer(r.stdout, np.int8).reshape(len(q), -1)
    (work / "mv.f32").write_bytes(mv.tobytes())
    r = subprocess.run([work / "host/run_mv", work / "mv.f32"], capture_output=True, timeout=600)
    got_mv = np.frombuffer(r.stdout, np.float32).reshape(len(q), -1)
    o = manifest["outputs"][0]
    want_mv = ((ref.astype(np.float64) - o["tflite_zero_point"]) * o["tflite_scale"]).astype(np.float32)
    out["host_bit_exact"] = {"windows": len(q), "invoke": int(np.sum(np.all(got == ref, axis=1))),
                             "run_mv": int(np.sum(np.all(got_mv == want_mv, axis=1)))}

    # its own core: CMake with the library's toolchain file
    core = clib.core_for_target(target).name
    t0 = time.perf_counter()
    _sh(["cmake", "-S", app, "-B", work / core, f"-DCMAKE_TOOLCHAIN_FILE={c_dir / 'cmake/arm-none-eabi.cmake'}",
         f"-DECG_CORE={core}", f"-DCMAKE_C_FLAGS={strict}", f"-DCMAKE_CXX_FLAGS={strict}"])
    _sh(["cmake", "--build", work / core])
    out["core_build"] = {"core": core, "seconds": round(time.perf_counter() - t0, 1), "ok": True}

    # every board's image for this model
    out["boards"] = {}
    for key in boards():
        try:
            b = build_board_firmware(pkg, key, work / "boards" / key)
            out["boards"][key] = {"fits": True, "flash_bytes": b.flash_bytes, "flash_limit": b.flash_limit,
                                  "ram_bytes": b.ram_bytes, "arena_bytes": b.arena_bytes,
                                  "arena_region": b.arena_region, "map_problems": b.problems}
        except Exception as e:   # a model too large for the board: the build says by how much
            out["boards"][key] = {"fits": False, "why": str(e).splitlines()[0]}

    # exact instructions: the Cortex-M7 firmware in QEMU mps2-an500 (the package's own engine build)
    if target.name == "cortex-m7" or core == "cortex-m7":
        from ecgedge.firmware_bridge.build import build_firmware
        from ecgedge.firmware_bridge.client import FirmwareClient
        from ecgedge.firmware_bridge.qemu import QemuDevice

        fw = build_firmware(pkg, "cortex-m7", work / "m7")
        with QemuDevice(fw.elf, plugin=True) as dev:
            cl = FirmwareClient(sock=dev.connect())
            cl.hello()
            res = [cl.infer(x, timeout=600) for x in q[:3]]
            cl.close()
            dev.stop()
            recs = dev.plugin_records()
        out["qemu_m7"] = {"windows": 3, "bit_exact": bool(np.array_equal(np.array([x.outputs for x in res],
                                                                                     np.int8), ref[:3])),
                          "instructions": [int(rr["total"]) for rr in recs],
                          "macs": int(fw.macs), "flash_bytes": fw.flash_bytes, "arena_bytes": fw.arena_bytes}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packages", nargs="+", type=Path)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("clib_bench.json"))
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    results = []
    for pkg in args.packages:
        with tempfile.TemporaryDirectory(prefix="clib-bench-") as d:
            results.append(bench_package(pkg, args.windows, Path(d)))
    args.out.write_text(json.dumps({"packages": results}, indent=1))
    con = Console()
    t = Table(title="C library per package")
    for col in ("package", "host bit-exact (invoke / run_mv)", "own core build", "text (own core)", "rodata",
                "arena", "M7 QEMU instructions"):
        t.add_column(col)
    for r in results:
        core = r["core_build"]["core"]
        s = r["c_library"].get(core, {})
        hb = r["host_bit_exact"]
        t.add_row(f"{r['model']}-{r['target']}", f"{hb['invoke']}/{hb['windows']} / {hb['run_mv']}/{hb['windows']}",
                  f"{core} ok", f"{s.get('text_bytes', 0):,}", f"{s.get('rodata_bytes', 0):,}",
                  f"{s.get('arena_bytes', 0):,}",
                  f"{r['qemu_m7']['instructions'][-1]:,}" if "qemu_m7" in r else "-")
    con.print(t)
    b = Table(title="board images (flash used / board flash, arena region) or why not")
    b.add_column("package")
    keys = list(results[0]["boards"]) if results else []
    for k in keys:
        b.add_column(k)
    for r in results:
        b.add_row(f"{r['model']}-{r['target']}", *[
            (f"{v['flash_bytes']:,} / {v['flash_limit']:,}, {v['arena_region']}"
             + ("" if not v["map_problems"] else " MAP!")) if v["fits"] else "does not fit"
            for v in r["boards"].values()])
    con.print(b)
    print(f"written {args.out}")
    ok = all(r["host_bit_exact"]["invoke"] == r["host_bit_exact"]["windows"] == r["host_bit_exact"]["run_mv"]
             and not r["layout_problems"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Engine benchmark across Cortex-M cores: instructions per MAC of our C engine per core and per layer kind,
measured in QEMU with our TCG plugin (exact counts of executed instructions), on the same shapes as the
CMSIS-NN reference measurements in shared/NOTES.md, printed beside them; whole models (pocket_k by default)
per core with bit-exactness against tflite-micro, arena against tflite-micro's smallest, and flash of the
two optimisation goals (speed: widened weights and tables; size: int8 weights). Writes JSON and tables.

    python benchmarks/engine_bench.py [--package DIR ...] [--cores cortex-m0,...] [--windows 2]
                                      [--layers all|none|name,...] [--out engine_bench.json]

The single-layer models are full-INT8 .tflite files built with Keras + TFLiteConverter (per-channel
weights, "same" padding, random weights and biases, seed fixed). QEMU counts instructions, not cycles.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORES = ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]

# CMSIS-NN v7.0.0-43-g99f736a6, arm-none-eabi-gcc 12.2 -O2, QEMU 7.2, executed instructions per MAC of one
# kernel call (shared/NOTES.md, "Reference figures: CMSIS-NN on every Cortex-M core", measured 2026-12-04).
# (name, description, input shape NHWC, layer kind, layer arguments) -> per-core figures.
LAYERS = [
    ("conv1d_k16_s2", "conv1d k16 s2, 2500x16 -> 1250x32", (1, 1, 2500, 16), "conv",
     dict(filters=32, kernel=(1, 16), strides=(1, 2))),
    ("pointwise", "pointwise, 1250x64 -> 1250x64", (1, 1, 1250, 64), "conv", dict(filters=64, kernel=(1, 1))),
    ("grouped_k16", "grouped conv1d k16, 64 ch, 4 groups, len 1250", (1, 1, 1250, 64), "conv",
     dict(filters=64, kernel=(1, 16), groups=4)),
    ("depthwise_k16", "depthwise conv1d k16, 64 ch, len 1250", (1, 1, 1250, 64), "depthwise", dict(kernel=(1, 16))),
    ("fc_1024_64", "fully connected 1024 -> 64", (1, 1024), "fc", dict(units=64)),
    ("conv2d_3x3", "conv2d 3x3 s1, 32x32x16 -> 32x32x32", (1, 32, 32, 16), "conv", dict(filters=32, kernel=(3, 3))),
    ("depthwise_3x3", "depthwise 3x3, 32x32x64", (1, 32, 32, 64), "depthwise", dict(kernel=(3, 3))),
]
CMSIS_NN = {   # instructions per MAC: M3, M4, M7, M33, M55 (Helium)
    "conv1d_k16_s2": (2.92, 1.98, 1.98, 1.98, 0.23),
    "pointwise": (3.07, 2.06, 2.02, 2.05, 0.39),
    "grouped_k16": (3.18, 2.15, 2.15, 2.15, 0.32),
    "depthwise_k16": (20.24, 10.72, 10.41, 10.68, 1.89),
    "fc_1024_64": (3.42, 1.93, 1.93, 1.93, 0.49),
    "conv2d_3x3": (3.07, 2.14, 2.15, 2.14, 0.33),
    "depthwise_3x3": (9.73, 8.09, 8.09, 8.09, 2.33),
}
CMSIS_CORES = ("cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")


def cmsis_nn(layer: str, core: str) -> float | None:
    return CMSIS_NN[layer][CMSIS_CORES.index(core)] if core in CMSIS_CORES else None


def layer_tflite(shape, kind: str, args: dict, seed: int = 0) -> bytes:
    """A one-layer full-INT8 model (int8 in/out, per-channel weights)."""
    import keras
    from keras import layers

    from ecgedge.device_sim.testmodels import convert_int8

    keras.utils.set_random_seed(seed)
    init = dict(bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=seed))
    inp = keras.Input(shape[1:], batch_size=1)
    if kind == "conv":
        out = layers.Conv2D(args["filters"], args["kernel"], strides=args.get("strides", (1, 1)), padding="same",
                            groups=args.get("groups", 1), **init)(inp)
    elif kind == "depthwise":
        out = layers.DepthwiseConv2D(args["kernel"], padding="same", **init)(inp)
    else:
        out = layers.Dense(args["units"], **init)(inp)
    rep = np.random.default_rng(seed).normal(0, 1, (16, *shape[1:])).astype(np.float32)
    return convert_int8(keras.Model(inp, out), rep)


def measure(model: Path, core: str, q: np.ndarray, expected: np.ndarray, work: Path, optimize: str = "speed") -> dict:
    from ecgedge.firmware_bridge.build import build_engine
    from ecgedge.firmware_bridge.qemu import run_model

    b = build_engine(model, core, work / f"{model.stem}-{core}-{optimize}", optimize=optimize, program="protocol")
    got, recs = run_model(b.elf, q)
    rec = recs[-1]
    return {"core": core, "kernels": b.kernels, "machine": b.machine, "optimize": optimize,
            "bit_exact": int((got == expected).all(axis=1).sum()), "windows": len(q),
            "instructions": int(rec["total"]), "instructions_per_mac": rec["total"] / b.macs, "macs": b.macs,
            "layers": {int(k): int(v) for k, v in rec["layers"].items()}, "layer_table": b.layers,
            "arena_bytes": b.arena_bytes, "flash_bytes": b.flash_bytes, "const_bytes": b.const_bytes}


def bench_layers(names: list[str], cores: list[str], work: Path, log) -> list[dict]:
    from ecgedge.contract.runners import open_int8_runner
    from ecgedge.device_sim.testmodels import int8_vectors

    rows = []
    for name, desc, shape, kind, args in LAYERS:
        if name not in names:
            continue
        path = work / f"{name}.tflite"
        path.write_bytes(layer_tflite(shape, kind, args))
        q = int8_vectors(path, 1, seed=5)
        expected = open_int8_runner(path, "tflm").run(q)
        row = {"layer": name, "description": desc, "per_core": {}}
        for core in cores:
            t0 = time.monotonic()
            m = measure(path, core, q, expected, work)
            layer_instr = sum(m["layers"].values())   # the layer function(s), without the input/output copies
            m.update(layer_instructions=layer_instr, layer_instructions_per_mac=layer_instr / m["macs"],
                     cmsis_nn_per_mac=cmsis_nn(name, core))
            del m["layers"], m["layer_table"]
            row["per_core"][core] = m
            row["macs"] = m["macs"]
            log(f"{name:15s} {core:11s} {m['layer_instructions_per_mac']:6.3f} instr/MAC "
                f"(CMSIS-NN {m['cmsis_nn_per_mac']}) bit-exact {m['bit_exact']}/{m['windows']} "
                f"[{time.monotonic() - t0:.0f} s]")
        rows.append(row)
    return rows


def _kind(row: dict) -> str:
    s = row.get("summary", "")
    if row["op"] == "CONV_2D":
        return "conv 1x1" if s.startswith("conv 1x1 ") else "conv"
    if row["op"] == "DEPTHWISE_CONV_2D":
        return "per-channel tables" if "channel tables" in s else "depthwise"
    return row["op"].lower()


def bench_models(packages: list[Path], cores: list[str], windows: int, work: Path, log) -> list[dict]:
    from ecgedge.contract.runners import open_int8_runner, smallest_arena
    from ecgedge.device_sim.testmodels import int8_vectors

    out = []
    for pkg in packages:
        tfl = pkg / "model_int8.tflite"
        q = int8_vectors(tfl, windows, seed=2024)
        expected = open_int8_runner(tfl, "tflm").run(q)
        entry = {"package": str(pkg), "model": json.loads((pkg / "manifest.json").read_text()).get("model"),
                 "tflm_min_arena_bytes": smallest_arena(tfl), "per_core": {}}
        for core in cores:
            t0 = time.monotonic()
            m = measure(pkg, core, q, expected, work)
            kinds: dict[str, dict] = {}
            for L in m["layer_table"]:
                k = kinds.setdefault(_kind(L), {"instructions": 0, "macs": 0})
                k["instructions"] += m["layers"].get(L["index"], 0)
                k["macs"] += L["macs"]
            for k in kinds.values():
                k["instructions_per_mac"] = k["instructions"] / k["macs"] if k["macs"] else None
            m["by_kind"] = kinds
            size = measure(pkg, core, q[:1], expected[:1], work, optimize="size")
            m["size"] = {k: size[k] for k in ("instructions", "instructions_per_mac", "flash_bytes", "const_bytes",
                                             "arena_bytes", "bit_exact")}
            m["flash_cost_of_speed_bytes"] = m["flash_bytes"] - size["flash_bytes"]
            del m["layers"], m["layer_table"]
            entry["per_core"][core] = m
            entry["macs"] = m["macs"]
            log(f"{entry['model']:10s} {core:11s} {m['instructions_per_mac']:6.3f} instr/MAC, bit-exact "
                f"{m['bit_exact']}/{m['windows']}, arena {m['arena_bytes']} (tflite-micro "
                f"{entry['tflm_min_arena_bytes']}), flash {m['flash_bytes']} (size: {size['flash_bytes']}, "
                f"{size['instructions_per_mac']:.3f} instr/MAC) [{time.monotonic() - t0:.0f} s]")
        out.append(entry)
    return out


def print_tables(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=200)
    cores = report["cores"]
    if report["layers"]:
        t = Table(title="instructions per MAC per layer: ecgedge engine (CMSIS-NN v7 reference, same shapes)")
        t.add_column("layer")
        t.add_column("MACs", justify="right")
        for c in cores:
            t.add_column(c.replace("cortex-", ""), justify="right")
        for row in report["layers"]:
            cells = []
            for c in cores:
                m = row["per_core"].get(c)
                if m is None:
                    cells.append("-")
                    continue
                ref = f" ({m['cmsis_nn_per_mac']:.2f})" if m["cmsis_nn_per_mac"] is not None else ""
                ok = "" if m["bit_exact"] == m["windows"] else " NOT EXACT"
                cells.append(f"{m['layer_instructions_per_mac']:.2f}{ref}{ok}")
            t.add_row(row["description"], f"{row['macs'] / 1e6:.2f} M", *cells)
        con.print(t)
    for entry in report["models"]:
        t = Table(title=f"{entry['model']} ({entry['macs'] / 1e6:.2f} M MACs): whole model per core")
        for col in ("core", "instr/MAC", "bit-exact", "instructions", "arena (tflite-micro)", "flash speed",
                    "flash size", "instr/MAC size"):
            t.add_column(col, justify="right")
        for c, m in entry["per_core"].items():
            t.add_row(c, f"{m['instructions_per_mac']:.3f}", f"{m['bit_exact']}/{m['windows']}",
                      f"{m['instructions']:,}", f"{m['arena_bytes']:,} ({entry['tflm_min_arena_bytes']:,})",
                      f"{m['flash_bytes']:,}", f"{m['size']['flash_bytes']:,}",
                      f"{m['size']['instructions_per_mac']:.3f}")
        con.print(t)
        kinds = sorted({k for m in entry["per_core"].values() for k in m["by_kind"]})
        t = Table(title=f"{entry['model']}: instructions per MAC by layer kind (instructions where no MACs)")
        t.add_column("kind")
        for c in entry["per_core"]:
            t.add_column(c.replace("cortex-", ""), justify="right")
        for k in kinds:
            cells = []
            for m in entry["per_core"].values():
                v = m["by_kind"].get(k)
                cells.append("-" if v is None else (f"{v['instructions_per_mac']:.2f}" if v["macs"]
                                                    else f"{v['instructions'] / 1e3:.0f} k"))
            t.add_row(k, *cells)
        con.print(t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, action="append", default=[],
                    help="model package folder (repeatable); whole-model figures per core")
    ap.add_argument("--cores", default=",".join(CORES))
    ap.add_argument("--layers", default="all", help="all, none, or a comma list of: " +
                    ", ".join(n for n, *_ in LAYERS))
    ap.add_argument("--windows", type=int, default=2, help="windows per model package (bit-exactness)")
    ap.add_argument("--out", type=Path, default=Path("engine_bench.json"))
    a = ap.parse_args(argv)
    cores = [c.strip() for c in a.cores.split(",") if c.strip()]
    from ecgedge.firmware_bridge.cores import mcu_cores
    bad = [c for c in cores if c not in mcu_cores()]
    if bad:
        print(f"error: unknown core(s) {', '.join(bad)}; expected: {', '.join(mcu_cores())}", file=sys.stderr)
        return 2
    names = [n for n, *_ in LAYERS] if a.layers == "all" else ([] if a.layers == "none" else a.layers.split(","))
    unknown = sorted(set(names) - {n for n, *_ in LAYERS})
    if unknown:
        print(f"error: unknown layer(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    log = lambda s: print(s, flush=True)   # noqa: E731
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        work = Path(tmp)
        report = {"counter": "exact TCG plugin count of executed guest instructions (QEMU 7.2)",
                  "cmsis_nn_reference": "shared/NOTES.md: CMSIS-NN v7.0.0-43-g99f736a6, gcc 12.2 -O2, QEMU 7.2",
                  "cores": cores, "layers": bench_layers(names, cores, work, log),
                  "models": bench_models(a.package, cores, a.windows, work, log)}
    a.out.write_text(json.dumps(report, indent=1))
    print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

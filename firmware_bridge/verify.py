"""`edge-engine verify`: build the engine for a core, run it on inputs, compare every output byte with
tflite-micro's Python interpreter, and measure it.

    report = verify("model.tflite", core="cortex-m7", n_inputs=10)          # or data=array / .npy path
    report["bit_exact_fraction"], report["instructions_per_inference"], report["layers"], ...

Host builds run as a subprocess (input tensors on stdin); MCU builds run in QEMU with semihosting file I/O
(c/verify_main.c) and our TCG plugin, which counts the executed instructions of every inference and layer
exactly. Any full-INT8 .tflite (ECG or not, any input shape; float32 in/out when the first op quantises and
the last dequantises)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, DataError, FirmwareError
from ecgedge.firmware_bridge.tflite_model import TfliteModel, load_model

QEMU_TIMEOUT_S = 600


def _io(model: TfliteModel):
    t_in, t_out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    return t_in, t_out


def make_inputs(model: TfliteModel, n: int, seed: int = 0) -> np.ndarray:
    """n random input tensors [n, *shape]: uniform int8 for an int8 input; for a float input, floats spread over
    the range the first QUANTIZE can represent (off the quantisation grid, so rounding is exercised)."""
    t_in, _ = _io(model)
    rng = np.random.default_rng(seed)
    shape = (n, *t_in.shape)
    if t_in.type_name == "int8":
        return rng.integers(-128, 128, shape, dtype=np.int64).astype(np.int8)
    q = next(op for op in model.operators if t_in.index in op.inputs)
    y = model.tensors[q.outputs[0]]
    s, zp = float(y.scale[0]), int(y.zero_point[0])
    return rng.uniform((-130 - zp) * s, (129 - zp) * s, shape).astype(np.float32)


def load_inputs(model: TfliteModel, data) -> np.ndarray:
    """User inputs (array or .npy path) as [n, *input shape] of the model's input type; DataError otherwise."""
    t_in, _ = _io(model)
    if isinstance(data, (str, Path)):
        try:
            arr = np.load(str(data), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"--data {str(data)!r}: cannot read a .npy array ({e})") from None
    else:
        arr = np.asarray(data)
    size = int(np.prod(t_in.shape))
    if arr.size == 0 or arr.size % size:
        raise DataError(f"--data: {arr.size} values are not a whole number of inputs of shape {list(t_in.shape)} "
                        f"({size} values each)")
    if t_in.type_name == "int8":
        if not np.issubdtype(arr.dtype, np.integer) or arr.min() < -128 or arr.max() > 127:
            raise DataError(f"--data: dtype {arr.dtype} range [{arr.min()}, {arr.max()}]; expected int8 values "
                            "(the model's input is int8)")
        return arr.astype(np.int8).reshape(-1, *t_in.shape)
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"--data: dtype {arr.dtype}; expected numbers (the model's input is float32)")
    return arr.astype(np.float32).reshape(-1, *t_in.shape)


def run_host(exe: Path, inputs: np.ndarray, out_dtype, out_size: int) -> np.ndarray:
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(inputs).tobytes(), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise FirmwareError(f"{exe.name} exited with {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return np.frombuffer(r.stdout, out_dtype).reshape(len(inputs), out_size)


def run_qemu(elf: Path, machine: str, inputs: np.ndarray, out_dtype, out_size: int,
             timeout: float = QEMU_TIMEOUT_S) -> tuple[np.ndarray, list[dict]]:
    """Run a verify firmware in QEMU: inputs over semihosting, outputs back, plugin records per inference."""
    from ecgedge.firmware_bridge.qemu import build_plugin, parse_plugin_log, plugin_marks

    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise FirmwareError("qemu-system-arm not found on PATH; install it (apt-get install qemu-system-arm)")
    with tempfile.TemporaryDirectory(prefix="ecg-verify-") as d:
        d = Path(d)
        (d / "in.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
        log = d / "icount.log"
        marks = ",".join(f"mark={a:#x}:{i}" for a, i in plugin_marks(elf))
        cmd = [qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", f"enable=on,target=native,arg=verify,arg={d / 'in.bin'},arg={d / 'out.bin'}",
               "-kernel", str(elf), "-plugin", f"{build_plugin()},out={log},{marks}"]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError(f"QEMU ({machine}) did not finish {len(inputs)} inferences within "
                                f"{timeout:.0f} s") from None
        if r.returncode != 0:
            raise FirmwareError(f"verify firmware in QEMU ({machine}) exited with {r.returncode}: "
                                f"{r.stderr.decode(errors='replace')[-500:]}")
        raw = (d / "out.bin").read_bytes() if (d / "out.bin").exists() else b""
        records = parse_plugin_log(log.read_text()) if log.exists() else []
    out = np.frombuffer(raw, out_dtype)
    if out.size != len(inputs) * out_size:
        raise FirmwareError(f"verify firmware wrote {out.size} output values, expected {len(inputs) * out_size}")
    return out.reshape(len(inputs), out_size), records


def _equal_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per input: every output byte equal (float outputs compared by their bits)."""
    av = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)
    bv = np.ascontiguousarray(b).view(np.uint8).reshape(len(b), -1)
    return np.all(av == bv, axis=1)


def verify(model_path, core: str = "host", n_inputs: int = 10, data=None, seed: int = 0, optimized: bool = True,
           out_dir=None, arena_tflm: bool = True, also_reference: bool = False, defines: dict | None = None) -> dict:
    """Build, run and compare; the report dict of `edge-engine verify --json` (see docs/firmware.md).
    `also_reference`: build and compare the reference kernels too (same sources, same inputs):
    `reference_bit_exact_fraction` in the report. `defines`: C defines of the build (fault injection,
    build.FAULTS, for negative tests)."""
    from ecgedge.firmware_bridge.build import build_engine
    from ecgedge.firmware_bridge.cores import get_core
    from ecgedge.contract.runners import smallest_arena, tflm_run_tensors

    path = Path(model_path)
    if path.is_dir() and (path / "model_int8.tflite").is_file():      # a model package folder
        path = path / "model_int8.tflite"
    if not path.is_file():
        raise ConfigError(f"model {str(path)!r}: no such file (expected a .tflite or a package folder)")
    get_core(core)
    model = load_model(path)
    if data is None:
        if n_inputs < 1:
            raise ConfigError(f"--inputs {n_inputs}: expected a positive number")
        inputs = make_inputs(model, n_inputs, seed)
    else:
        inputs = load_inputs(model, data)
    t_in, t_out = _io(model)
    out_dtype, out_size = np.dtype(t_out.type_name), int(np.prod(t_out.shape))
    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="ecg-engine-"))
    try:
        eb = build_engine(path, core, work / core, optimized=optimized, defines=defines)
        gen = eb.gen
        expected = tflm_run_tensors(path, inputs).reshape(len(inputs), out_size)
        records: list[dict] = []
        if eb.machine is None:
            got = run_host(eb.path, inputs, out_dtype, out_size)
        else:
            got, records = run_qemu(eb.path, eb.machine, inputs, out_dtype, out_size)
        ref_same = None
        if also_reference:
            rb = build_engine(path, core, work / core, optimized=not optimized, gen=gen, defines=defines)
            ref_got = (run_host(rb.path, inputs, out_dtype, out_size) if rb.machine is None
                       else run_qemu(rb.path, rb.machine, inputs, out_dtype, out_size)[0])
            ref_same = _equal_rows(ref_got, expected.astype(out_dtype))
    finally:
        if out_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    same = _equal_rows(got, expected.astype(out_dtype))
    table = gen.layer_table if optimized else gen.reference_layer_table
    layers = [dict(row) for row in table]
    ipi = None
    if records:
        totals = [r["total"] for r in records]
        ipi = int(round(float(np.mean(totals))))
        for row in layers:
            row["instructions"] = int(round(float(np.mean([r["layers"].get(row["index"], 0) for r in records]))))
    arena_tflm_bytes = smallest_arena(path) if arena_tflm else None
    arena = eb.arena_bytes
    return {
        "model": str(path), "model_sha256": model.sha256, "core": core, "defines": dict(defines or {}),
        "kernels": get_core(core).kernels,
        "optimized": optimized, "inputs": int(len(inputs)), "input_type": t_in.type_name,
        "input_shape": list(t_in.shape), "output_type": t_out.type_name, "output_shape": list(t_out.shape),
        "bit_exact_fraction": float(np.mean(same)), "mismatched_inputs": [int(i) for i in np.nonzero(~same)[0]],
        "reference_bit_exact_fraction" if optimized else "optimised_bit_exact_fraction":
            float(np.mean(ref_same)) if ref_same is not None else None,
        "distinct_outputs": int(len(np.unique(np.ascontiguousarray(expected).view(np.uint8).reshape(len(expected), -1),
                                              axis=0))),
        "instructions_per_inference": ipi,
        "instructions_per_inference_range": [min(r["total"] for r in records), max(r["total"] for r in records)]
        if records else None,
        "instructions_per_mac": (ipi / gen.macs) if ipi is not None and gen.macs else None,
        "instructions_source": "QEMU TCG plugin (exact executed-instruction count)" if records else None,
        "macs": int(gen.macs), "arena_bytes": int(arena), "arena_bytes_tflm": arena_tflm_bytes,
        "arena_ratio": (arena / arena_tflm_bytes) if arena_tflm_bytes else None,
        "flash_bytes": eb.flash_bytes, "text_bytes": eb.text, "data_bytes": eb.data, "bss_bytes": eb.bss,
        "const_bytes": int(gen.const_bytes), "ops": model.op_names(), "layers": layers,
    }


SUMMARY_KEYS = ("bit_exact_fraction", "reference_bit_exact_fraction", "arena_bytes", "arena_bytes_tflm",
                "instructions_per_inference", "instructions_per_mac", "macs", "flash_bytes", "distinct_outputs")


def _verify_job(job) -> dict:
    """One (key, model path, core, seed) job for verify_many; never raises (errors come back as strings)."""
    key, path, core, seed = job
    out = {"key": key, "core": core, "ops": [], "error": None}
    try:
        out["ops"] = load_model(path).op_names()
        rep = verify(path, core=core, n_inputs=6, seed=seed, also_reference=core == "host",
                     arena_tflm=core == "host")
        out.update({k: rep[k] for k in SUMMARY_KEYS})
    except Exception as e:   # noqa: BLE001  (reported with its key)
        out["error"] = f"{type(e).__name__}: {str(e)[:600]}"
    return out


def verify_many(jobs: list[tuple], workers: int = 2) -> list[dict]:
    """verify() summaries of many (key, path, core, seed) jobs in `workers` spawned processes (host builds and
    QEMU runs in parallel; no fork of the calling, possibly threaded, process)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        return list(ex.map(_verify_job, jobs))


def problems(results: list[dict]) -> list[str]:
    """What is wrong in verify_many results: errors, any output byte off (optimised or reference kernels),
    an arena larger than tflite-micro's smallest."""
    bad = []
    for r in results:
        why = r["error"]
        if why is None and r["bit_exact_fraction"] != 1.0:
            why = f"not bit-exact ({r['bit_exact_fraction']:.3f} of inputs)"
        if why is None and r["reference_bit_exact_fraction"] not in (None, 1.0):
            why = f"reference kernels not bit-exact ({r['reference_bit_exact_fraction']:.3f})"
        if why is None and r["arena_bytes_tflm"] is not None and r["arena_bytes"] > r["arena_bytes_tflm"]:
            why = f"arena {r['arena_bytes']} B > tflite-micro's {r['arena_bytes_tflm']} B"
        if why:
            bad.append(f"{r['key']} on {r['core']}: {why}; ops {r['ops']}")
    return bad

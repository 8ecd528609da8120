"""tflite-micro's Python interpreter as the oracle: INT8 outputs, smallest working arena, test windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgedge.firmware_bridge.tflite_model import load_model


def tflm_outputs(model_path: str | Path, q: np.ndarray) -> np.ndarray:
    """INT8 outputs [n, n_out] of tflite-micro for INT8 inputs q [n, input_size]."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(model_path), arena_size=8_000_000)
    shape = tuple(it.get_input_details(0)["shape"])
    out = []
    for x in q:
        it.set_input(np.asarray(x, np.int8).reshape(shape), 0)
        it.invoke()
        out.append(it.get_output(0).reshape(-1).copy())
    return np.array(out)


def tflm_min_arena(model_path: str | Path, lo: int = 1024, hi: int = 8_000_000, step: int = 16) -> int:
    """Smallest arena_size (to `step` bytes) with which tflite-micro allocates the model (bisection)."""
    from tflite_micro import runtime

    def ok(n):
        try:
            runtime.Interpreter.from_file(str(model_path), arena_size=n)
            return True
        except Exception:  # tflite-micro raises RuntimeError on a failed allocation
            return False

    if not ok(hi):
        raise RuntimeError(f"tflite-micro cannot allocate {model_path} even with {hi} bytes")
    while hi - lo > step:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def quantized_windows(model_path: str | Path, n: int, seed: int = 0, noise_rows: int = 3) -> np.ndarray:
    """ECG-like windows quantised with the model's input parameters; the last rows are random bytes."""
    from ecgedge.device_sim.testmodels import representative_windows

    m = load_model(model_path)
    t = m.tensors[m.inputs[0]]
    length = int(np.prod(t.shape))
    x = representative_windows(n, length, seed=seed).reshape(n, length)
    q = np.clip(np.round(x / t.scale[0]) + t.zero_point[0], -128, 127).astype(np.int8)
    if noise_rows:
        q[-noise_rows:] = np.random.default_rng(seed).integers(-128, 128, q[-noise_rows:].shape)
    return q

"""tflite-micro's Python interpreter as the oracle: INT8 outputs, smallest working arena, test windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgedge.firmware_bridge.tflite_model import load_model


def tflm_outputs(model_path: str | Path, q: np.ndarray) -> np.ndarray:
    """Outputs [n, n_out] of tflite-micro for inputs q [n, input_size] (int8, or float32 for a float-input model).
    Variable tensors (an LSTM's state) are reset before every input: each input is an independent window."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(model_path), arena_size=8_000_000)
    det = it.get_input_details(0)
    shape, dtype = tuple(det["shape"]), det["dtype"]
    out = []
    for x in q:
        it.reset()
        it.set_input(np.asarray(x, dtype).reshape(shape), 0)
        it.invoke()
        out.append(it.get_output(0).reshape(-1).copy())
    return np.array(out)


def _allocates(model_path: str, n: int) -> bool:
    """Whether tflite-micro allocates the model in n bytes. The probe runs in a forked child: tflite-micro prints
    its allocation failures on the C streams and, for some ops (the LSTM), crashes on a too-small arena."""
    import os

    from tflite_micro import runtime

    if not hasattr(os, "fork"):
        try:
            runtime.Interpreter.from_file(model_path, arena_size=n)
            return True
        except Exception:  # tflite-micro raises RuntimeError on a failed allocation
            return False
    pid = os.fork()
    if pid == 0:   # child: silence, try, report by exit status
        code = 1
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            runtime.Interpreter.from_file(model_path, arena_size=n)
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def tflm_min_arena(model_path: str | Path, lo: int = 1024, hi: int = 8_000_000, step: int = 16) -> int:
    """Smallest arena_size (to `step` bytes) with which tflite-micro allocates the model (bisection)."""

    def ok(n):
        return _allocates(str(model_path), n)

    if not ok(hi):
        raise RuntimeError(f"tflite-micro cannot allocate {model_path} even with {hi} bytes")
    while hi - lo > step:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def quantized_windows(model_path: str | Path, n: int, seed: int = 0, noise_rows: int = 3) -> np.ndarray:
    """ECG-like windows quantised with the model's input parameters; the last rows are random bytes."""
    from ecgedge.firmware_bridge.testmodels import representative_windows

    m = load_model(model_path)
    t = m.tensors[m.inputs[0]]
    length = int(np.prod(t.shape))
    x = representative_windows(n, length, seed=seed).reshape(n, length)
    q = np.clip(np.round(x / t.scale[0]) + t.zero_point[0], -128, 127).astype(np.int8)
    if noise_rows:
        q[-noise_rows:] = np.random.default_rng(seed).integers(-128, 128, q[-noise_rows:].shape)
    return q

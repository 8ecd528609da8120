"""tflite-micro's Python interpreter as the oracle: INT8 outputs, smallest working arena, test windows."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ecgedge.errors import FirmwareError
from ecgedge.firmware_bridge.tflite_model import load_model


def in_child(fn, *args):
    """fn(*args) in a forked child (where fork exists), its result pickled back: tflite-micro aborts or
    crashes the whole process on some models (a failed CHECK in a kernel's prepare, a too-small arena).
    Raises FirmwareError when the child dies."""
    import os
    import pickle

    if not hasattr(os, "fork"):
        return fn(*args)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            import faulthandler

            faulthandler.disable()
            os.close(r)
            try:
                payload = pickle.dumps((True, fn(*args)))
            except Exception as e:   # noqa: BLE001  (sent back to the parent, raised there)
                payload = pickle.dumps((False, f"{type(e).__name__}: {e}"))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        raise FirmwareError(f"tflite-micro's interpreter died ({how}) on this model: the oracle cannot run it")
    ok, value = pickle.loads(data)
    if not ok:
        raise FirmwareError(f"tflite-micro's interpreter failed on this model: {value}")
    return value


def _tflm_outputs(model_path: str, q: np.ndarray) -> np.ndarray:
    from tflite_micro import runtime

    it = runtime.Interpreter.from_file(model_path, arena_size=8_000_000)
    det = it.get_input_details(0)
    shape, dtype = tuple(det["shape"]), det["dtype"]
    out = []
    for x in q:
        it.reset()
        it.set_input(np.asarray(x, dtype).reshape(shape), 0)
        it.invoke()
        out.append(it.get_output(0).reshape(-1).copy())
    return np.array(out)


def tflm_outputs(model_path: str | Path, q: np.ndarray) -> np.ndarray:
    """Outputs [n, n_out] of tflite-micro for inputs q [n, input_size] (int8, or float32 for a float-input model).
    Variable tensors (an LSTM's state) are reset before every input: each input is an independent window.
    Runs in a forked child (in_child): a model tflite-micro aborts on gives a FirmwareError, not a dead process."""
    return in_child(_tflm_outputs, str(model_path), np.asarray(q))


@contextmanager
def _c_streams_to(fd: int):
    """Point the C streams (fds 1 and 2; tflite-micro prints there) at fd for a while."""
    import ctypes
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in saved:
            os.close(f)


def _tflm_recorded_total(model_path: str, arena: int) -> int | None:
    """tflite-micro's own account of its arena use ('Arena allocation total N bytes'), or None."""
    import re
    import tempfile

    from tflite_micro import runtime

    def probe():
        with tempfile.TemporaryFile() as f:
            with _c_streams_to(f.fileno()):
                try:
                    runtime.Interpreter.from_file(model_path, arena_size=arena).print_allocations()
                except Exception:   # tflite-micro raises RuntimeError when it cannot allocate
                    return None
            f.seek(0)
            m = re.search(rb"Arena allocation total (\d+) bytes", f.read())
        return int(m.group(1)) if m else None

    try:
        return in_child(probe)
    except FirmwareError:
        return None


def _allocates(model_path: str, n: int) -> bool:
    """Whether tflite-micro allocates the model in n bytes. The probe runs in a forked child where fork exists:
    tflite-micro can crash the process on an arena that is too small (seen with LSTM, softmax models)."""
    import os

    from tflite_micro import runtime

    if not hasattr(os, "fork"):
        with open(os.devnull, "wb") as null, _c_streams_to(null.fileno()):
            try:
                runtime.Interpreter.from_file(model_path, arena_size=n)
                return True
            except Exception:  # tflite-micro raises RuntimeError on a failed allocation
                return False
    pid = os.fork()
    if pid == 0:   # child: silence, try, report by exit status
        code = 1
        try:
            import faulthandler

            faulthandler.disable()     # a crash here is the answer "does not allocate", not an error to print
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
    """Smallest arena_size (to `step` bytes) with which tflite-micro allocates the model. Probes start at
    tflite-micro's recorded total (a few probes around it; probes far below the need can crash it), else
    doubling from 4 KiB, then bisection."""
    def ok(n):
        return _allocates(str(model_path), n)

    total = _tflm_recorded_total(str(model_path), hi)
    if total is not None:
        probe = (total + step - 1) // step * step
        for _ in range(64):
            if ok(probe):
                break
            probe += step
        else:
            total = None
        if total is not None:
            hi, below = probe, max(lo, probe - 16 * step)
            while below > lo and ok(below):
                hi, below = below, max(lo, below - 16 * step)
            lo = below
    if total is None:
        probe = max(4096, lo)
        while probe < hi and not ok(probe):
            lo, probe = probe, probe * 2
        if probe >= hi:
            probe = hi
            if not ok(hi):
                raise RuntimeError(f"tflite-micro cannot allocate {model_path} even with {hi} bytes")
        hi = probe
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

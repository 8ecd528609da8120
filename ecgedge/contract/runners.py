"""The model runners behind one interface: a full-INT8 .tflite in tflite-micro's interpreter (the golden
outputs) or in LiteRT, and an ONNX model (float, or INT8 QDQ) in ONNX Runtime.

`open_int8_runner(model, runtime)` -> Int8Runner: `run_one(q)` / `run(q)` on int8 inputs, and
`run_model_units(x)` which quantises model-unit windows with the model's own input parameters first
(ecgedge.contract.quantization.quantize_input). `OrtRunner(path).run(x)` takes model units.
`smallest_arena(model)` is the smallest tflite-micro arena that allocates. `tflm_run_tensors(model, x)` runs
any full-INT8 model (float32 edges too) on raw input tensors. tflite-micro runs from a fresh state per window
(variable tensors reset) and, where it can abort the process, in an isolated child (`isolated`).

The interpreters are imported when a runner is made, never at import time (this module stays
numpy-only, as the runtime-only install needs).
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ecgedge.contract.quantization import dequantize, quantize_input
from ecgedge.errors import ConfigError, ExportError, ModelError

TFLM_ARENA_BYTES = 16 * 1024 * 1024  # host-side interpreter: generous (the device's arena is checked apart)
ARENA_ALIGN = 16

Progress = Callable[[], None] | None


@contextlib.contextmanager
def silence_fds():
    """tflite-micro and the TFLite converter print from C++ straight to fd 1/2."""
    import sys
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _model_bytes(model: str | Path | bytes) -> tuple[bytes, str]:
    """(bytes, a name for messages) of a model given as bytes or a path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "the model"
    try:
        return Path(model).read_bytes(), str(model)
    except OSError as e:
        raise ModelError(f"cannot read model {model}: {e.strerror}") from None


class Int8Runner(abc.ABC):
    """A full-INT8 model (int8 input, int8 output), one window at a time."""

    runtime: str = ""
    describe: str = ""

    def _describe_io(self, name: str, in_dtype, out_dtype, in_shape, in_q: tuple, out_shape, out_q: tuple):
        if np.dtype(in_dtype) != np.int8 or np.dtype(out_dtype) != np.int8:
            raise ModelError(f"{name}: input {np.dtype(in_dtype)} / output {np.dtype(out_dtype)}, "
                             "expected int8 in and out (a full-INT8 model)")
        self.name = name
        self.input_shape = tuple(int(v) for v in in_shape)
        self.input_size = int(np.prod(self.input_shape))
        self.input_scale, self.input_zero_point = float(in_q[0]), int(in_q[1])
        self.n_outputs = int(np.prod(out_shape))
        self.output_scale, self.output_zero_point = float(out_q[0]), int(out_q[1])

    @abc.abstractmethod
    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """int8 output (flat) for one int8 input already shaped as the model's."""

    def run_one(self, q) -> np.ndarray:
        """int8 outputs [n_outputs] of one int8 input (any shape of input_size values)."""
        q = np.asarray(q, np.int8)
        if q.size != self.input_size:
            raise ModelError(f"model input of {q.size} values, expected {self.input_size}")
        return np.array(self._invoke(q.reshape(self.input_shape)), np.int8).reshape(-1)

    def run(self, q, progress: Progress = None) -> np.ndarray:
        """int8 outputs [N, n_outputs] of int8 inputs [N, ...]; `progress()` after each window."""
        q = np.asarray(q, np.int8)
        out = np.empty((q.shape[0], self.n_outputs), np.int8)
        for i in range(q.shape[0]):
            out[i] = self.run_one(q[i])
            if progress is not None:
                progress()
        return out

    def to_int8(self, x_model) -> np.ndarray:
        """int8 input of model-unit values with this model's own input scale and zero point."""
        return quantize_input(x_model, self.input_scale, self.input_zero_point)

    def run_model_units(self, x, progress: Progress = None) -> tuple[np.ndarray, np.ndarray]:
        """(int8 outputs [N, n], dequantised outputs [N, n]) of windows x [N, W] in model units."""
        q = np.zeros((len(x), self.n_outputs), np.int8)
        for n in range(len(x)):
            q[n] = self.run_one(self.to_int8(x[n]))
            if progress is not None:
                progress()
        return q, dequantize(q, self.output_scale, self.output_zero_point)


class TflmRunner(Int8Runner):
    """tflite-micro's Python interpreter (INT8 reference kernels): the golden outputs."""

    runtime = "tflm"
    describe = "tflite-micro interpreter (INT8 reference kernels)"

    def __init__(self, model: str | Path | bytes, arena_size: int = TFLM_ARENA_BYTES):
        data, name = _model_bytes(model)
        self._interp = tflm_interpreter(data, arena_size, name)
        inp, out = self._interp.get_input_details(0), self._interp.get_output_details(0)

        def qp(d):
            p = d["quantization_parameters"]
            s, z = np.ravel(p["scales"]), np.ravel(p["zero_points"])
            return (float(s[0]) if s.size else 0.0, int(z[0]) if z.size else 0)
        self._describe_io(name, inp["dtype"], out["dtype"], inp["shape"], qp(inp), out["shape"], qp(out))

    def _invoke(self, x):
        return tflm_invoke(self._interp, x)


def tflm_invoke(interp, x: np.ndarray) -> np.ndarray:
    """One inference in tflite-micro, from a fresh state: variable tensors (an LSTM's hidden and cell state,
    which tflite-micro keeps between invoke() calls) are reset first, so every window is independent."""
    interp.reset()
    interp.set_input(x, 0)
    interp.invoke()
    return interp.get_output(0)


def tflm_run_tensors(model: str | Path | bytes, inputs) -> np.ndarray:
    """tflite-micro's outputs [N, n_outputs] (the model's output type) for inputs [N, ...] of the model's input
    type - int8, or float32 for a model whose first op quantises and last op dequantises. Runs in a forked child
    (isolated): tflite-micro aborts the whole process on some models, this raises ModelError instead."""
    data, name = _model_bytes(model)

    def run(x):
        interp = tflm_interpreter(data, TFLM_ARENA_BYTES, name)
        det = interp.get_input_details(0)
        shape, dtype = tuple(det["shape"]), det["dtype"]
        return np.array([np.asarray(tflm_invoke(interp, np.asarray(v, dtype).reshape(shape))).reshape(-1)
                         for v in x])

    return isolated(run, np.asarray(inputs))


def isolated(fn, *args):
    """fn(*args) in a forked child (where fork exists), the result pickled back. tflite-micro aborts or crashes
    the process on some graphs (a failed CHECK in a kernel's prepare; some ops on a too-small arena): then
    ModelError names the signal instead of the caller dying. Inside `probe_server()` a module-level fn is
    forked from its small helper process instead of from this one (much cheaper once torch and TensorFlow
    are loaded here)."""
    import pickle

    if not hasattr(os, "fork"):
        return fn(*args)
    server = _SERVER if _SERVER is not None and _SERVER.owner == os.getpid() else None
    if server is not None:
        try:
            payload = pickle.dumps((fn, args))
        except (pickle.PicklingError, AttributeError, TypeError):   # a closure: fork from here
            server = None
    answer = server.call(payload) if server is not None else None
    # no helper (or it died: then this probe, like any, forks from here)
    data, status = answer if answer is not None else _fork_call(fn, args)
    return _child_result(data, status)


def _fork_call(fn, args) -> tuple[bytes, int]:
    """(fn(*args)'s pickled answer, the child's wait status) from a child forked from this process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child_run(w, fn, args)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return data, status


def _child_run(w: int, fn, args) -> None:
    """In a forked child: fn(*args) (or its error) pickled to fd w, then exit without cleanup."""
    import pickle

    code = 0
    try:
        import faulthandler

        faulthandler.disable()     # a crash here is an answer, not a trace to print
        try:
            payload = pickle.dumps((True, fn(*args)))
        except Exception as e:   # noqa: BLE001  (raised again in the parent)
            err = e if isinstance(e, ModelError) else ModelError(f"{type(e).__name__}: {e}")
            payload = pickle.dumps((False, err))
        with os.fdopen(w, "wb") as f:
            f.write(payload)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _child_result(data: bytes, status: int):
    import pickle

    if not data:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        raise ModelError(f"tflite-micro's interpreter died ({how}) on this model: it cannot run it")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


class _ProbeServer:
    """A helper process forked while this one is still small (before torch and TensorFlow are imported), with
    tflite-micro loaded; each `call` forks one child of it that runs a pickled (module-level fn, args) as
    `isolated` would (if the helper is gone, `isolated` forks from this process as without it). A fork of a
    process holding torch + TensorFlow costs ~0.1 s of CPU, of the helper ~0.01 s: the arena search's probes
    are most of edge-analyze's time on a many-op graph."""

    def __init__(self):
        with contextlib.suppress(ImportError):   # loaded here, before the fork: importing it in a child forked
            from tflite_micro import runtime  # noqa: F401   from a process running TensorFlow can crash it
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(req_w)
                os.close(res_r)
                _serve(req_r, res_w)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(res_w)
        self.pid, self.owner = pid, os.getpid()
        self.req, self.res = os.fdopen(req_w, "wb"), os.fdopen(res_r, "rb")

    def call(self, payload: bytes) -> tuple[bytes, int] | None:
        """(the child's pickled answer, its wait status); None if the helper is gone."""
        import struct
        try:
            self.req.write(struct.pack("<Q", len(payload)) + payload)
            self.req.flush()
            head = self.res.read(12)
        except (BrokenPipeError, OSError):
            head = b""
        if len(head) < 12:
            return None
        n, status = struct.unpack("<Qi", head)
        return self.res.read(n), status

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.req.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.res.close()


def _serve(req_r: int, res_w: int) -> None:
    """The probe server's loop: per request, fork a child that runs it; answer (length, status, answer)."""
    import faulthandler
    import struct

    faulthandler.disable()
    with os.fdopen(req_r, "rb") as req, os.fdopen(res_w, "wb") as res:
        while len(head := req.read(8)) == 8:
            payload = req.read(struct.unpack("<Q", head)[0])
            data, status = _fork_call(_call_pickled, (payload,))   # unpickled in the child, as fn runs there
            res.write(struct.pack("<Qi", len(data), status) + data)
            res.flush()


def _call_pickled(payload: bytes):
    import pickle
    fn, args = pickle.loads(payload)
    return fn(*args)


_SERVER: _ProbeServer | None = None


@contextlib.contextmanager
def probe_server():
    """Within: `isolated` probes (tflite-micro arena probes) fork from a small helper process started now. Start
    it before importing torch / TensorFlow to gain from it; nested or fork-less: nothing changes."""
    global _SERVER
    if _SERVER is not None or not hasattr(os, "fork"):
        yield
        return
    _SERVER = _ProbeServer()
    try:
        yield
    finally:
        server, _SERVER = _SERVER, None
        server.close()


class LiteRtRunner(Int8Runner):
    """LiteRT (ai-edge-litert), one thread (XNNPACK may differ from tflite-micro by 1 LSB)."""

    runtime = "litert"
    describe = "LiteRT interpreter"

    def __init__(self, model: str | Path | bytes, num_threads: int = 1):
        data, name = _model_bytes(model)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelError(f"ai-edge-litert is not installed ({e}); pip install ai-edge-litert") from None
        try:
            self._interp = Interpreter(model_content=data, num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"LiteRT cannot load {name}: {e}") from None
        inp, out = self._interp.get_input_details()[0], self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._describe_io(name, inp["dtype"], out["dtype"], inp["shape"], inp["quantization"], out["shape"],
                          out["quantization"])

    def _invoke(self, x):
        try:
            self._interp.set_tensor(self._in_index, x)
            self._interp.invoke()
        except (ValueError, RuntimeError) as e:  # a model LiteRT loaded but cannot run ("tensor lacks data")
            raise ModelError(f"LiteRT cannot run the model: {e}") from None
        return self._interp.get_tensor(self._out_index)


INT8_RUNTIMES: dict[str, type[Int8Runner]] = {"tflm": TflmRunner, "litert": LiteRtRunner}


def open_int8_runner(model: str | Path | bytes, runtime: str = "tflm", **kwargs) -> Int8Runner:
    """The INT8 runner of `runtime` ("tflm" or "litert") for a .tflite path or bytes."""
    if runtime not in INT8_RUNTIMES:
        raise ConfigError(f"INT8 runtime {runtime!r}, expected one of {', '.join(INT8_RUNTIMES)}")
    return INT8_RUNTIMES[runtime](model, **kwargs)


# ------------------------------------------------------------------------------------- tflite-micro arena

def tflm_interpreter(model: bytes, arena_size: int, name: str = "the model"):
    """tflite-micro's interpreter for model bytes; ModelError when it cannot allocate or load."""
    try:
        from tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelError(f"tflite-micro is not installed ({e}); pip install tflite-micro") from None
    try:
        with silence_fds():
            return runtime.Interpreter.from_bytes(model, arena_size=int(arena_size))
    except (RuntimeError, ValueError) as e:  # tflite-micro raises plain RuntimeError/ValueError
        raise ModelError(f"tflite-micro cannot load {name} with a {int(arena_size)} B arena: {e}") from None


def tflm_allocates(model: bytes, arena_size: int) -> bool:
    """Whether tflite-micro allocates the model in arena_size bytes (probed in an isolated child: some kernels
    crash the process on a too-small arena instead of failing)."""
    try:
        return isolated(_allocates, model, int(arena_size))
    except ModelError:
        return False


def _allocates(model: bytes, arena_size: int) -> bool:
    try:
        tflm_interpreter(model, arena_size)
        return True
    except ModelError:
        return False


def tflm_recorded_arena(model: bytes, arena_size: int = TFLM_ARENA_BYTES) -> int | None:
    """tflite-micro's own account of its arena use ('Arena allocation total N bytes'), or None."""
    try:
        return isolated(_recorded_arena, model, int(arena_size))
    except ModelError:
        return None


def _recorded_arena(model: bytes, arena_size: int) -> int | None:
    import re
    import tempfile

    with tempfile.TemporaryFile() as f:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                from tflite_micro import runtime
                runtime.Interpreter.from_bytes(model, arena_size=int(arena_size)).print_allocations()
            except (RuntimeError, ValueError):
                return None
            finally:
                with contextlib.suppress(OSError, AttributeError):
                    import ctypes
                    ctypes.CDLL(None).fflush(None)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        f.seek(0)
        m = re.search(rb"Arena allocation total (\d+) bytes", f.read())
    return int(m.group(1)) if m else None


def smallest_arena(model: str | Path | bytes, start: int = 64 * 1024, limit: int = 64 * 1024 * 1024) -> int:
    """Smallest tflite-micro arena (bytes, multiple of 16) in which the model allocates (allocating is monotonic
    in the arena size). Each probe builds an interpreter in a forked child (~0.1-0.2 s on a many-op graph), so
    the search takes few: seeded at tflite-micro's recorded total, which is the answer for most graphs (then one
    probe 16 B below settles it); else the bracket is galloped to (steps doubling down from the seed, or up
    from a quarter of it: the planner's temporary scratch, not in the total, is what many-op graphs such as an
    unrolled GRU need on top) and bisected. Without a recorded total: doubling from `start`, then bisection."""
    data, name = _model_bytes(model)

    def up(n):
        return (int(n) + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN

    total = tflm_recorded_arena(data)
    seed = up(total) if total else None
    if seed is None:                        # lo: largest known failing size (0: none)
        lo, hi = 0, up(start)
        while not tflm_allocates(data, hi):
            if hi >= limit:
                raise ExportError(f"tflite-micro cannot allocate {name} even with a {limit} B arena")
            lo, hi = hi, min(up(limit), hi * 2)
    elif tflm_allocates(data, seed):
        hi, step = seed, ARENA_ALIGN
        lo = hi - step
        while lo > 0 and tflm_allocates(data, lo):
            hi, step = lo, step * 2
            lo = max(0, hi - step)
    else:
        lo, step = seed, max(ARENA_ALIGN, up(seed // 4))
        while True:
            hi = min(up(limit), lo + step)
            if tflm_allocates(data, hi):
                break
            if hi >= limit:
                raise ExportError(f"tflite-micro cannot allocate {name} even with a {limit} B arena")
            lo, step = hi, step * 2
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= lo:
            break
        if tflm_allocates(data, mid):
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------------------------------------ ONNX Runtime

def ort_session(model: str | Path | bytes, threads: int = 1):
    """An ONNX Runtime CPU session (one inter-op thread, `threads` intra-op); ModelError if it cannot load."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = model if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        name = "the model" if isinstance(model, (bytes, bytearray)) else str(model)
        raise ModelError(f"ONNX Runtime cannot load {name}: {e}") from None


class OrtRunner:
    """An ONNX model (float model.onnx or INT8 QDQ model_int8.onnx) on model-unit windows."""

    runtime = "onnxruntime"

    def __init__(self, model: str | Path | bytes, threads: int = 1):
        self.session = ort_session(model, threads)
        self._input = self.session.get_inputs()[0]
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in self._input.shape)

    def run_one(self, x_model) -> np.ndarray:
        """Raw outputs (float64, flat) of one window in model units."""
        x = np.asarray(x_model, np.float32).reshape(self.input_shape)
        return np.asarray(self.session.run(None, {self._input.name: x})[0], np.float64).reshape(-1)

    def run(self, x_model, progress: Progress = None) -> np.ndarray:
        """Raw outputs [N, n_outputs] of windows [N, W] in model units."""
        out = []
        for i in range(len(x_model)):
            out.append(self.run_one(x_model[i]))
            if progress is not None:
                progress()
        return np.stack(out)

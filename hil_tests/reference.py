"""References the device is compared with: INT8 (tflite-micro's interpreter: the golden outputs) and float
(the zoo's torch model named in the manifest). Heavy imports stay inside functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgedge.errors import ModelError

ARENA_BYTES = 16 * 1024 * 1024  # host-side interpreter: generous, the device's arena is checked elsewhere


class Int8Runner:
    """Runs a full-INT8 .tflite on int8 inputs, one window at a time."""

    def __init__(self, tflite_path: str | Path, runtime: str = "tflm"):
        self.path = Path(tflite_path)
        self.runtime = runtime
        if runtime == "tflm":
            from tflite_micro import runtime as tflm
            try:
                self._interp = tflm.Interpreter.from_file(str(self.path), arena_size=ARENA_BYTES)
            except Exception as e:  # tflite-micro raises plain RuntimeError/ValueError
                raise ModelError(f"tflite-micro cannot load {self.path}: {e}") from None
            inp = self._interp.get_input_details(0)
            out = self._interp.get_output_details(0)
            self.describe = "tflite-micro interpreter (INT8 reference kernels)"
        elif runtime == "litert":
            from ai_edge_litert.interpreter import Interpreter
            try:
                self._interp = Interpreter(model_path=str(self.path), num_threads=1)
                self._interp.allocate_tensors()
            except Exception as e:
                raise ModelError(f"LiteRT cannot load {self.path}: {e}") from None
            inp = self._interp.get_input_details()[0]
            out = self._interp.get_output_details()[0]
            self._in_index, self._out_index = inp["index"], out["index"]
            self.describe = "LiteRT interpreter"
        else:
            raise ModelError(f"INT8 runtime {runtime!r}, expected 'tflm' or 'litert'")
        if np.dtype(inp["dtype"]) != np.int8 or np.dtype(out["dtype"]) != np.int8:
            raise ModelError(f"{self.path}: input {np.dtype(inp['dtype'])} / output {np.dtype(out['dtype'])}, "
                             "expected int8 in and out (full-INT8 model)")
        self.input_shape = tuple(int(v) for v in inp["shape"])
        self.input_size = int(np.prod(self.input_shape))
        qp = inp["quantization_parameters"]
        self.input_scale = float(np.ravel(qp["scales"])[0]) if len(np.ravel(qp["scales"])) else 0.0
        self.input_zero_point = int(np.ravel(qp["zero_points"])[0]) if len(np.ravel(qp["zero_points"])) else 0
        self.n_outputs = int(np.prod(out["shape"]))

    def run_one(self, q: np.ndarray) -> np.ndarray:
        x = np.asarray(q, np.int8).reshape(self.input_shape)
        if self.runtime == "tflm":
            self._interp.set_input(x, 0)
            self._interp.invoke()
            return np.array(self._interp.get_output(0), np.int8).reshape(-1)
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        return np.array(self._interp.get_tensor(self._out_index), np.int8).reshape(-1)

    def run(self, q: np.ndarray, progress=None) -> np.ndarray:
        q = np.asarray(q, np.int8)
        out = np.empty((q.shape[0], self.n_outputs), np.int8)
        for i in range(q.shape[0]):
            out[i] = self.run_one(q[i])
            if progress is not None:
                progress()
        return out


def float_reference(model_name: str, x_model: np.ndarray, batch: int = 32,
                    checkpoint: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """Raw outputs (logits / regression) of the zoo's float model on [N, W] inputs in model units.
    Raises ModelError when the zoo has no such model or no weights for it."""
    from ecgedge.errors import ConfigError
    try:
        import torch
        from ecgedge.models.zoo import is_demo, load_model
    except ImportError as e:
        raise ModelError(f"float reference needs torch and ecgedge.models: {e}") from None
    try:
        model, spec, meta = load_model(model_name, checkpoint=checkpoint)
    except ConfigError as e:
        raise ModelError(f"no float reference for {model_name!r}: {e}") from None
    outs = []
    with torch.no_grad():
        for i in range(0, len(x_model), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x_model[i:i + batch], np.float32)).unsqueeze(1)
            outs.append(model(xb).cpu().numpy().astype(np.float64))
    info = {"source": f"torch ecgedge.models.zoo.load_model({model_name!r}"
                      + (f", checkpoint={str(checkpoint)!r})" if checkpoint else ") (shipped weights)"),
            "demo": bool(is_demo(meta)), "outputs": spec.output_names}
    return np.concatenate(outs, axis=0), info


def onnx_float_reference(onnx_path: str | Path, x_model: np.ndarray) -> np.ndarray:
    """Raw outputs of the package's float ONNX model (the pruned, fine-tuned float model the INT8 model
    was quantised from) on [N, W] inputs in model units."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"onnxruntime cannot load {onnx_path}: {e}") from None
    inp = sess.get_inputs()[0]
    rank = len(inp.shape)
    outs = []
    for i in range(len(x_model)):
        x = np.asarray(x_model[i], np.float32).reshape((1,) * (rank - 1) + (-1,))
        outs.append(np.asarray(sess.run(None, {inp.name: x})[0], np.float64).reshape(-1))
    return np.stack(outs)

"""Inference engines over a package's model: LiteRT INT8 (default), ONNX Runtime, and shared quantisation.

x_model = filtered µV / scale_uv;  q = clip(round(x_model / tflite_scale) + zp, -128, 127).
Outputs are dequantised with the manifest's per-output scales; logits become probabilities (sigmoid)
and a decision (probability >= threshold); regressions keep their value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, ModelError


def quantize_window(filtered_uv: np.ndarray, input_contract: dict) -> np.ndarray:
    """INT8 model input (flat, int8) for one filtered window in µV."""
    x = np.asarray(filtered_uv, np.float64) / float(input_contract.get("scale_uv", 1000.0))
    scale = float(input_contract["tflite_scale"])
    zp = int(input_contract.get("tflite_zero_point", 0))
    return np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)


def interpret_outputs(raw_int8, outputs, package_outputs=None, task: str | None = None) -> dict:
    """scores / decisions from raw INT8 outputs (device RESULT or LiteRT) using the manifest outputs."""
    raw = [int(v) for v in raw_int8]
    values = {}
    for o in outputs:
        q = raw[o.index]
        values[o.name] = (q - int(o.tflite_zero_point or 0)) * float(o.tflite_scale or 1.0)
    return interpret_values(values, outputs, raw, task)


def interpret_values(values: dict, outputs, raw=None, task: str | None = None) -> dict:
    """A multiclass model's logits (manifest "task": "multiclass") become softmax probabilities and one
    decision, the most probable class; other logits each get a sigmoid and their own threshold."""
    scores, decisions = {}, {}
    logits = [o for o in outputs if o.kind == "logit"]
    if task == "multiclass" and logits:
        z = np.array([float(values[o.name]) for o in logits])
        p = np.exp(z - z.max())
        p /= p.sum()
        best = int(np.argmax(p))
        for i, o in enumerate(logits):
            scores[o.name] = float(p[i])
            decisions[o.name] = i == best
    for o in outputs:
        v = float(values[o.name])
        if o.kind == "logit" and o.name in scores:
            continue
        if o.kind == "logit":
            p = 1.0 / (1.0 + math.exp(-v))
            scores[o.name] = p
            decisions[o.name] = bool(p >= (o.threshold if o.threshold is not None else 0.5))
        else:
            scores[o.name] = v
    out = {"scores": scores, "decisions": decisions, "values": {k: float(v) for k, v in values.items()}}
    if raw is not None:
        out["raw_int8"] = list(raw)
    return out


class LiteRtEngine:
    """INT8 .tflite through ai_edge_litert (one thread)."""

    name = "litert"

    def __init__(self, tflite_path: str | Path, num_threads: int = 1, model_content: bytes | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelError(f"ai-edge-litert is not installed ({e}); pip install ai-edge-litert") from None
        try:
            # model_content: bytes already verified, held in memory (a file LiteRT maps can change under it)
            self.interp = (Interpreter(model_content=model_content, num_threads=num_threads) if model_content
                           is not None else Interpreter(model_path=str(tflite_path), num_threads=num_threads))
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"LiteRT cannot load {tflite_path}: {e}") from None
        self.input = self.interp.get_input_details()[0]
        self.output = self.interp.get_output_details()[0]
        if self.input["dtype"] != np.int8:
            raise ModelError(f"{tflite_path}: input dtype {self.input['dtype']}, expected int8 (full-INT8 model)")
        self.input_size = int(np.prod(self.input["shape"]))

    def run_int8(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, np.int8)
        if q.size != self.input_size:
            raise ModelError(f"model input of {q.size} values, expected {self.input_size}")
        try:
            self.interp.set_tensor(self.input["index"], q.reshape(self.input["shape"]))
            self.interp.invoke()
        except (ValueError, RuntimeError) as e:  # a model LiteRT loaded but cannot run ("tensor lacks data")
            raise ModelError(f"LiteRT cannot run the model: {e}") from None
        return np.asarray(self.interp.get_tensor(self.output["index"])).reshape(-1).astype(np.int8)


class OrtEngine:
    """ONNX Runtime on model_int8.onnx or model.onnx (float input in model units)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, model_content: bytes | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(model_content if model_content is not None else str(onnx_path), so,
                                             providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load {onnx_path}: {e}") from None
        self.inp = self.sess.get_inputs()[0]

    def run_float(self, x_model: np.ndarray) -> np.ndarray:
        shape = [d if isinstance(d, int) else 1 for d in self.inp.shape]
        x = np.asarray(x_model, np.float32).reshape(shape)
        return np.asarray(self.sess.run(None, {self.inp.name: x})[0], np.float64).reshape(-1)


def _verified_bytes(package, name: str) -> bytes:
    """The artefact's bytes, read once and checked against the manifest's SHA-256: the engine runs exactly the
    bytes that were verified, whatever happens to the file afterwards."""
    import hashlib

    from ecgedge.errors import PackageError

    data = package.file(name).read_bytes()
    want = package.manifest.get("artifacts", {}).get(name)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise PackageError(f"artefact {name} changed since the package was verified (sha256 differs): refusing it")
    return data


class HostInference:
    """Runs one filtered window (µV) through the package's model and returns scores/decisions."""

    def __init__(self, package, engine: str = "litert"):
        self.package = package
        self.engine_name = engine
        if engine == "litert":
            if not package.has("model_int8.tflite"):
                raise ConfigError(f"{package.path} has no model_int8.tflite for --engine litert")
            self.engine = LiteRtEngine(package.file("model_int8.tflite"),
                                       model_content=_verified_bytes(package, "model_int8.tflite"))
        elif engine in ("onnxruntime", "ort"):
            name = "model_int8.onnx" if package.has("model_int8.onnx") else "model.onnx"
            if not package.has(name):
                raise ConfigError(f"{package.path} has neither model_int8.onnx nor model.onnx for --engine onnxruntime")
            self.engine = OrtEngine(package.file(name), model_content=_verified_bytes(package, name))
        else:
            raise ConfigError(f"engine {engine!r}: expected litert or onnxruntime")

    def infer(self, filtered_uv: np.ndarray) -> dict:
        if isinstance(self.engine, LiteRtEngine):
            q = quantize_window(filtered_uv, self.package.input)
            return interpret_outputs(self.engine.run_int8(q), self.package.outputs,
                                     task=self.package.manifest.get("task"))
        x = np.asarray(filtered_uv, np.float64) / self.package.scale_uv
        y = self.engine.run_float(x)
        return interpret_values({o.name: y[o.index] for o in self.package.outputs}, self.package.outputs,
                                task=self.package.manifest.get("task"))

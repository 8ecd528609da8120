"""Inference on the host over a package's model: LiteRT INT8 (default) or ONNX Runtime.

The window rule, the runners and the interpretation of outputs are the contract's
(ecgedge.contract.quantization, ecgedge.contract.runners); this module only picks the engine a
session asked for and applies them to one filtered window.
"""

from __future__ import annotations

import numpy as np

from ecgedge.contract.quantization import interpret_int8, interpret_values, model_units, window_int8
from ecgedge.contract.runners import LiteRtRunner, OrtRunner
from ecgedge.errors import ConfigError

ENGINES = {"litert": "model_int8.tflite", "onnxruntime": ("model_int8.onnx", "model.onnx"),
           "ort": ("model_int8.onnx", "model.onnx")}


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
        if engine not in ENGINES:
            raise ConfigError(f"engine {engine!r}: expected litert or onnxruntime")
        if engine == "litert":
            if not package.has("model_int8.tflite"):
                raise ConfigError(f"{package.path} has no model_int8.tflite for --engine litert")
            self.engine = LiteRtRunner(_verified_bytes(package, "model_int8.tflite"))
        else:
            name = next((n for n in ENGINES[engine] if package.has(n)), None)
            if name is None:
                raise ConfigError(f"{package.path} has neither model_int8.onnx nor model.onnx for --engine onnxruntime")
            self.engine = OrtRunner(_verified_bytes(package, name))

    def infer(self, filtered_uv: np.ndarray) -> dict:
        pkg = self.package
        if isinstance(self.engine, LiteRtRunner):
            return interpret_int8(self.engine.run_one(window_int8(filtered_uv, pkg.input)), pkg.outputs, pkg.task)
        y = self.engine.run_one(model_units(filtered_uv, pkg.input))
        return interpret_values({o.name: y[o.index] for o in pkg.outputs}, pkg.outputs, pkg.task)

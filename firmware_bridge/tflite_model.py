"""Minimal read-only view of a .tflite flatbuffer: tensors (shape, type, quantisation, constant data)
and operators (builtin name, inputs, outputs, options), via LiteRT's generated schema module."""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgedge.errors import FirmwareError

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
               9: "int8", 10: "float64"}


def _schema():
    for name in ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated",
                 "tflite_micro.tensorflow.lite.micro.python.schema_py_generated"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise FirmwareError("no TFLite flatbuffer schema module found: install ai-edge-litert or tensorflow")


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    scale: np.ndarray          # float32 [n] (empty when not quantised)
    zero_point: np.ndarray     # int64 [n]
    quantized_dimension: int
    data: np.ndarray | None    # constant data, shaped; None for activations
    is_variable: bool = False  # state kept by the interpreter between invocations (LSTM hidden/cell state)
    float_view: bool = False   # a float32 tensor of dequantised int8 values, lowered as those int8 values

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.type_name).itemsize

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Operator:
    index: int
    name: str                      # builtin op name, e.g. "CONV_2D"
    inputs: list[int]              # -1 = optional input left out
    outputs: list[int]
    options: dict = field(default_factory=dict)
    intermediates: list[int] = field(default_factory=list)


@dataclass
class TfliteModel:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    sha256: str
    size: int

    def op_names(self) -> list[str]:
        return sorted({op.name for op in self.operators})


def load_model(source: bytes | str | Path) -> TfliteModel:
    """Parse a .tflite (bytes or path). Only single-subgraph models are supported."""
    raw = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise FirmwareError(f"not a TFLite flatbuffer (identifier {raw[4:8]!r}, expected b'TFL3')")
    s = _schema()
    model = s.ModelT.InitFromPackedBuf(raw, 0)
    if len(model.subgraphs) != 1:
        raise FirmwareError(f"model has {len(model.subgraphs)} subgraphs; only 1 is supported")
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tensors):
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        tname = _TYPE_NAMES.get(t.type, f"type{t.type}")
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        qdim = int(q.quantizedDimension) if q is not None else 0
        data = None
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buf is not None:
            blob = None
            if buf.data is not None and len(buf.data):
                blob = np.asarray(buf.data, np.uint8).tobytes()
            elif buf.offset and buf.size:
                blob = raw[buf.offset: buf.offset + buf.size]
            if blob is not None:
                if t.type not in _DTYPES:
                    raise FirmwareError(f"tensor {i} ({t.name!r}): constant of type {tname} unsupported")
                data = np.frombuffer(blob, _DTYPES[t.type]).reshape(shape).copy()
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, tname, scale, zp, qdim, data, bool(t.isVariable)))
    ops = []
    for i, op in enumerate(sg.operators):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode
            name = f"CUSTOM:{cc}"
        opts = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        opts = {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
        ops.append(Operator(i, name, [int(x) for x in op.inputs], [int(x) for x in op.outputs], opts,
                            [int(x) for x in (op.intermediates if op.intermediates is not None else [])]))
    return TfliteModel(tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs],
                       hashlib.sha256(raw).hexdigest(), len(raw))

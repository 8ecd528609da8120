"""Keras -> full-INT8 TFLite (int8 in/out, per-channel weights, per-tensor activations), and op checks.

Calibrator ranges: the TFLite converter is run in calibrate-only mode, which returns the float model
with a (min, max) recorded on every activation tensor (min/max over the representative set). For a
calibrator other than minmax, those recorded ranges are REPLACED by the calibrator's ranges (computed
from the same tensors' values on the representative set), and then the model is quantised by the
converter's own MLIR quantiser (`mlir_quantize`) — the same step `TFLiteConverter.convert()` runs after
calibration. So each calibrator's ranges are exactly what ends up as scale/zero point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from ecgedge.errors import ExportError

# The builtin ops a full-INT8 model may contain: those tflite-micro runs with int8 tensors and the road's
# converters emit (QUANTIZE only as an int8 -> int8 requantisation). Which of them our C engine runs is
# firmware_bridge.ops.supported_ops(), reported per layer by edge-analyze and per package.
ALLOWED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "MEAN", "SUM", "REDUCE_MAX",
    "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "LOGISTIC", "TANH",
    "HARD_SWISH", "RELU", "RELU6", "LEAKY_RELU", "SOFTMAX", "CONCATENATION", "SPLIT", "SPLIT_V", "STRIDED_SLICE",
    "SLICE", "MAXIMUM", "MINIMUM", "QUANTIZE", "DEQUANTIZE",
})
INT_TYPES = {"INT8", "INT32"}  # int32 only for biases and shape/axis constants


def _quiet_tf():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    return tf


def _convert(conv) -> bytes:
    """Run a converter with TF's stdout chatter (saved-model listings) silenced; errors still raise."""
    from ecgedge.contract.runners import silence_fds
    try:
        with silence_fds():
            return bytes(conv.convert())
    except Exception as e:
        raise ExportError(f"TFLite conversion failed: {type(e).__name__}: {str(e)[:2000]}") from e


def _converter(keras_model):
    """A TFLite converter of the Keras model's forward pass, frozen to a graph of constants.

    Not `from_keras_model`: for a Keras 3 model that one writes a SavedModel first (walking every layer's
    trackables: 3.1 s of the unrolled CRNN's 10-s analysis, 1.3 s more than this route), and the graph it
    converts is the same one: same ops (`schedule` orders them), same quantisation parameters, same
    outputs (test). The input keeps the Keras input's name; its batch is 1 (what every runner feeds; a free
    batch would put SHAPE / GATHER / PACK ops into every reshape)."""
    tf = _quiet_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    inp = keras_model.inputs[0]
    spec = tf.TensorSpec([1, *inp.shape[1:]], tf.float32, name=inp.name)
    forward = tf.function(lambda x: keras_model(x, training=False)).get_concrete_function(spec)
    absl = logging.getLogger("absl")    # its advice to pass trackable_obj (that is the SavedModel route)
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(forward)])
    finally:
        absl.setLevel(level)


def convert_float(keras_model) -> bytes:
    """Float32 TFLite of the Keras model."""
    return _convert(_converter(keras_model))


def _rep_gen(windows: np.ndarray) -> Callable[[], Iterable[list[np.ndarray]]]:
    def gen():
        for w in windows:
            yield [np.asarray(w, np.float32).reshape(1, 1, -1, 1)]
    return gen


def calibrate_only(keras_model, windows: np.ndarray) -> bytes:
    """Float TFLite with min/max statistics recorded on each activation tensor (not yet quantised)."""
    tf = _quiet_tf()
    conv = _converter(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _rep_gen(windows)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    conv._experimental_calibrate_only = True  # noqa: SLF001 - the converter's own calibrate/quantise split
    return _convert(conv)


def calibrated_ranges(calibrated: bytes) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} recorded by calibration."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    m = fbu.convert_bytearray_to_object(bytearray(calibrated))
    out = {}
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1:
            out[t.name.decode()] = (float(q.min[0]), float(q.max[0]))
    return out


def input_tensor_name(model: bytes) -> str:
    """Name of the (first) input tensor of a TFLite model."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    m = fbu.convert_bytearray_to_object(bytearray(model))
    g = m.subgraphs[0]
    return g.tensors[g.inputs[0]].name.decode()


def override_ranges(calibrated: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    """Replace recorded (min, max) of the named tensors; unknown names are an error."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    m = fbu.convert_bytearray_to_object(bytearray(calibrated))
    by_name = {t.name.decode(): t for t in m.subgraphs[0].tensors}
    for name, (lo, hi) in ranges.items():
        t = by_name.get(name)
        if t is None or t.quantization is None or t.quantization.min is None:
            raise ExportError(f"calibrator range for tensor {name!r}, which has no calibration statistics")
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise ExportError(f"calibrator range for tensor {name!r} is invalid: ({lo}, {hi})")
        t.quantization.min = [float(min(lo, 0.0))]
        t.quantization.max = [float(max(hi, 0.0))]
    return bytes(fbu.convert_object_to_bytearray(m))


def quantize_calibrated(calibrated: bytes) -> bytes:
    """Full INT8 (int8 input and output) from a calibrated float model."""
    tf = _quiet_tf()
    from tensorflow.lite.python.convert import mlir_quantize
    from ecgedge.contract.runners import silence_fds
    try:
        with silence_fds():
            return bytes(mlir_quantize(calibrated, False, input_data_type=tf.int8, output_data_type=tf.int8))
    except Exception as e:
        raise ExportError(f"INT8 quantisation failed: {type(e).__name__}: {str(e)[:2000]}") from e


def convert_int8(keras_model, windows: np.ndarray, ranges: dict[str, tuple[float, float]] | None = None) -> bytes:
    """Full-INT8 TFLite; `ranges` (tensor name -> (min, max)) replace the min/max calibration."""
    calibrated = calibrate_only(keras_model, windows)
    if ranges:
        calibrated = override_ranges(calibrated, ranges)
    tfl = quantize_calibrated(calibrated)
    check_int8_only(tfl)
    return tfl


# --------------------------------------------------------------------------------------------- checks

def op_list(tflite: bytes) -> list[str]:
    """Builtin op names in execution order."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    m = fbu.convert_bytearray_to_object(bytearray(tflite))
    names = []
    for op in m.subgraphs[0].operators:
        code = m.operatorCodes[op.opcodeIndex]
        names.append(fbu.opcode_to_name(m, op.opcodeIndex) if code is not None else "?")
    return names


def tensor_types(tflite: bytes) -> dict[str, str]:
    from tensorflow.lite.tools import flatbuffer_utils as fbu
    m = fbu.convert_bytearray_to_object(bytearray(tflite))
    return {t.name.decode(): fbu.type_to_name(t.type) for t in m.subgraphs[0].tensors}


def check_int8_only(tflite: bytes, transposes_allowed: int = 0) -> dict:
    """Raise ExportError if an op is outside ALLOWED_OPS, a float tensor remains, or the model has more
    TRANSPOSEs than `transposes_allowed` (those the source model itself asks for).

    Returns {"ops": {name: count}, "n_ops": int}.
    """
    ops = op_list(tflite)
    if len(ops) == 0:
        raise ExportError("the TFLite model has no operators")
    if ops.count("TRANSPOSE") > transposes_allowed:
        raise ExportError(f"the TFLite model contains {ops.count('TRANSPOSE')} TRANSPOSE op(s); "
                          f"the export must produce {transposes_allowed or 'none'}")
    bad = sorted({o for o in ops if o not in ALLOWED_OPS and o != "TRANSPOSE"})
    if bad:
        raise ExportError(f"the TFLite model contains ops outside the allowed INT8 set: {bad} "
                          f"(allowed: {sorted(ALLOWED_OPS)})")
    types = tensor_types(tflite)
    floats = sorted(n for n, t in types.items() if t not in INT_TYPES)
    if floats:
        raise ExportError(f"the TFLite model is not full INT8: {len(floats)} non-integer tensor(s), "
                          f"e.g. {floats[:3]} ({types[floats[0]]})")
    # QUANTIZE/DEQUANTIZE at float edges cannot remain once every tensor is integer; a QUANTIZE between
    # two int8 tensors is a requantisation (e.g. before a CONCATENATION), which is fine.
    if "DEQUANTIZE" in ops:
        raise ExportError("the TFLite model contains DEQUANTIZE although input and output are int8")
    counts: dict[str, int] = {}
    for o in ops:
        counts[o] = counts.get(o, 0) + 1
    return {"ops": dict(sorted(counts.items())), "n_ops": len(ops)}


def io_quant(tflite: bytes) -> dict:
    """Input/output quantisation parameters and shapes of an INT8 TFLite."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=tflite)
    i = it.get_input_details()[0]
    outs = it.get_output_details()
    return {
        "input": {"scale": float(i["quantization"][0]), "zero_point": int(i["quantization"][1]),
                  "shape": [int(s) for s in i["shape"]], "dtype": np.dtype(i["dtype"]).name},
        "outputs": [{"scale": float(o["quantization"][0]), "zero_point": int(o["quantization"][1]),
                     "shape": [int(s) for s in o["shape"]], "dtype": np.dtype(o["dtype"]).name} for o in outs],
    }


def schedule(tflite: bytes, layer_order: dict[str, int]) -> bytes:
    """The same model with its operators in the source model's execution order (a topological order that
    follows `layer_order`, Keras layer name -> position in the torch graph): Keras runs a functional
    model by depth, which computes a residual block's shortcut first and keeps it alive through the whole
    block (pocket_k unpruned: tflite-micro arena 247,440 B in depth order, 227,296 B in torch order)."""
    import heapq

    from tensorflow.lite.tools import flatbuffer_utils as fbu

    from ecgedge.quantize.validate import layer_name
    m = fbu.convert_bytearray_to_object(bytearray(tflite))
    g = m.subgraphs[0]
    ops = list(g.operators)
    producer = {}
    for i, op in enumerate(ops):
        for t in op.outputs:
            producer[int(t)] = i

    def rank(i: int) -> int:
        names = [g.tensors[int(t)].name.decode() for t in ops[i].outputs]
        pos = [layer_order.get(layer_name(part), -1) for n in names for part in n.split(";")]
        return max(pos, default=-1)

    deps = [{producer[int(t)] for t in op.inputs if int(t) in producer} for op in ops]
    users: dict[int, list[int]] = {i: [] for i in range(len(ops))}
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ranks = [rank(i) for i in range(len(ops))]
    for i in range(len(ops)):            # an op the converter made up runs right after what it needs
        if ranks[i] < 0:
            ranks[i] = max((ranks[j] for j in deps[i]), default=0)
    waiting = [len(d) for d in deps]
    ready = [(ranks[i], i) for i in range(len(ops)) if waiting[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (ranks[u], u))
    if len(order) != len(ops):
        raise ExportError("the TFLite model's operators do not form a graph (a cycle?)")
    if order == list(range(len(ops))):
        return tflite
    g.operators = [ops[i] for i in order]
    return bytes(fbu.convert_object_to_bytearray(m))

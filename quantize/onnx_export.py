"""ONNX export: float model (always) and, for Linux targets, an INT8 QDQ model (onnxruntime)
whose activation ranges are the chosen calibrator's (TensorQuantOverrides)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from ecgedge.errors import ExportError

INPUT_NAME = "ecg"
OUTPUT_NAME = "outputs"


def export_float(model, window_samples: int, path: Path) -> None:
    """Single-file float ONNX (opset 17), input [1, 1, W] in model units."""
    import torch
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), torch.zeros(1, 1, window_samples), buf, dynamo=False, opset_version=17,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    Path(path).write_bytes(buf.getvalue())


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Raw outputs of an ONNX model on windows x [N, W] (model units): the contract's ONNX Runtime runner."""
    from ecgedge.contract.runners import OrtRunner
    return OrtRunner(Path(path)).run(x)


def latency_ms(path: Path, x: np.ndarray, repeats: int = 30) -> float:
    """Median one-thread latency (ms) of one window on this machine, after warm-up."""
    from ecgedge.contract.runners import ort_session
    sess = ort_session(Path(path))
    feed = {INPUT_NAME: x[:1, None, :].astype(np.float32)}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def activation_ranges(float_path: Path, x: np.ndarray, calibrator) -> dict[str, tuple[float, float]]:
    """Feed every float activation tensor of the ONNX model (over windows x) to `calibrator`."""
    import onnx
    m = onnx.load(str(float_path))
    m = onnx.shape_inference.infer_shapes(m)
    float_names = {v.name for v in m.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    existing = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for name in n.output:
            if name in float_names and name not in existing:
                m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                existing.add(name)
    from ecgedge.contract.runners import ort_session
    sess = ort_session(m.SerializeToString())
    out_names = [o.name for o in sess.get_outputs()]
    for i in range(len(x)):
        xb = x[i:i + 1, None, :].astype(np.float32)
        calibrator.collect(INPUT_NAME, xb)
        for name, val in zip(out_names, sess.run(None, {INPUT_NAME: xb})):
            if np.asarray(val).dtype == np.float32:
                calibrator.collect(name, val)
    return calibrator.compute_ranges()


class _Reader:
    def __init__(self, x: np.ndarray):
        self.x, self.i = x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {INPUT_NAME: self.x[self.i - 1:self.i, None, :].astype(np.float32)}

    def rewind(self):
        self.i = 0


def export_int8(float_path: Path, out_path: Path, x_calib: np.ndarray,
                ranges: dict[str, tuple[float, float]] | None) -> None:
    """INT8 QDQ ONNX: per-channel int8 weights, per-tensor int8 activations; `ranges` override the
    min/max calibration of the named activation tensors."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if ranges:
        extra["TensorQuantOverrides"] = {
            name: [{"rmin": np.array(lo, np.float32), "rmax": np.array(hi, np.float32)}]
            for name, (lo, hi) in ranges.items()}
    try:
        quantize_static(str(float_path), str(out_path), _Reader(x_calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    except Exception as e:  # onnxruntime raises plain exceptions
        raise ExportError(f"ONNX INT8 quantisation failed: {type(e).__name__}: {e}") from e

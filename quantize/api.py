"""The Python API for notebooks: `from ecgedge import analyze, export`.

    import ecgedge
    report = ecgedge.analyze("my_model.pt2", target="cortex-m7", contract="my_model.toml")
    pkg = ecgedge.export(model, "my_model.toml", "cortex-m7", data="records/")   # model: nn.Module or a path
    pkg.path, pkg.report["agreement_int8"], pkg.run(windows)                    # windows [N, W] model units
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def analyze(model, target: str | None = None, contract=None, all_targets: bool = False,
            targets_file: str | None = None) -> dict:
    """edge-analyze as a function: a zoo name, a .pt2 / .onnx / .tflite path, or a live nn.Module (with its
    contract) -> the analysis dict (model, macs, params, layers, targets, ...)."""
    from ecgedge.quantize.analyze import analyze as _analyze
    return _analyze(model, target=target, all_targets=all_targets, contract=contract, targets_file=targets_file)


@dataclass
class ExportedPackage:
    """A written package: its folder, its report, and its INT8 model runnable on windows."""

    path: Path
    report: dict
    _tflite: bytes | None = field(default=None, repr=False)

    def run(self, windows) -> np.ndarray:
        """The package's INT8 model (LiteRT) on windows [N, W] or [N, 1, W] in model units (filtered µV /
        scale_uv): dequantised raw outputs [N, n_outputs]."""
        from ecgedge.quantize.validate import run_int8
        if self._tflite is None:
            self._tflite = (Path(self.path) / "model_int8.tflite").read_bytes()
        x = np.asarray(windows, np.float32)
        x = x.reshape(x.shape[0], -1) if x.ndim == 3 else np.atleast_2d(x)
        return run_int8(self._tflite, x, "litert")[1]


def export(model_or_path, contract, target: str, data=None, out=None, **options) -> ExportedPackage:
    """edge-export as a function. `model_or_path`: a live nn.Module, a .pt2 / .onnx / full-INT8 .tflite path,
    or a zoo name (contract None). `options`: any ExportOptions field (calib_windows, val_windows,
    calibrator, latency_ms, seed, progress, ...)."""
    from ecgedge.models.specs import load_contract
    from ecgedge.quantize.pipeline import ExportOptions, export_package
    options.setdefault("progress", False)
    if isinstance(model_or_path, (str, Path)):
        opts = ExportOptions(model=str(model_or_path), target=target, contract=contract,
                             data=None if data is None else str(data), out=None if out is None else str(out), **options)
    else:
        spec = load_contract(contract)
        opts = ExportOptions(model=spec.name, target=target, contract=spec, module=model_or_path,
                             data=None if data is None else str(data), out=None if out is None else str(out), **options)
    path, report = export_package(opts)
    return ExportedPackage(Path(path), report)

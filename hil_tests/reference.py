"""The float references the device is compared with: the zoo's torch model named in the manifest, and the
package's float ONNX model. (The INT8 reference, tflite-micro's golden outputs, is the contract's runner:
ecgedge.contract.runners.) Heavy imports stay inside functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgedge.errors import ModelError


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
    from ecgedge.contract.runners import OrtRunner

    return OrtRunner(onnx_path).run(x_model)

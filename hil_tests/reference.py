"""The float references the device is compared with: the zoo's torch model named in the manifest, and the
package's float ONNX model. (The INT8 reference, tflite-micro's golden outputs, is the contract's runner:
ecgedge.contract.runners.) Heavy imports stay inside functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgedge.errors import ModelError


def float_reference(model_name: str, x_model: np.ndarray, batch: int = 32,
                    checkpoint: str | Path | None = None, manifest: dict | None = None) -> tuple[np.ndarray, dict]:
    """Raw outputs (logits / regression) of the zoo's float model on [N, W] inputs in model units, or of the
    user's own float model when `checkpoint` is a .pt2 / .onnx file (a bring-your-own-model package; its
    `manifest` gives the input window and the outputs). Raises ModelError when the zoo has no such model or
    no weights for it."""
    from ecgedge.errors import ConfigError
    try:
        import torch  # noqa: F401  (the reference needs it; say so before loading anything)
        from ecgedge.models.zoo import is_demo, load_model
    except ImportError as e:
        raise ModelError(f"float reference needs torch and ecgedge.models: {e}") from None
    if checkpoint is not None and Path(checkpoint).suffix.lower() in USER_MODEL_SUFFIXES:
        return user_float_reference(checkpoint, manifest, x_model, batch)
    try:
        model, spec, meta = load_model(model_name, checkpoint=checkpoint)
    except ConfigError as e:
        raise ModelError(f"no float reference for {model_name!r}: {e}") from None
    info = {"source": f"torch ecgedge.models.zoo.load_model({model_name!r}"
                      + (f", checkpoint={str(checkpoint)!r})" if checkpoint else ") (shipped weights)"),
            "demo": bool(is_demo(meta)), "outputs": spec.output_names}
    return _torch_outputs(model, x_model, batch), info


def _torch_outputs(model, x_model: np.ndarray, batch: int) -> np.ndarray:
    import torch
    outs = []
    with torch.no_grad():
        for i in range(0, len(x_model), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x_model[i:i + batch], np.float32)).unsqueeze(1)
            outs.append(model(xb).cpu().numpy().astype(np.float64))
    return np.concatenate(outs, axis=0)


USER_MODEL_SUFFIXES = (".pt2", ".onnx")


def user_float_reference(path: str | Path, manifest: dict | None, x_model: np.ndarray,
                         batch: int = 32) -> tuple[np.ndarray, dict]:
    """Raw outputs of a user's float model file (what edge-export MODEL_FILE exported) on [N, W] inputs."""
    from ecgedge.models.specs import spec_from_dict
    from ecgedge.quantize.byom import load_user_model
    if manifest is None:
        raise ModelError(f"the float model {str(path)!r} needs the package's manifest (input window, outputs)")
    skip = {"index", "tflite_scale", "tflite_zero_point"}
    spec = spec_from_dict({"name": manifest["model"], "task": manifest.get("task") or "binary",
                           "input": {k: v for k, v in manifest["input"].items() if not k.startswith("tflite_")},
                           "outputs": [{k: v for k, v in o.items() if k not in skip} for o in manifest["outputs"]]},
                          source=f"{manifest['model']} manifest")
    model, _ = load_user_model(path, spec)
    return _torch_outputs(model, x_model, batch), {"source": f"the user's float model {str(path)!r}", "demo": False,
                                                   "outputs": spec.output_names}


def onnx_float_reference(onnx_path: str | Path, x_model: np.ndarray) -> np.ndarray:
    """Raw outputs of the package's float ONNX model (the pruned, fine-tuned float model the INT8 model
    was quantised from) on [N, W] inputs in model units."""
    from ecgedge.contract.runners import OrtRunner

    return OrtRunner(onnx_path).run(x_model)

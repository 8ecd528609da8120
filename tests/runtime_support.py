"""Shared helpers for the runtime/sim/package tests (loaded by path: tests run with --import-mode=importlib).

`test_package()` builds a small full-INT8 TFLite model with the pocket_k input contract (500 Hz, 5000
samples, 3 outputs: two logits and one regression) and writes a package folder (docs/architecture.md, "package").
Built once and cached under the temp dir, keyed by this file's content.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PREPROCESSING = {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}


def _filtered_windows(n: int, window: int = 5000, seed: int = 0) -> np.ndarray:
    from ecgedge.signals import EcgStream, StreamingFilter

    out = np.empty((n, 1, window, 1), np.float32)
    rng = np.random.default_rng(seed)
    for i in range(n):
        s = EcgStream(500, heart_rate=float(rng.uniform(55, 100)), k_mmol=float(rng.uniform(3.0, 7.5)),
                      noise=0.05, seed=seed * 100 + i)
        f = StreamingFilter(500, PREPROCESSING)
        x = f.process(s.read(window + 1000))[1000:]
        out[i, 0, :, 0] = (x / 1000.0).astype(np.float32)
    return out


def _build(out: Path) -> None:
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(1)
    inp = keras.Input((1, 5000, 1), batch_size=1)
    x = layers.Conv2D(8, (1, 16), strides=(1, 4), padding="same", activation="relu")(inp)
    x = layers.Conv2D(12, (1, 8), strides=(1, 4), padding="same", activation="relu")(x)
    x = layers.Conv2D(16, (1, 8), strides=(1, 4), padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    y = layers.Dense(3)(x)
    model = keras.Model(inp, y)
    rep = _filtered_windows(24)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(rep.shape[0]))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tfl = conv.convert()
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_int8.tflite").write_bytes(tfl)
    from ecgedge import DEMO_NOTICE
    from ecgedge.contract.metrics import sigmoid
    from ecgedge.contract.package import write_manifest
    from ecgedge.contract.runners import LiteRtRunner

    r = LiteRtRunner(tfl)
    (iscale, izp), (oscale, ozp) = (r.input_scale, r.input_zero_point), (r.output_scale, r.output_zero_point)
    # centre the logits' thresholds on the model's typical outputs so both decisions occur
    _, outs = r.run_model_units(rep.reshape(rep.shape[0], -1))
    med = np.median(outs, axis=0)
    thresholds = [float(sigmoid(med[j])) for j in range(2)]

    manifest = {
        "model": "pocket_k", "target": "cortex-m7", "demo": True,
        "notice": DEMO_NOTICE,
        "input": {"signal": "ecg", "lead": "I", "sampling_rate_hz": 500, "window_samples": 5000, "units": "uV",
                  "scale_uv": 1000.0, "preprocessing": PREPROCESSING, "tflite_scale": float(iscale),
                  "tflite_zero_point": int(izp), "tflite_shape": list(r.input_shape)},
        "outputs": [
            {"name": "p_k_gt_5_5", "kind": "logit", "threshold": thresholds[0], "index": 0,
             "tflite_scale": float(oscale), "tflite_zero_point": int(ozp)},
            {"name": "p_k_ge_6_0", "kind": "logit", "threshold": thresholds[1], "index": 1,
             "tflite_scale": float(oscale), "tflite_zero_point": int(ozp)},
            {"name": "k_mmol", "kind": "regression", "unit": "mmol/L", "index": 2,
             "tflite_scale": float(oscale), "tflite_zero_point": int(ozp)},
        ],
        "toolchain": {"tensorflow": tf.__version__}, "seed": 1,
    }
    write_manifest(out, manifest)


def build_test_package() -> Path:
    """Path of the cached test package (build on first use). Tests copy it before changing anything."""
    if os.environ.get("ECGEDGE_TEST_PACKAGE"):  # pre-built elsewhere (the arm64 tier has no tensorflow)
        return Path(os.environ["ECGEDGE_TEST_PACKAGE"])
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"ecgedge-runtime-testpkg-{key}"
    if not (out / "manifest.json").exists():
        tmp = Path(tempfile.mkdtemp(prefix="ecgedge-testpkg-"))
        _build(tmp / "pkg")
        try:
            os.replace(tmp / "pkg", out)
        except OSError:
            pass  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def copy_package(dst: Path) -> Path:
    shutil.copytree(build_test_package(), dst)
    return dst


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)

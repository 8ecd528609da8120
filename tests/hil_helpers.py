"""Shared by the HIL tests: a small pocket_k-shaped full-INT8 package built from a Keras model.

Outputs like pocket_k's (two logits, one K+ regression) so the bench computes every metric; window 500
samples (1 s at 500 Hz) so tflite-micro and QEMU run it fast.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

import ecgedge

WINDOW = 500
RATE = 500


def build_keras(seed: int = 0):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((1, WINDOW, 1), batch_size=1)
    x = layers.Conv2D(8, (1, 9), strides=(1, 2), padding="same")(inp)
    x = layers.Multiply()([x, layers.Activation("sigmoid")(x)])
    x = layers.Conv2D(16, (1, 9), strides=(1, 2), padding="same", groups=2)(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D((1, 2), strides=(1, 2))(x)
    x = layers.Conv2D(16, (1, 1))(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(12, activation="relu")(x)
    out = layers.Dense(3)(x)
    return keras.Model(inp, out)


def representative(n: int, seed: int = 1) -> np.ndarray:
    """Filtered-ECG-like windows in model units (mV), [n, 1, W, 1]."""
    from ecgedge.signals import make_windows

    d = make_windows(max(1, n // 4), 4, seed=seed, sampling_rate=RATE, window_s=WINDOW / RATE,
                     filters={"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0})
    x = (np.asarray(d["x"], np.float32)[:n] / 1000.0)
    return x.reshape(-1, 1, WINDOW, 1)


def convert(model, rep: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(rep.shape[0]))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def write_package(out: Path, tflite: bytes, model_name: str = "hil_testnet") -> Path:
    from ecgedge.contract.package import write_manifest
    from ecgedge.contract.runners import TflmRunner

    out.mkdir(parents=True, exist_ok=True)
    (out / "model_int8.tflite").write_bytes(tflite)
    r = TflmRunner(tflite)
    names = [("p_k_gt_5_5", "logit", 0.5), ("p_k_ge_6_0", "logit", 0.5), ("k_mmol", "regression", None)]
    manifest = {
        "model": model_name, "target": "cortex-m7", "demo": True, "notice": ecgedge.DEMO_NOTICE,
        "task": "binary+regression",
        "input": {"signal": "ecg", "lead": "I", "sampling_rate_hz": RATE, "window_samples": WINDOW,
                  "units": "uV", "scale_uv": 1000.0,
                  "preprocessing": {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0},
                  "tflite_scale": r.input_scale, "tflite_zero_point": r.input_zero_point,
                  "tflite_shape": list(r.input_shape)},
        "outputs": [{"name": n, "kind": k, "threshold": t, "index": j, "tflite_scale": r.output_scale,
                     "tflite_zero_point": r.output_zero_point} for j, (n, k, t) in enumerate(names)],
        "seed": 0,
    }
    write_manifest(out, manifest)
    return out


def _cached_package() -> Path:
    """The converted package, built once per machine and code version (conversion takes ~20 s)."""
    import os
    import shutil
    import tempfile

    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"ecgedge-hil-testpkg-{key}"
    if not (cache / "manifest.json").exists():
        tmp = Path(tempfile.mkdtemp(prefix="ecgedge-hil-testpkg-build-"))
        write_package(tmp / "pkg", convert(build_keras(), representative(48)))
        try:
            os.replace(tmp / "pkg", cache)
        except OSError:  # another process won the race: use theirs
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def make_test_package(out: Path) -> tuple[Path, object]:
    """(package dir, keras float model): a copy of the cached package; the Keras model is rebuilt with
    the same seed (identical weights) for the float reference."""
    import shutil

    shutil.copytree(_cached_package(), out)
    return out, build_keras()


def keras_float_fn(model):
    def run(x_model: np.ndarray) -> np.ndarray:
        x = np.asarray(x_model, np.float32).reshape(-1, 1, WINDOW, 1)
        return np.concatenate([model(x[i:i + 1], training=False).numpy() for i in range(len(x))]).astype(np.float64)
    return run

"""Test doubles for the firmware engine: small full-INT8 TFLite models covering its op set, ECG-like
test windows, their INT8 test vectors, and minimal packages around a model (for tests and benches).

Built with Keras 3 + TFLiteConverter (int8 in/out, representative dataset), NHWC with height 1 like
the exported ECG models. Deterministic (fixed seeds). TensorFlow is imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _build_keras(window: int, seed: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    class ChannelPad(layers.Layer):
        def __init__(self, extra, **kw):
            super().__init__(**kw)
            self.extra = extra

        def call(self, x):
            return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

    class Affine(layers.Layer):
        """Per-channel scale and shift with constant tensors (lowered to MUL/ADD with constants)."""

        def __init__(self, ch, **kw):
            super().__init__(**kw)
            r = np.random.default_rng(seed + 7)
            self.a = r.uniform(0.5, 1.5, ch).astype("float32")
            self.b = r.uniform(-0.2, 0.2, ch).astype("float32")

        def call(self, x):
            return x * self.a + self.b

    def swish(x):
        return layers.Multiply()([x, layers.Activation("sigmoid")(x)])

    def se(x, ch):
        s = layers.GlobalAveragePooling2D(keepdims=True)(x)
        s = layers.Dense(ch // 2)(s)
        s = swish(s)
        s = layers.Dense(ch, activation="sigmoid")(s)
        return layers.Multiply()([x, s])

    inp = keras.Input((1, window, 1), batch_size=1)
    x = layers.Conv2D(16, (1, 16), strides=(1, 2), padding="same")(inp)
    x = swish(x)
    # block 1: grouped conv, SE, max-pool + zero-pad shortcut, residual add
    sc = layers.ZeroPadding2D(((0, 0), (0, 1)))(x)
    sc = layers.MaxPooling2D((1, 2), strides=(1, 2), padding="valid")(sc)
    sc = ChannelPad(16)(sc)
    y = layers.Conv2D(32, (1, 1))(x)
    y = swish(y)
    y = layers.Conv2D(32, (1, 16), strides=(1, 2), padding="same", groups=2)(y)
    y = layers.ReLU()(y)
    y = se(y, 32)
    y = layers.Conv2D(32, (1, 1))(y)
    x = layers.Add()([y, sc])
    # block 2: depthwise conv, affine (per-channel mul/add), average pool, hard swish
    y = layers.DepthwiseConv2D((1, 5), padding="same")(x)
    y = Affine(32)(y)
    y = layers.ReLU(6.0)(y)
    y = layers.Conv2D(32, (1, 3), strides=(1, 2), padding="valid", groups=4)(y)
    y = layers.AveragePooling2D((1, 2), strides=(1, 2), padding="same")(y)
    x = layers.Conv2D(24, (1, 1), activation="relu6")(y)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16)(x)
    x = swish(x)
    out = layers.Dense(3)(x)
    return keras.Model(inp, out)


def _build_keras_2d(size: int, channels: int, seed: int):
    """2-D shapes the 1-D ECG models do not have: 3x3 convs (stride 1 and 2, SAME and VALID), 3x3
    depthwise with a depth multiplier and with dilation, 5x5 depthwise, a 1x1 conv, a Dense head."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    init = dict(bias_initializer=keras.initializers.RandomNormal(stddev=0.2, seed=seed))
    inp = keras.Input((size, size, channels), batch_size=1)
    x = layers.Conv2D(16, (3, 3), padding="same", **init)(inp)
    x = layers.Multiply()([x, layers.Activation("sigmoid")(x)])
    x = layers.DepthwiseConv2D((3, 3), padding="same", depth_multiplier=2, **init)(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(24, (3, 3), strides=(2, 2), padding="valid", **init)(x)
    x = layers.DepthwiseConv2D((3, 3), padding="same", dilation_rate=(2, 2), **init)(x)
    x = layers.DepthwiseConv2D((5, 5), padding="same", **init)(x)
    x = layers.Conv2D(16, (1, 1), activation="relu6", **init)(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10, **init)(x)
    return keras.Model(inp, out)


def build_test_tflite_2d(size: int = 12, channels: int = 8, seed: int = 0) -> bytes:
    """The 2-D op-coverage test model as full-INT8 .tflite bytes (tests/golden/firmware_2d_int8.tflite)."""
    model = _build_keras_2d(size, channels, seed)
    rep = np.random.default_rng(seed + 1).normal(0, 1, (32, size, size, channels)).astype(np.float32)
    return convert_int8(model, rep)


def ecg_like_windows(n: int, window: int, seed: int = 0) -> np.ndarray:
    """ECG-ish float windows [n, 1, window, 1] (model units, about +-1.5): beats, T waves, baseline
    wander and noise from a formula, not the physiological generator (the op-coverage models' data)."""
    rng = np.random.default_rng(seed)
    t = np.arange(window) / 100.0
    out = np.empty((n, 1, window, 1), np.float32)
    for i in range(n):
        hr = rng.uniform(0.8, 2.0)
        phase = rng.uniform(0, 1)
        beat = np.exp(-(((t * hr + phase) % 1.0) - 0.3) ** 2 / 0.0008) * rng.uniform(0.6, 1.4)
        twave = 0.3 * np.exp(-(((t * hr + phase) % 1.0) - 0.6) ** 2 / 0.005)
        sig = beat + twave + 0.1 * np.sin(2 * np.pi * 0.3 * t) + rng.normal(0, 0.05, window)
        out[i, 0, :, 0] = sig.astype(np.float32)
    return out


def int8_vectors(model: str | Path | bytes, n: int, seed: int = 0, noise_rows: int = 3) -> np.ndarray:
    """INT8 inputs [n, input size] for a model: ECG-like windows quantised with the model's own input
    parameters (the contract's quantize_input); the last `noise_rows` rows are random bytes."""
    from ecgedge.contract.runners import open_int8_runner

    runner = open_int8_runner(model, "tflm")
    x = ecg_like_windows(n, runner.input_size, seed=seed).reshape(n, runner.input_size)
    q = runner.to_int8(x)
    if noise_rows:
        q[-noise_rows:] = np.random.default_rng(seed).integers(-128, 128, q[-noise_rows:].shape)
    return q


def convert_int8(model, rep: np.ndarray, float_io: bool = False) -> bytes:
    """Full-INT8 .tflite of a Keras model, calibrated on rep [N, *input shape]; int8 in/out, or with
    float_io float32 in/out (the converter's QUANTIZE first and DEQUANTIZE last)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def gen():
        for i in range(rep.shape[0]):
            yield [rep[i : i + 1]]

    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def build_test_tflite(window: int = 256, seed: int = 0) -> bytes:
    """The op-coverage test model as full-INT8 .tflite bytes."""
    model = _build_keras(window, seed)
    return convert_int8(model, ecg_like_windows(32, window, seed + 1))


def write_test_package(out_dir: str | Path, tflite: bytes, name: str = "opmix", demo: bool = True) -> Path:
    """A minimal package folder (model_int8.tflite + manifest.json, docs/architecture.md "package"):
    the input and output quantisation read from the model, regression outputs, written by the
    contract's one manifest writer."""
    from ecgedge.contract.package import write_manifest
    from ecgedge.contract.runners import open_int8_runner

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_int8.tflite").write_bytes(tflite)
    r = open_int8_runner(tflite, "tflm")
    manifest = {
        "model": name, "target": "cortex-m7", "demo": demo,
        "input": {"signal": "ecg", "lead": "I", "sampling_rate_hz": 500,
                  "window_samples": r.input_size, "units": "uV", "scale_uv": 1000.0,
                  "preprocessing": {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0},
                  "tflite_scale": r.input_scale, "tflite_zero_point": r.input_zero_point,
                  "tflite_shape": list(r.input_shape)},
        "outputs": [{"name": f"out{i}", "kind": "regression", "index": i, "tflite_scale": r.output_scale,
                     "tflite_zero_point": r.output_zero_point} for i in range(r.n_outputs)],
    }
    write_manifest(out, manifest)
    return out

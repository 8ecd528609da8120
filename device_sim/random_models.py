"""Random small Keras models over the engine's op set, converted by TensorFlow's TFLiteConverter to full INT8:
test doubles for the engine's conformance suite (tests/test_engine_conformance.py).

    build_keras(seed) -> (keras model, input shape, description, float_io)
    build_named(name) -> the same for a named model (NAMED: one per op family; image, audio, gru, lstm)
    convert(seed or name) -> (.tflite bytes, description)
    ensure_models(seeds and names, workers=2) -> {item: Path}   # cached; conversions batched per worker process

A seed fixes everything (architecture, weights, representative data), so any failure replays from its seed.
Models are tiny on purpose (CI has 2 cores): 1-D (L x C, the converter's H = 1 NHWC) and 2-D (H x W x C)
inputs of a few hundred values; random channel counts (rarely multiples of 4), kernels, strides, dilations,
padding, activations, branches merged by add/sub/mul/max/min/concat, dense layers, pooling, transposes, crops,
pads, splits, packs, reductions over random axes, batch matmuls, softmax heads; now and then an unrolled GRU or
LSTM (and, when tf_keras is installed, the fused int8 LSTM), and float32 in/out (QUANTIZE/DEQUANTIZE at the
edges). TensorFlow is imported lazily; each batch of conversions runs in its own process (the converter can
crash a process on some graphs; a crash then names its seed).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1      # bump when the generator changes: cached models are keyed by it


class _Gen:
    """Random architecture for one seed."""

    def __init__(self, seed: int, attempt: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng([seed, attempt])
        self.desc: list[str] = [f"attempt {attempt}"] if attempt else []

    def r(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def chance(self, p):
        return bool(self.rng.random() < p)

    def channels(self):
        return self.pick([1, 2, 3, 5, 6, 7, 9, 11, 12, 4, 8])


def _keras_layers():
    import keras
    from keras import layers, ops

    class Fn(layers.Layer):
        """A keras.ops function as a layer (reductions, splits, stacks, slices)."""

        def __init__(self, fn, **kw):
            super().__init__(**kw)
            self.fn = fn

        def call(self, x):
            return self.fn(x)

    return keras, layers, ops, Fn


ACTIVATIONS = [None, "relu", "relu6", "tanh", "sigmoid", "hard_swish", "swish", "leaky", "prelu", "softmax"]


def _activation(g: _Gen, x, name=None):
    keras, layers, ops, Fn = _keras_layers()
    a = name if name is not None else g.pick(ACTIVATIONS)
    if a is None:
        return x
    g.desc.append(a)
    if a == "relu":
        return layers.ReLU()(x)
    if a == "relu6":
        return layers.ReLU(6.0)(x)
    if a == "leaky":
        return layers.LeakyReLU(negative_slope=float(g.pick([0.05, 0.1, 0.2, 0.3])))(x)
    if a == "prelu":
        shared = [1] if len(x.shape) == 3 else ([1, 2] if len(x.shape) == 4 else None)
        return layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.05, 0.5), shared_axes=shared)(x)
    if a == "softmax":
        return layers.Softmax(axis=-1)(x)
    return layers.Activation(a)(x)


def _conv(g: _Gen, x, rank: int):
    keras, layers, ops, Fn = _keras_layers()
    spatial = list(x.shape[1:-1])
    cin = int(x.shape[-1])
    k = g.r(1, min(5, min(spatial)))
    stride = g.pick([1, 1, 2]) if min(spatial) >= 4 else 1
    dil = g.pick([1, 1, 2]) if stride == 1 and min(spatial) >= 2 * k + 1 else 1
    pad = g.pick(["same", "valid"]) if min(spatial) >= (k - 1) * dil + 2 else "same"
    kind = g.pick(["conv", "conv", "depthwise", "grouped"])
    act = g.pick([None, "relu", "relu6"])
    if kind == "depthwise":
        dm = g.pick([1, 1, 2])
        cls = layers.DepthwiseConv1D if rank == 1 else layers.DepthwiseConv2D
        g.desc.append(f"dw{k} s{stride} d{dil} {pad} x{dm}")
        return cls(k, strides=stride, padding=pad, depth_multiplier=dm, dilation_rate=dil, activation=act)(x)
    groups = 1
    cout = g.channels()
    if kind == "grouped":
        divs = [d for d in (2, 3) if cin % d == 0]
        if divs:
            groups = g.pick(divs)
            cout = groups * g.r(1, 3)
    cls = layers.Conv1D if rank == 1 else layers.Conv2D
    g.desc.append(f"conv{k} s{stride} d{dil} {pad} {cin}->{cout} g{groups} {act}")
    return cls(cout, k, strides=stride, padding=pad, dilation_rate=dil, groups=groups, activation=act,
               bias_initializer=keras.initializers.RandomNormal(0, 0.1))(x)


def _pool(g: _Gen, x, rank: int):
    keras, layers, ops, Fn = _keras_layers()
    spatial = min(x.shape[1:-1])
    if spatial < 2:
        return x
    size = g.r(2, min(3, spatial))
    stride = g.pick([1, 2, size])
    pad = g.pick(["same", "valid"])
    kind = g.pick(["max", "avg"])
    cls = {(1, "max"): layers.MaxPooling1D, (1, "avg"): layers.AveragePooling1D,
           (2, "max"): layers.MaxPooling2D, (2, "avg"): layers.AveragePooling2D}[(rank, kind)]
    g.desc.append(f"{kind}pool{size} s{stride} {pad}")
    return cls(size, strides=stride, padding=pad)(x)


def _branch_merge(g: _Gen, x, rank: int):
    keras, layers, ops, Fn = _keras_layers()
    a = _conv(g, x, rank) if g.chance(0.7) else x
    b = _conv(g, x, rank)
    if list(a.shape[1:-1]) != list(b.shape[1:-1]):     # another view of a: never a merge of a tensor with itself
        b = (layers.Conv1D if rank == 1 else layers.Conv2D)(g.channels(), 1)(a)
    kind = g.pick(["add", "sub", "mul", "max", "min", "concat", "concat"])
    if kind == "concat":
        g.desc.append("concat")
        return layers.Concatenate(axis=-1)([a, b])
    if a.shape[-1] != b.shape[-1]:
        b = layers.Dense(int(a.shape[-1]))(b)
    g.desc.append(kind)
    cls = {"add": layers.Add, "sub": layers.Subtract, "mul": layers.Multiply, "max": layers.Maximum,
           "min": layers.Minimum}[kind]
    return cls()([a, b])


def _reshape_ops(g: _Gen, x, rank: int):
    """data movement: transpose, crop (strided slice), zero pad, split + concat, stack, slicing with steps."""
    keras, layers, ops, Fn = _keras_layers()
    kind = g.pick(["permute", "crop", "pad", "split", "slice", "stack"])
    spatial = list(x.shape[1:-1])
    c = int(x.shape[-1])
    if kind == "permute":
        perm = (2, 1) if rank == 1 else g.pick([(2, 1, 3), (3, 1, 2), (1, 3, 2)])
        g.desc.append(f"permute{perm}")
        return layers.Permute(perm)(x)
    if kind == "crop" and min(spatial) >= 3:
        g.desc.append("crop")
        if rank == 1:
            return layers.Cropping1D((g.r(0, 1), 1))(x)
        return layers.Cropping2D(((g.r(0, 1), 1), (1, g.r(0, 1))))(x)
    if kind == "pad":
        g.desc.append("zeropad")
        return (layers.ZeroPadding1D((g.r(0, 2), g.r(1, 2)))(x) if rank == 1
                else layers.ZeroPadding2D(((g.r(0, 1), 1), (1, g.r(0, 2))))(x))
    if kind == "split" and c >= 2:
        n = 2 if c % 3 else g.pick([2, 3])
        if c % n == 0 and g.chance(0.5):
            parts = Fn(lambda t, n=n: ops.split(t, n, axis=-1))(x)
        else:
            cut = g.r(1, c - 1)
            parts = Fn(lambda t, cut=cut: ops.split(t, [cut], axis=-1))(x)
        parts = list(parts)
        g.desc.append(f"split{len(parts)}")
        parts = [layers.ReLU()(p) if i % 2 else p for i, p in enumerate(parts)]
        return layers.Concatenate(axis=-1)(parts[::-1])
    if kind == "slice" and min(spatial) >= 4:
        g.desc.append("slice")
        if rank == 1:
            return Fn(lambda t: t[:, 1::2, ::-1])(x)
        return Fn(lambda t: t[:, ::2, 1:, :])(x)
    if kind == "stack":
        g.desc.append("stack")
        y = Fn(lambda t: ops.stack([t, t * 0.5], axis=-2))(x)
        return layers.Reshape((*spatial, 2 * c))(y)
    return x


def _reduce(g: _Gen, x, rank: int):
    keras, layers, ops, Fn = _keras_layers()
    nd = len(x.shape)
    axes = sorted(set(int(a) for a in g.rng.choice(np.arange(1, nd), size=g.r(1, nd - 1), replace=False)))
    if len(axes) == nd - 1:
        axes = axes[:-1] or [1]
    kind = g.pick(["mean", "sum"])
    keep = True
    g.desc.append(f"{kind}{axes}")
    fn = ops.mean if kind == "mean" else ops.sum
    y = Fn(lambda t, fn=fn, axes=tuple(axes): fn(t, axis=axes, keepdims=keep))(x)
    if kind == "sum":
        y = Fn(lambda t: t * 0.25)(y)
    return y


def _matmul(g: _Gen, x, rank: int):
    keras, layers, ops, Fn = _keras_layers()
    if rank != 1:
        return x
    d = g.r(2, 6)
    a, b = layers.Dense(d)(x), layers.Dense(d)(x)
    g.desc.append("batch matmul")
    y = layers.Dot(axes=(2, 2))([a, b])
    return layers.Dense(g.channels())(y)


def _recurrent(g: _Gen, x):
    keras, layers, ops, Fn = _keras_layers()
    units = g.r(2, 8)
    kind = g.pick(["gru", "lstm"])
    seq = g.chance(0.3)
    g.desc.append(f"{kind}{units}{' seq' if seq else ''} (unrolled)")
    cls = layers.GRU if kind == "gru" else layers.LSTM
    y = cls(units, unroll=True, return_sequences=seq)(x)
    return layers.Flatten()(y) if seq else y


def _build_fused_lstm(g: _Gen):
    """The converter's fused int8 UNIDIRECTIONAL_SEQUENCE_LSTM comes from tf_keras (Keras 2) LSTM layers."""
    import tf_keras

    t, c = g.r(3, 12), g.r(1, 6)
    x = tf_keras.Input((t, c), batch_size=1)
    y = x
    if g.chance(0.5):
        y = tf_keras.layers.Conv1D(g.channels(), g.r(1, 3), padding="same", activation="relu")(y)
    seq = g.chance(0.3)
    units = g.r(2, 8)
    y = tf_keras.layers.LSTM(units, return_sequences=seq)(y)
    if seq:
        y = tf_keras.layers.Flatten()(y)
    y = tf_keras.layers.Dense(g.r(2, 5), activation=g.pick([None, "softmax"]))(y)
    g.desc.append(f"fused lstm{units} T{t} C{c}{' seq' if seq else ''}")
    return tf_keras.Model(x, y), (t, c)


def build_keras(seed: int, attempt: int = 0):
    """(model, input shape without batch, description, float_io) for a seed (attempt > 0: the seed's next
    architecture, used when TensorFlow's converter rejects the previous one)."""
    g = _Gen(seed, attempt)
    keras, layers, ops, Fn = _keras_layers()
    keras.utils.set_random_seed((seed * 7 + attempt) % (2**31))
    kind = g.pick(["1d", "1d", "2d", "2d", "seq", "dense"])
    if kind == "seq" and g.chance(0.4):
        try:
            import tf_keras  # noqa: F401
            tf_keras.utils.set_random_seed(seed % (2**31))
            model, shape = _build_fused_lstm(g)
            return model, shape, "; ".join(g.desc), False
        except ImportError:
            pass
    if kind == "1d":
        shape = (g.r(8, 48), g.r(1, 5))
    elif kind == "2d":
        shape = (g.r(4, 12), g.r(4, 12), g.r(1, 4))
    elif kind == "seq":
        shape = (g.r(3, 10), g.r(1, 5))
    else:
        shape = (g.r(4, 40),)
    g.desc.append(f"{kind} input {shape}")
    x = keras.Input(shape, batch_size=1)
    y = x
    rank = len(shape) - 1
    if kind == "dense":
        for _ in range(g.r(1, 3)):
            y = layers.Dense(g.channels() + g.r(0, 6))(y)
            g.desc.append("dense")
            y = _activation(g, y)
    elif kind == "seq":
        if g.chance(0.4):
            y = _conv(g, y, 1)
        y = _recurrent(g, y)
    else:
        for _ in range(g.r(1, 4)):
            step = g.pick(["conv", "conv", "branch", "act", "pool", "move", "reduce", "dense", "matmul"])
            if step == "conv":
                y = _conv(g, y, rank)
                if g.chance(0.4):
                    y = _activation(g, y)
            elif step == "branch":
                y = _branch_merge(g, y, rank)
            elif step == "act":
                y = _activation(g, y)
            elif step == "pool":
                y = _pool(g, y, rank)
            elif step == "move":
                y = _reshape_ops(g, y, rank)
            elif step == "reduce" and len(y.shape) > 2:
                y = _reduce(g, y, rank)
            elif step == "dense":
                y = layers.Dense(g.channels())(y)
                g.desc.append("dense (per position)")
            elif step == "matmul":
                y = _matmul(g, y, rank)
        head = g.pick(["gap", "flatten"])
        g.desc.append(head)
        if head == "gap" and len(y.shape) > 2:
            y = (layers.GlobalAveragePooling1D() if len(y.shape) == 3 else layers.GlobalAveragePooling2D())(y)
        else:
            y = layers.Flatten()(y)
    n_out = g.r(2, 6)
    y = layers.Dense(n_out)(y)
    head_act = g.pick([None, "softmax", "softmax", "sigmoid"])
    if head_act:
        y = layers.Activation(head_act)(y)
        g.desc.append(f"{head_act} head")
    float_io = g.chance(0.1)
    if float_io:
        g.desc.append("float in/out")
    return keras.Model(x, y), shape, "; ".join(g.desc), float_io


# ---- named models: one per op family, and the acceptance models (image, audio, GRU, LSTM) ----------------

def _named_specs():
    keras, layers, ops, Fn = _keras_layers()

    def dense_then(act_layer, n_in=16, n=9):
        return (n_in,), lambda x: act_layer(layers.Dense(n)(x))

    def two_dense(merge, n_in=16, n=9):
        return (n_in,), lambda x: merge([layers.Dense(n)(x), layers.Dense(n)(x)])

    he = dict(kernel_initializer="he_normal", bias_initializer=keras.initializers.RandomNormal(0, 0.1))
    dw = dict(depthwise_initializer="he_normal", bias_initializer=keras.initializers.RandomNormal(0, 0.1))

    def image(x):
        # a small image classifier: 32x32x3, MobileNet-style blocks, hard swish, softmax head (He init, so the
        # signal survives the depth of a random network)
        y = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", **he)(x)
        for c, s in ((12, 1), (16, 2), (24, 2)):
            y = layers.DepthwiseConv2D(3, strides=s, padding="same", **dw)(y)
            y = layers.Activation("hard_swish")(y)
            y = layers.Conv2D(c, 1, activation="relu", **he)(y)
        y = layers.MaxPooling2D(2)(y)
        y = layers.GlobalAveragePooling2D()(y)
        return layers.Dense(10, activation="softmax", **he)(y)

    def audio(x):
        # a keyword-spotting DS-CNN on a 49x10 MFCC spectrogram: 10x4 stride-2 conv, depthwise-separable blocks
        y = layers.Conv2D(16, (10, 4), strides=(2, 2), padding="same", activation="relu", **he)(x)
        for _ in range(2):
            y = layers.DepthwiseConv2D(3, padding="same", activation="relu", **dw)(y)
            y = layers.Conv2D(16, 1, activation="relu", **he)(y)
        y = layers.AveragePooling2D((5, 5), strides=(2, 2))(y)
        y = layers.Flatten()(y)
        return layers.Dense(12, activation="softmax", **he)(y)

    return {
        "softmax": dense_then(layers.Softmax()),
        "tanh": dense_then(layers.Activation("tanh")),
        "hard_swish": dense_then(layers.Activation("hard_swish")),
        "relu": ((8,), lambda x: layers.ReLU()(layers.Concatenate()([layers.Dense(3)(x), layers.Dense(5)(x)]))),
        "relu6": ((8,), lambda x: layers.ReLU(6.0)(layers.Concatenate()([layers.Dense(3)(x), layers.Dense(5)(x)]))),
        "leaky_relu": dense_then(layers.LeakyReLU(negative_slope=0.15)),
        "prelu": ((8, 6, 5), lambda x: layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.05, 0.4))(
            layers.Conv2D(5, 3, padding="same")(x))),
        "sub": two_dense(layers.Subtract()),
        "maximum_minimum": ((16,), lambda x: layers.Minimum()([
            layers.Maximum()([layers.Dense(9)(x), layers.Dense(9)(x)]), layers.Dense(9)(x)])),
        "transpose": ((4, 5, 6), lambda x: layers.Flatten()(layers.Permute((3, 1, 2))(layers.Dense(6)(x)))),
        "strided_slice": ((6, 8), lambda x: layers.Flatten()(Fn(lambda t: t[:, 1:5:2, ::-1])(layers.Dense(8)(x)))),
        "split": ((12,), lambda x: layers.Concatenate()([a * 2.0 for a in Fn(lambda t: ops.split(t, 3, axis=-1))(
            layers.Dense(12)(x))])),
        "split_v": ((12,), lambda x: layers.Concatenate()([a * 2.0 for a in Fn(lambda t: ops.split(t, [2, 7], axis=-1))(
            layers.Dense(12)(x))])),
        "pack": ((12,), lambda x: layers.Flatten()(Fn(lambda t: ops.stack([t, t * 0.5], axis=1))(layers.Dense(5)(x)))),
        "sum_axes": ((4, 5, 6), lambda x: Fn(lambda t: ops.sum(t, axis=(1, 3)))(layers.Dense(6)(x))),
        "mean_axes": ((4, 5, 6), lambda x: Fn(lambda t: ops.mean(t, axis=(1, 3), keepdims=True))(layers.Dense(6)(x))),
        "batch_matmul": ((5, 6), lambda x: layers.Flatten()(layers.Dot(axes=(2, 2))([layers.Dense(4)(x),
                                                                                     layers.Dense(4)(x)]))),
        "slice": ((6, 8), lambda x: layers.Flatten()(Fn(lambda t: ops.slice(t, (0, 1, 2), (1, 4, 5)))(
            layers.Dense(8)(x)))),
        "image": ((32, 32, 3), image),
        "audio": ((49, 10, 1), audio),
        "gru": ((20, 6), lambda x: layers.Dense(4, activation="softmax")(layers.GRU(12, unroll=True)(x))),
    }




def _tanh_int16(tf):
    """A lone int16 TANH (16x8 quantisation, input scale near 2^-12 but not a power of two): probes tflite-micro's
    int16 tanh, whose table the LSTM kernel uses."""
    keras, layers, ops, Fn = _keras_layers()
    x = keras.Input((256,), batch_size=1)
    model = keras.Model(x, layers.Activation("tanh")(x))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    ramp = np.linspace(-8, 8, 256, dtype=np.float32)[None]
    conv.representative_dataset = lambda: ([ramp] for _ in range(4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = tf.int16
    conv.inference_output_type = tf.int16
    return conv.convert()


def build_named(name: str):
    """(model, input shape, description, float_io) of a named model; "lstm" is the fused int8 LSTM (tf_keras)."""
    keras, layers, ops, Fn = _keras_layers()
    keras.utils.set_random_seed(1)
    if name == "lstm":
        import tf_keras

        tf_keras.utils.set_random_seed(1)
        x = tf_keras.Input((20, 6), batch_size=1)
        y = tf_keras.layers.Dense(4, activation="softmax")(tf_keras.layers.LSTM(12)(x))
        return tf_keras.Model(x, y), (20, 6), "fused int8 LSTM 6->12 x20, softmax head", False
    if name == "float_io":
        x = keras.Input((10,), batch_size=1)
        y = layers.Dense(4, activation="softmax")(layers.Dense(8, activation="tanh")(x))
        return keras.Model(x, y), (10,), "float32 in/out dense tanh softmax", True
    specs = _named_specs()
    if name not in specs:
        raise KeyError(f"unknown named model {name!r}; known: {', '.join(NAMED)}")
    shape, fn = specs[name]
    x = keras.Input(shape, batch_size=1)
    return keras.Model(x, fn(x)), shape, f"named model {name}", False


NAMED = ["softmax", "tanh", "hard_swish", "relu", "relu6", "leaky_relu", "prelu", "sub", "maximum_minimum",
         "transpose", "strided_slice", "slice", "split", "split_v", "pack", "sum_axes", "mean_axes", "batch_matmul",
         "image", "audio", "gru", "lstm", "float_io"]


def representative(seed: int, shape, n: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed + 7919)
    scale = rng.uniform(0.5, 2.0)
    return (rng.standard_normal((n, 1, *shape)) * scale).astype(np.float32)


def convert(item) -> tuple[bytes, str]:
    """(full-INT8 .tflite bytes, description) for a seed (int) or a named model (str)."""
    import tensorflow as tf

    if item == "tanh_int16":
        return _tanh_int16(tf), "int16 TANH (16x8), all 65536 inputs probe tflite-micro's table"
    if isinstance(item, str):
        model, shape, desc, float_io = build_named(item)
        return _convert(tf, model, int(hashlib.sha256(item.encode()).hexdigest()[:6], 16), shape, float_io, 32), desc
    errors = []
    for attempt in range(CONVERTER_ATTEMPTS):
        model, shape, desc, float_io = build_keras(item, attempt)
        try:
            raw = _convert(tf, model, item, shape, float_io, 8)
        except Exception as e:   # noqa: BLE001  (the converter's own errors: ConverterError, ValueError, ...)
            errors.append(f"attempt {attempt}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        dead = _dead_tensor(raw)
        if dead is None:
            return raw, desc
        errors.append(f"attempt {attempt}: {dead}")
    raise RuntimeError(f"seed {item}: no usable architecture in {CONVERTER_ATTEMPTS} attempts: {errors}")


CONVERTER_ATTEMPTS = 4
DEAD_SCALE = 1e-6


def _dead_tensor(raw: bytes) -> str | None:
    """A tensor whose calibrated range collapsed to a point (a ReLU dead on the representative data gets a
    scale ~1e-8): tflite-micro aborts on such graphs, so the seed's next architecture is taken instead."""
    from ecgedge.firmware_bridge.tflite_model import load_model

    m = load_model(raw)
    for op in m.operators:
        for t in op.outputs:
            tt = m.tensors[t]
            if tt.scale.size and float(tt.scale.min()) < DEAD_SCALE:
                return f"tensor {t} ({op.name} output) has a collapsed range (scale {float(tt.scale.min()):.2g})"
    return None


def _convert(tf, model, rep_seed: int, shape, float_io: bool, n: int) -> bytes:
    rep = representative(rep_seed, shape, n=n)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def cache_root() -> Path:
    return Path(os.environ.get("ECGEDGE_CACHE", Path.home() / ".cache" / "ecgedge")) / "random-models"


def _key() -> str:
    from importlib.metadata import version

    src = Path(__file__).read_bytes()
    parts = [str(GENERATOR_VERSION), hashlib.sha256(src).hexdigest()[:12]]
    for pkg in ("tensorflow-cpu", "keras", "tf-keras"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except Exception:
            parts.append(f"{pkg}=none")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _name(item) -> str:
    return f"seed-{item}" if isinstance(item, int) else f"named-{item}"


def _worker(seeds: list, out: Path) -> None:
    """Convert seeds (or names) into out/seed-N.tflite / named-X.tflite (+ .json description), in this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    for s in seeds:
        target = out / f"{_name(s)}.tflite"
        if target.exists():
            continue
        (out / f"{_name(s)}.started").write_text("")
        try:
            raw, desc = convert(s)
        except Exception as e:   # noqa: BLE001  (reported by ensure_models, naming the seed)
            (out / f"{_name(s)}.error").write_text(f"{type(e).__name__}: {e}"[:2000])
            (out / f"{_name(s)}.started").unlink()
            continue
        tmp = target.with_suffix(".partial")
        tmp.write_bytes(raw)
        (out / f"{_name(s)}.json").write_text(json.dumps({"item": s, "description": desc}))
        tmp.replace(target)
        (out / f"{_name(s)}.started").unlink()


def ensure_models(items, workers: int = 2, timeout: float = 1800) -> dict:
    """The .tflite of every seed (int) or named model (str), converted once into the cache
    (ECGEDGE_CACHE/random-models/<key>/); missing ones are converted by `workers` processes, each taking a share.
    A conversion that crashes its process is reported (RuntimeError naming the seed)."""
    items = list(items)
    out = cache_root() / _key()
    out.mkdir(parents=True, exist_ok=True)
    missing = [s for s in items if not (out / f"{_name(s)}.tflite").exists()]
    if missing:
        shares = [missing[i::workers] for i in range(workers) if missing[i::workers]]
        procs = [subprocess.Popen([sys.executable, "-c", "import sys, json; from pathlib import Path; "
                                   "from ecgedge.device_sim.random_models import _worker; "
                                   "_worker(json.loads(sys.argv[1]), Path(sys.argv[2]))", json.dumps(sh), str(out)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for sh in shares]
        errors = []
        for p, sh in zip(procs, shares):
            _, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                crashed = [s for s in sh if (out / f"{_name(s)}.started").exists()]
                errors.append(f"converter process for {sh[0]}.. exited {p.returncode} at {crashed}: "
                              f"{err.decode(errors='replace')[-800:]}")
        failed = [s for s in missing if (out / f"{_name(s)}.error").exists()]
        errors += [f"{_name(s)}: {(out / f'{_name(s)}.error').read_text()[:600]}" for s in failed]
        for s in failed:
            (out / f"{_name(s)}.error").unlink()
        if errors:
            raise RuntimeError("; ".join(errors))
    return {s: out / f"{_name(s)}.tflite" for s in items}


def description(path: Path) -> str:
    j = path.with_suffix(".json")
    return json.loads(j.read_text())["description"] if j.exists() else ""

"""Rebuild a torch Net1D as a Keras model (NHWC, H=1) with the torch weights copied in.

Why a rebuild rather than a graph converter: the layout is chosen once (channels last, time on W) so
the INT8 TFLite graph needs no TRANSPOSE, and BatchNorm is folded by hand:
- a BN that directly follows a conv (first_bn, bn2, bn3) is folded into that conv's kernel and bias;
- the pre-activation bn1 (after a residual add) becomes a per-channel affine, a 1x1 DepthwiseConv2D.
Swish is LOGISTIC x MUL; squeeze-excitation is MEAN, FULLY_CONNECTED, MUL; the shortcut is PAD +
MAX_POOL_2D (zero padding, as in Net1D) and a channel PAD.

Every width is read from the module weights, never from the arch dict, so a pruned Net1D (same module
names, narrower blocks) rebuilds the same way.
"""

from __future__ import annotations

import numpy as np

from ecgedge.errors import ExportError


def _keras():
    import keras
    return keras


def _bn_scale_shift(bn) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as y = x * scale + shift (per channel)."""
    gamma = bn.weight.detach().double().numpy()
    beta = bn.bias.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _conv_weights(my_conv, bn=None) -> tuple[np.ndarray, np.ndarray]:
    """torch Conv1d [out, in/g, k] (+ optional following BN) -> Keras Conv2D kernel [1, k, in/g, out], bias."""
    conv = my_conv.conv
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        scale, shift = _bn_scale_shift(bn)
        w = w * scale[:, None, None]
        b = b * scale + shift
    kernel = np.transpose(w, (2, 1, 0))[None]  # [1, k, in/g, out]
    return kernel.astype(np.float32), b.astype(np.float32)


def _layers():
    """Small custom layers, defined lazily so importing this module does not import keras."""
    keras = _keras()

    class Swish(keras.layers.Layer):
        def call(self, x):
            return x * keras.ops.sigmoid(x)

    class ChannelPad(keras.layers.Layer):
        def __init__(self, before: int, after: int, **kw):
            super().__init__(**kw)
            self.before, self.after = before, after

        def call(self, x):
            return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [self.before, self.after]])

    return Swish, ChannelPad


def _block_uses_bn(model, block) -> bool:
    return bool(getattr(block, "use_bn", getattr(model, "use_bn", True)))


def build_keras_model(model, window_samples: int):
    """Keras functional model equal (in eval mode, to float rounding) to the torch Net1D `model`.

    Input [B, 1, window_samples, 1] (model units), output [B, n_outputs] raw.
    """
    keras = _keras()
    L = keras.layers
    Swish, ChannelPad = _layers()
    model = model.eval()

    def conv(x, my_conv, name, bn=None):
        kernel, bias = _conv_weights(my_conv, bn)
        c = my_conv.conv
        layer = L.Conv2D(filters=kernel.shape[-1], kernel_size=(1, kernel.shape[1]),
                         strides=(1, int(c.stride[0])), padding="same", groups=int(c.groups), name=name)
        y = layer(x)
        layer.set_weights([kernel, bias])
        return y

    use_bn = bool(getattr(model, "use_bn", True))
    inp = keras.Input(shape=(1, window_samples, 1), batch_size=1, name="ecg")
    x = conv(inp, model.first_conv, "stem_conv", model.first_bn if use_bn else None)
    x = Swish(name="stem_act")(x)
    for i, stage in enumerate(model.stage_list):
        for j, block in enumerate(stage.block_list):
            x = _block(keras, Swish, ChannelPad, conv, model, block, x, f"s{i}b{j}")
    x = L.GlobalAveragePooling2D(name="head_pool")(x)
    dense = L.Dense(model.dense.out_features, name="head_dense")
    out = dense(x)
    dense.set_weights([model.dense.weight.detach().numpy().T.astype(np.float32),
                       model.dense.bias.detach().numpy().astype(np.float32)])
    return keras.Model(inp, out, name="net1d")


def _block(keras, Swish, ChannelPad, conv, model, block, x, tag):
    L = keras.layers
    bn = _block_uses_bn(model, block)
    identity = x
    in_ch = int(x.shape[-1])
    out = x
    if not block.is_first_block:
        if bn:
            scale, shift = _bn_scale_shift(block.bn1)
            aff = L.DepthwiseConv2D(kernel_size=(1, 1), use_bias=True, name=f"{tag}_bn1")
            out = aff(out)
            aff.set_weights([scale.astype(np.float32).reshape(1, 1, -1, 1), shift.astype(np.float32)])
        out = Swish(name=f"{tag}_act1")(out)
    out = conv(out, block.conv1, f"{tag}_conv1", block.bn2 if bn else None)
    out = Swish(name=f"{tag}_act2")(out)
    out = conv(out, block.conv2, f"{tag}_conv2", block.bn3 if bn else None)
    out = Swish(name=f"{tag}_act3")(out)
    out = conv(out, block.conv3, f"{tag}_conv3")
    out_ch = int(block.conv3.conv.weight.shape[0])

    se = L.GlobalAveragePooling2D(keepdims=True, name=f"{tag}_se_pool")(out)
    fc1 = L.Dense(int(block.se_fc1.out_features), name=f"{tag}_se_fc1")
    se = fc1(se)
    fc1.set_weights([block.se_fc1.weight.detach().numpy().T, block.se_fc1.bias.detach().numpy()])
    se = Swish(name=f"{tag}_se_act")(se)
    fc2 = L.Dense(int(block.se_fc2.out_features), activation="sigmoid", name=f"{tag}_se_fc2")
    se = fc2(se)
    fc2.set_weights([block.se_fc2.weight.detach().numpy().T, block.se_fc2.bias.detach().numpy()])
    out = L.Multiply(name=f"{tag}_se_mul")([out, se])

    if block.downsample and block.stride > 1:
        s = int(block.stride)
        pad = s - 1
        identity = L.ZeroPadding2D(padding=((0, 0), (pad // 2, pad - pad // 2)), name=f"{tag}_sc_pad")(identity)
        identity = L.MaxPooling2D(pool_size=(1, s), strides=(1, s), padding="valid", name=f"{tag}_sc_pool")(identity)
    if out_ch != in_ch:
        if out_ch < in_ch:
            raise ExportError(f"block {tag}: output width {out_ch} is narrower than its input {in_ch}; "
                              "the Net1D shortcut can only pad channels")
        ch1 = (out_ch - in_ch) // 2
        identity = ChannelPad(ch1, out_ch - in_ch - ch1, name=f"{tag}_sc_chpad")(identity)
    return L.Add(name=f"{tag}_add")([out, identity])


def torch_to_nhwc(x: np.ndarray) -> np.ndarray:
    """[B, 1, W] (torch) -> [B, 1, W, 1] (Keras/TFLite)."""
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(x.shape[0], 1, x.shape[-1], 1)


def max_abs_difference(model, keras_model, x: np.ndarray) -> float:
    """Largest |torch - keras| over a batch x [B, 1, W] (model units)."""
    import torch
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(np.asarray(x, np.float32))).numpy()
    got = np.concatenate([keras_model(torch_to_nhwc(x[i:i + 1]), training=False).numpy() for i in range(len(x))])
    return float(np.max(np.abs(ref - got)))

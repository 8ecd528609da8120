"""A torch model (the zoo's Net1D, pruned or not, or any supported single-lead model) rebuilt in Keras
(NHWC, H = 1) with its weights: one case of the general route, ecgedge.quantize.convert_graph (the model
as a canonical torch.export graph) + ecgedge.quantize.convert_keras (that graph in Keras).

For Net1D the route gives what the hand-written rebuild of earlier sessions gave: convolutions with BN
folded (TF SAME padding where MyConv1dPadSame pads the same way), the pre-activation BN as a 1x1
DepthwiseConv2D, Swish as LOGISTIC x MUL, squeeze-excitation as MEAN, FULLY_CONNECTED, MUL, the shortcut
as PAD + MAX_POOL_2D and a channel PAD. Widths are read from the weights, so a pruned Net1D rebuilds too.
"""

from __future__ import annotations

import numpy as np


def build_keras_model(model, window_samples: int):
    """Keras functional model equal (in eval mode, to float rounding) to the torch `model`.

    Input [1, 1, window_samples, 1] (model units), output [1, n_outputs] raw.
    """
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import to_keras
    keras_model, _ = to_keras(canonical(model, window_samples), window_samples,
                              name=getattr(model, "ecgedge_spec", None) or "ecgedge")
    return keras_model


def torch_to_nhwc(x: np.ndarray) -> np.ndarray:
    """[B, 1, W] (torch) -> [B, 1, W, 1] (Keras/TFLite)."""
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(x.shape[0], 1, x.shape[-1], 1)


def max_abs_difference(model, keras_model, x: np.ndarray) -> float:
    """Largest |torch - keras| over a batch x [B, 1, W] (model units)."""
    from ecgedge.quantize.convert_keras import max_abs_difference as diff
    return diff(model, keras_model, x)

"""Activation ranges of a torch Net1D at the points that become quantised tensors in TFLite.

Tensor names are module paths plus a suffix for the points no module produces:
  "input"                        the model input
  "<conv path>"                  conv output (MyConv1dPadSame, e.g. "stage_list.0.block_list.0.conv1")
  "<bn path>"                    BatchNorm output ("first_bn", "...bn1"/"bn2"/"bn3"; bn2/bn3/first_bn fold
                                 into the preceding conv, so their range is that conv's quantised output)
  "<activation path>"            Swish output ("first_activation", "...activation1/2/3", "...se_activation")
  "<linear path>"                Linear output ("...se_fc1", "...se_fc2", "dense")
  "<block path>.se_gate"         sigmoid(se_fc2) (in [0, 1])
  "<block path>.se_mul"          conv3 output times the SE gate
  "<block path>.add"             block output (residual add)
  "<stage/block path>.mean"      time-mean feeding the SE / the head ("features.mean" for the head)
"""

from __future__ import annotations

import numpy as np

from ecgedge.errors import DataError


def _shortcut(block, x):
    import torch.nn.functional as F

    identity = x
    if block.downsample:
        identity = block.max_pool(identity)
    if block.out_channels != block.in_channels:
        ch1 = (block.out_channels - block.in_channels) // 2
        ch2 = block.out_channels - block.in_channels - ch1
        identity = F.pad(identity, (0, 0, ch1, ch2), "constant", 0.0)
    return identity


def collect_activation_ranges(torch_model, reader, calibrator, max_batches: int | None = None,
                              progress: bool = False) -> dict[str, tuple[float, float]]:
    """Run `reader`'s batches through `torch_model` (eval, no grad) and feed `calibrator` every point.

    Returns `calibrator.compute_ranges()`. Only the reader's first input is used (Net1D has one).
    """
    import torch
    from torch import nn

    from ecgedge.models.net1d import BasicBlock, MyConv1dPadSame, Swish

    def record(name):
        def hook(_module, _inputs, output):
            calibrator.collect(name, output.detach().cpu().numpy())
        return hook

    def block_hook(name):
        def hook(block, inputs, output):
            identity = _shortcut(block, inputs[0])
            se_mul = output - identity
            calibrator.collect(f"{name}.add", output.detach().cpu().numpy())
            calibrator.collect(f"{name}.se_mul", se_mul.detach().cpu().numpy())
        return hook

    def se_hooks(name):
        def fc2(_module, _inputs, output):
            calibrator.collect(f"{name}.se_gate", torch.sigmoid(output).detach().cpu().numpy())

        def fc1(_module, inputs, _output):
            calibrator.collect(f"{name}.mean", inputs[0].detach().cpu().numpy())
        return fc1, fc2

    handles = []
    for name, module in torch_model.named_modules():
        if isinstance(module, (MyConv1dPadSame, nn.BatchNorm1d, Swish, nn.Linear)):
            handles.append(module.register_forward_hook(record(name)))
        if isinstance(module, BasicBlock):
            handles.append(module.register_forward_hook(block_hook(name)))
            fc1, fc2 = se_hooks(name)
            handles.append(module.se_fc1.register_forward_hook(fc1))
            handles.append(module.se_fc2.register_forward_hook(fc2))
    dense = getattr(torch_model, "dense", None)
    if isinstance(dense, nn.Linear):
        handles.append(dense.register_forward_pre_hook(
            lambda _m, inputs: calibrator.collect("features.mean", inputs[0].detach().cpu().numpy())))

    was_training = torch_model.training
    torch_model.eval()
    batches = 0
    try:
        with torch.no_grad():
            while max_batches is None or batches < max_batches:
                feed = reader.get_next()
                if feed is None:
                    break
                if not feed:
                    raise DataError("calibration reader returned an empty batch dict")
                x = np.asarray(next(iter(feed.values())), dtype=np.float32)
                calibrator.collect("input", x)
                torch_model(torch.from_numpy(x))
                batches += 1
    finally:
        for h in handles:
            h.remove()
        torch_model.train(was_training)
    if batches == 0:
        raise DataError("calibration reader gave no batches")
    return calibrator.compute_ranges()

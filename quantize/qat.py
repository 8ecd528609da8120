"""Quantisation-aware fine-tuning for Net1D: fake INT8 quantisation where the TFLite graph quantises.

Post-training INT8 loses most accuracy where a per-tensor scale must cover channels of very different
size: the residual stream feeds a standalone BatchNorm (a DEPTHWISE_CONV_2D in TFLite) that scales each
channel back up, noise included. Training with the rounding in the loop teaches the network not to
depend on what INT8 cannot carry.

`QuantSim(model, modules)` puts fake quantisation (straight-through gradient) on
- activations, per tensor, asymmetric int8, with ranges tracked as an exponential moving average of the
  batch min/max in training mode and frozen in eval mode: BatchNorm outputs (a fused conv+BN output or a
  standalone BN), Swish outputs, convolutions not followed by a BatchNorm, SE's first linear layer, each
  block's output (the residual ADD), and the pooled features entering the dense head;
- weights of Conv1d/Linear, per output channel, symmetric int8 (a BN folded later scales each output
  channel, which per-channel quantisation commutes with).
`remove()` detaches everything and leaves the weights on their int8 grid (so the converter's own
per-channel quantisation of them is lossless).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from ecgedge.contract.quantization import int8_qparams

QMIN, QMAX = -128, 127
EMA_MOMENTUM = 0.9


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8 (TFLite's per-channel weights: zero point 0, range +-127)."""
    flat = w.detach().reshape(w.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


class _WeightQuant(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(w)


class ActivationQuant:
    """Per-tensor asymmetric int8 fake quantisation with an EMA min/max observer."""

    def __init__(self, fixed: tuple[float, float] | None = None):
        self.lo: float | None = None if fixed is None else float(fixed[0])
        self.hi: float | None = None if fixed is None else float(fixed[1])
        self.fixed = fixed is not None      # a range chosen beforehand (the model input's): never observed
        self.calibrating = False

    def observe(self, x: torch.Tensor) -> None:
        if self.fixed:
            return
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo = EMA_MOMENTUM * self.lo + (1 - EMA_MOMENTUM) * lo
            self.hi = EMA_MOMENTUM * self.hi + (1 - EMA_MOMENTUM) * hi

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        if training or self.calibrating or self.lo is None:
            self.observe(x)
        scale, zero_point = int8_qparams(self.lo, self.hi)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, QMIN, QMAX)


def _quant_points(model: nn.Module, modules: list[nn.Module]) -> tuple[list[nn.Module], list[nn.Module]]:
    """(modules whose output TFLite quantises, modules whose weights it quantises) in `modules`, by
    Net1D's layout. A convolution followed by a BatchNorm is fused with it: the BN output is the point."""
    from ecgedge.models.net1d import BasicBlock, Swish
    outputs, weights = [], []
    for top in modules:
        for m in top.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                weights.append(m)
            if isinstance(m, (nn.BatchNorm1d, Swish, BasicBlock)):
                outputs.append(m)           # BasicBlock's output is its residual ADD
            if isinstance(m, BasicBlock):
                outputs += [m.conv3, m.se_fc1]   # conv3 feeds SE, not a BatchNorm
            if m is getattr(model, "dense", None):
                outputs.append(m)
    return outputs, weights


class QuantSim:
    """Fake INT8 quantisation on `modules` (default: the whole model) of a Net1D. `inputs_of`: modules
    whose input is an INT8 tensor in TFLite that the model's own points do not cover (the first trained
    stage when earlier stages run outside the model); the dense head's input (a MEAN) is added itself.
    `input_ranges`: {module in inputs_of: (min, max)} fixed ranges (the export's chosen model-input range)."""

    def __init__(self, model: nn.Module, modules: list[nn.Module] | None = None,
                 inputs_of: list[nn.Module] = (), input_ranges: dict | None = None):
        self.model = model
        outputs, weights = _quant_points(model, [model] if modules is None else list(modules))
        self.observers: list[ActivationQuant] = []
        self.handles = []
        for m in outputs:
            obs = self._observer()
            self.handles.append(m.register_forward_hook(lambda mod, args, out, obs=obs: obs(out, mod.training)))
        dense = getattr(model, "dense", None)
        fixed = {id(m): r for m, r in (input_ranges or {}).items()}
        for m in [*inputs_of, *([dense] if any(dense is w for w in weights) else [])]:
            obs = self._observer(fixed.get(id(m)))
            self.handles.append(m.register_forward_pre_hook(
                lambda mod, args, obs=obs: (obs(args[0], mod.training), *args[1:])))
        self.weight_modules = weights
        for m in weights:
            parametrize.register_parametrization(m, "weight", _WeightQuant())

    def _observer(self, fixed: tuple[float, float] | None = None) -> ActivationQuant:
        self.observers.append(ActivationQuant(fixed))
        return self.observers[-1]

    def calibrate(self, run) -> None:
        """Set every range from `run()` (forward passes in eval mode: BatchNorm statistics untouched)."""
        was_training = self.model.training
        self.model.eval()
        for obs in self.observers:
            if not obs.fixed:
                obs.calibrating, obs.lo, obs.hi = True, None, None
        try:
            run()
        finally:
            for obs in self.observers:
                obs.calibrating = False
            self.model.train(was_training)

    def ranges(self) -> list[tuple[float, float]]:
        return [(obs.lo, obs.hi) for obs in self.observers]

    @property
    def n_points(self) -> int:
        return len(self.observers)

    def remove(self) -> None:
        """Detach the hooks; weights stay on their int8 grid."""
        for h in self.handles:
            h.remove()
        self.handles = []
        for m in self.weight_modules:
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        self.weight_modules = []

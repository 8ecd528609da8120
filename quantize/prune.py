"""Structured pruning of a Net1D to a target's budget (MACs per window, INT8 weight bytes, activations).

What is pruned, physically (smaller tensors, not masks), with torch-pruning's layer functions:
- the middle channels of each bottleneck block, in WHOLE GROUPS of a grouped convolution: the group's
  conv1 output rows, bn2, the group's conv2 rows (conv2 keeps its channels per group, `groups` drops),
  bn3 and conv3's input columns. torch-pruning's dependency graph would prune inside the groups (same
  index in every group), which changes the grouped layout; the coupling of one block is small and fixed,
  so it is planned here and torch-pruning slices the layers. A model with no grouped conv2 (af_lead1)
  loses single channels instead: conv1 rows, bn2, conv2 rows AND input columns, bn3, conv3 columns;
- the hidden units of each squeeze-excitation (se_fc1 rows, se_fc2 columns);
- whole non-first blocks of a stage, when its last group goes (the residual makes the block an identity).
The residual stream widths (and so the zero-channel-pad shortcuts) are left as they are.

The plan is greedy and global: repeatedly remove the unit with the least importance per unit of
over-budget cost it saves. Importance is the L2 norm of the unit's BN-folded weights, normalised by the
mean over its block's units (so blocks compare on equal terms); with example windows it is weighted by
the unit's mean absolute activation. Costs are counted analytically from widths and checked against the
real model with `ecgedge.models.zoo.count_macs` afterwards.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from ecgedge.errors import BudgetError, ModelError

INT8_WEIGHT_BYTES = 1       # int8 weight
BIAS_BYTES = 4              # int32 bias per output channel
QPARAM_BYTES = 24           # per-channel scale (float32) + zero point (int64), for the weight and the bias tensor
# tflite-micro's arena came out 1.34x the live-tensor peak counted below on the pruned pocket_k for
# cortex-m7 (214,240 B vs 160,000 B): padded copies, scratch buffers and the greedy planner's gaps.
ARENA_PER_PEAK = 1.34
# runtime -> (conv + BN + Swish computed as one layer?, arena / live-tensor peak). tflite-micro runs CONV_2D,
# LOGISTIC and MUL as three ops, three tensors alive at the MUL; our C engine (every MCU target's runtime)
# folds the Swish table into the conv's store, two alive, and plans the arena itself (ENGINE_ARENA_PER_PEAK).
ENGINE_ARENA_PER_PEAK = 1.0   # measured 0.84: our engine's 101,040 B vs this count's 120,000 B on the pruned
                              # pocket_k for cortex-m7 and cortex-m33 (kept at 1.0: the export checks the real plan)
RUNTIME_ARENA = {None: (False, ARENA_PER_PEAK), "ecgedge-c": (True, ENGINE_ARENA_PER_PEAK)}
LAYER_OVERHEAD_BYTES = 1024  # tensors, names, op and buffer tables per layer in the flatbuffer (estimate)


@dataclass
class _BlockPlan:
    stage: int
    index: int
    in_channels: int
    out_channels: int
    stride: int
    kernel: int
    group_width: int           # channels per pruning unit: a group, or 1 for an ungrouped conv2
    groups: list[int]          # kept unit indices (original numbering): groups, or channels if ungrouped
    se_hidden: list[int]       # kept SE hidden units
    first_of_stage: bool
    ungrouped: bool = False
    group_importance: np.ndarray = field(repr=False, default=None)
    se_importance: np.ndarray = field(repr=False, default=None)

    @property
    def name(self) -> str:
        return f"stage_list.{self.stage}.block_list.{self.index}"

    @property
    def middle(self) -> int:
        return len(self.groups) * self.group_width

    @property
    def conv2_fan_in(self) -> int:
        """Input channels per conv2 output channel: the group's width, or every middle channel."""
        return self.middle if self.ungrouped else self.group_width

    @property
    def dropped(self) -> bool:
        return not self.groups


@dataclass
class Footprint:
    macs: int
    int8_bytes: int
    activation_bytes: int

    def as_dict(self) -> dict:
        return {"macs": self.macs, "int8_bytes": self.int8_bytes,
                "activation_bytes": self.activation_bytes}


def _length_after(length: int, stride: int) -> int:
    return -(-length // stride)


def _footprint(model, blocks: list[_BlockPlan], window: int, runtime: str | None = None) -> Footprint:
    """MACs (conv + linear), parameters, INT8 bytes estimate and activation peak estimate of a plan, the
    peak as `runtime` (a target's runtime: RUNTIME_ARENA) keeps its tensors alive."""
    fused, per_peak = RUNTIME_ARENA.get(runtime, RUNTIME_ARENA[None])
    stem = model.first_conv
    k0, base = stem.kernel_size, stem.out_channels
    cin = stem.in_channels
    length = _length_after(window, stem.stride)
    macs = length * base * cin * k0
    weights = base * cin * k0
    channels_out = base                          # per-channel bias/quant records
    layers = 1
    # INT8 activation bytes: input + stem output, then Swish = LOGISTIC + MUL keeps 3 tensors alive
    swish = 2 if fused else 3        # tensors alive at a conv + BN + Swish's end
    peak = max(window * cin + length * base, swish * length * base)
    for b in blocks:
        if b.dropped:
            continue
        lin = length
        lout = _length_after(lin, b.stride)
        mid, cin_b, cout = b.middle, b.in_channels, b.out_channels
        hidden = len(b.se_hidden)
        fan_in = b.conv2_fan_in
        macs += lin * mid * cin_b + lout * mid * fan_in * b.kernel + lout * cout * mid + 2 * cout * hidden
        w = cin_b * mid + mid * fan_in * b.kernel + mid * cout + 2 * cout * hidden
        weights += w
        channels_out += mid + mid + cout + hidden + cout
        layers += 5 + (0 if b.first_of_stage and b.stage == 0 else 2)
        identity = lin * cin_b
        peak = max(peak,
                   identity + swish * lin * cin_b,             # bn1 + Swish pre-activation
                   identity + lin * cin_b + lin * mid,         # conv1
                   identity + swish * lin * mid,               # bn2 + Swish
                   identity + lin * mid + lout * mid,          # conv2
                   identity + swish * lout * mid,              # bn3 + Swish
                   identity + lout * mid + lout * cout,        # conv3
                   identity + 2 * lout * cout,                 # SE multiply
                   lout * cout * 2 + lout * cout)              # shortcut + add
        length = lout
    n_out = model.dense.out_features
    cfinal = model.dense.in_features
    macs += cfinal * n_out
    weights += cfinal * n_out
    channels_out += n_out
    layers += 1
    int8_bytes = (weights * INT8_WEIGHT_BYTES + channels_out * (BIAS_BYTES + QPARAM_BYTES)
                  + layers * LAYER_OVERHEAD_BYTES)
    return Footprint(int(macs), int(int8_bytes), int(math.ceil(peak * per_peak)))


def _bn_scale(bn) -> "torch.Tensor":
    import torch
    return (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).abs()


def _block_plans(model, activation_scale: dict | None) -> list[_BlockPlan]:
    """One plan per block with group / SE-hidden importances from the current weights."""
    plans = []
    # channels are the units only in a model with no grouped conv2 at all (af_lead1's reference); a grouped
    # model's block that happens to hold one group keeps whole-group pruning
    ungrouped = all(b.conv2.conv.groups == 1 for s in model.stage_list for b in s.block_list)
    for i, stage in enumerate(model.stage_list):
        for j, block in enumerate(stage.block_list):
            conv1, conv2, conv3 = block.conv1.conv, block.conv2.conv, block.conv3.conv
            gw = conv2.in_channels // conv2.groups
            if conv2.out_channels != conv2.in_channels or conv2.out_channels % gw:
                raise ModelError(f"{i}.{j}: conv2 {conv2.in_channels}->{conv2.out_channels} with "
                                 f"groups={conv2.groups} is not a square grouped conv")
            if ungrouped:  # units are single channels
                gw, n_groups = 1, conv2.out_channels
            else:
                n_groups = conv2.groups
            w1 = conv1.weight.detach()[:, :, 0] * _bn_scale(block.bn2)[:, None]
            w2 = conv2.weight.detach() * _bn_scale(block.bn3)[:, None, None]
            w3 = conv3.weight.detach()[:, :, 0]
            per_channel = [w1.pow(2).sum(1), w2.flatten(1).pow(2).sum(1), w3.pow(2).sum(0)]
            if ungrouped:  # a middle channel is also one of conv2's input columns
                per_channel.append(w2.pow(2).sum(dim=(0, 2)))
            scores = []
            for v in per_channel:
                g = v.reshape(n_groups, gw).sum(1).sqrt().numpy().astype(np.float64)
                scores.append(g / max(g.mean(), 1e-12))
            group_importance = np.mean(scores, axis=0)
            name = f"stage_list.{i}.block_list.{j}"
            if activation_scale and name in activation_scale:
                act = activation_scale[name].reshape(n_groups, gw).mean(1)
                group_importance = group_importance * act / max(act.mean(), 1e-12)
            f1, f2 = block.se_fc1.weight.detach(), block.se_fc2.weight.detach()
            se = (f1.pow(2).sum(1).sqrt() * f2.pow(2).sum(0).sqrt()).numpy().astype(np.float64)
            plans.append(_BlockPlan(
                stage=i, index=j, in_channels=conv1.in_channels, out_channels=conv3.out_channels,
                stride=conv2.stride[0], kernel=conv2.kernel_size[0], group_width=gw,
                groups=list(range(n_groups)), se_hidden=list(range(f1.shape[0])), first_of_stage=j == 0,
                ungrouped=ungrouped,
                group_importance=group_importance / max(group_importance.mean(), 1e-12),
                se_importance=se / max(se.mean(), 1e-12)))
    return plans


def _activation_scale(model, example_windows, max_windows: int = 32) -> dict:
    """Mean |input of conv3| per middle channel of each block, on a few example windows."""
    import torch

    x = torch.as_tensor(np.asarray(example_windows[:max_windows], dtype=np.float32))
    if x.ndim == 2:
        x = x[:, None, :]
    out, handles = {}, []
    for i, stage in enumerate(model.stage_list):
        for j, block in enumerate(stage.block_list):
            name = f"stage_list.{i}.block_list.{j}"

            def hook(_m, inputs, _o, name=name):
                out[name] = inputs[0].detach().abs().mean(dim=(0, 2)).numpy().astype(np.float64)
            handles.append(block.conv3.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out


@dataclass
class _Budget:
    macs: float
    int8_bytes: float
    activation_bytes: float | None
    stated: dict = field(default_factory=dict)   # the caller's budgets, for messages (before margins)

    def overflow(self, fp: Footprint) -> dict:
        over = {}
        if fp.macs > self.macs:
            over["macs"] = fp.macs - self.macs
        if fp.int8_bytes > self.int8_bytes:
            over["int8_bytes"] = fp.int8_bytes - self.int8_bytes
        if self.activation_bytes is not None and fp.activation_bytes > self.activation_bytes:
            over["activation_bytes"] = fp.activation_bytes - self.activation_bytes
        return over

    def weighted_saving(self, before: Footprint, after: Footprint, over: dict) -> float:
        """Saving on the constraints still over budget, each as a fraction of its budget."""
        saving = 0.0
        if "macs" in over:
            saving += (before.macs - after.macs) / self.macs
        if "int8_bytes" in over:
            saving += (before.int8_bytes - after.int8_bytes) / self.int8_bytes
        if "activation_bytes" in over:
            saving += (before.activation_bytes - after.activation_bytes) / self.activation_bytes
        return saving


def _candidates(block: _BlockPlan):
    """(kind, unit index, importance) of the next unit this block could lose, least important first."""
    out = []
    min_groups = 1 if block.first_of_stage else 0   # a non-first block may go entirely
    if len(block.groups) > min_groups:
        g = min(block.groups, key=lambda u: (block.group_importance[u], u))
        imp = block.group_importance[g]
        if len(block.groups) == 1:  # dropping the block: its SE and conv3 go as well
            imp = float(block.group_importance.max()) * 2.0
        out.append(("group", g, float(imp)))
    if len(block.se_hidden) > 1:
        h = min(block.se_hidden, key=lambda u: (block.se_importance[u], u))
        out.append(("se", h, float(block.se_importance[h])))
    return out


def _remove(block: _BlockPlan, kind: str, unit: int) -> None:
    if kind == "group":
        block.groups.remove(unit)
    else:
        block.se_hidden.remove(unit)


def plan_pruning(model, window: int, budget: _Budget, cost_exponent: float = 0.5,
                 activation_scale: dict | None = None, runtime: str | None = None) -> tuple[list[_BlockPlan], Footprint]:
    """Greedy plan meeting `budget` (activations as `runtime` keeps them); BudgetError (with the floor
    reached) when it cannot."""
    blocks = _block_plans(model, activation_scale)
    fp = _footprint(model, blocks, window, runtime)
    while True:
        over = budget.overflow(fp)
        if not over:
            return blocks, fp
        best = None
        for b in blocks:
            for kind, unit, imp in _candidates(b):
                trial = copy.copy(b)
                trial.groups = list(b.groups)
                trial.se_hidden = list(b.se_hidden)
                _remove(trial, kind, unit)
                after = _footprint(model, [trial if x is b else x for x in blocks], window, runtime)
                saving = budget.weighted_saving(fp, after, over)
                if saving <= 0:
                    continue
                score = imp / saving ** cost_exponent
                if best is None or score < best[0]:
                    best = (score, b, kind, unit, after)
        if best is None:
            parts = []
            for key in over:
                limit = budget.stated.get(key, getattr(budget, key))
                value = getattr(fp, key)
                parts.append(f"{key} {value:,} > budget {int(limit):,} (over by {int(value - limit):,})")
            raise BudgetError("cannot prune the model into the budget with structured pruning: at the "
                              "smallest structure (one group or channel per stage-first block, other blocks "
                              "dropped, SE squeezed to one unit) " + "; ".join(parts))
        _, b, kind, unit, fp = best
        _remove(b, kind, unit)


def _keep_to_remove(n: int, keep: list[int]) -> list[int]:
    kept = set(keep)
    return [i for i in range(n) if i not in kept]


def _apply(model, blocks: list[_BlockPlan]) -> None:
    """Slice the layers of `model` (in place) to the plan; drop blocks with no group left."""
    import torch
    import torch_pruning as tp
    from torch import nn

    by_name = {b.name: b for b in blocks}
    for i, stage in enumerate(model.stage_list):
        kept_blocks = []
        for j, block in enumerate(stage.block_list):
            plan = by_name[f"stage_list.{i}.block_list.{j}"]
            if plan.dropped:
                continue
            gw = plan.group_width
            n_units = block.conv2.conv.out_channels // gw
            channels = [g * gw + c for g in sorted(plan.groups) for c in range(gw)]
            removed = _keep_to_remove(n_units * gw, channels)
            if removed:
                tp.prune_conv_out_channels(block.conv1.conv, removed)
                tp.prune_batchnorm_out_channels(block.bn2, removed)
                conv2 = block.conv2.conv
                if plan.ungrouped:  # a middle channel is one of conv2's rows and one of its input columns
                    tp.prune_conv_out_channels(conv2, removed)
                    tp.prune_conv_in_channels(conv2, removed)
                else:  # grouped conv2: drop whole groups (rows); each kept group keeps its gw input channels
                    idx = torch.tensor(channels, dtype=torch.long)
                    conv2.weight = nn.Parameter(conv2.weight.detach()[idx].clone())
                    if conv2.bias is not None:
                        conv2.bias = nn.Parameter(conv2.bias.detach()[idx].clone())
                    conv2.in_channels = conv2.out_channels = len(channels)
                    conv2.groups = len(plan.groups)
                    block.groups = len(plan.groups)
                tp.prune_batchnorm_out_channels(block.bn3, removed)
                tp.prune_conv_in_channels(block.conv3.conv, removed)
                for wrapper in (block.conv1, block.conv2, block.conv3):
                    wrapper.in_channels = wrapper.conv.in_channels
                    wrapper.out_channels = wrapper.conv.out_channels
                    wrapper.groups = wrapper.conv.groups
                block.middle_channels = len(channels)
            se_removed = _keep_to_remove(block.se_fc1.out_features, plan.se_hidden)
            if se_removed:
                tp.prune_linear_out_channels(block.se_fc1, se_removed)
                tp.prune_linear_in_channels(block.se_fc2, se_removed)
            kept_blocks.append(block)
        stage.block_list = nn.ModuleList(kept_blocks)
        stage.m_blocks = len(kept_blocks)
    model.m_blocks_list = [s.m_blocks for s in model.stage_list]


def layer_widths(model) -> dict[str, dict]:
    """Per block: middle channels, groups, channels per group, SE hidden units, in/out widths."""
    out = {}
    for i, stage in enumerate(model.stage_list):
        for j, block in enumerate(stage.block_list):
            conv2 = block.conv2.conv
            out[f"stage_list.{i}.block_list.{j}"] = {
                "in": block.conv1.conv.in_channels, "middle": conv2.out_channels, "groups": conv2.groups,
                "group_width": conv2.in_channels // conv2.groups, "se_hidden": block.se_fc1.out_features,
                "out": block.conv3.conv.out_channels}
    return out


def count_macs(model, window: int) -> int:
    from ecgedge.models.zoo import count_macs as zoo_count_macs
    return int(zoo_count_macs(model, window))


def _window_samples(spec) -> int:
    return int(spec.input.window_samples if hasattr(spec, "input") else spec["input"]["window_samples"])


def estimate_int8_bytes(model, window: int) -> int:
    """INT8 .tflite size estimate of an unpruned Net1D (weights, biases, per-channel quantisation records,
    flatbuffer tables): the planner's cost model. Within ~1% of the converter's output on af_lead1's
    presets, where parameters x 1.2 missed grouped models' many small tensors by 40%."""
    return int(_footprint(model, _block_plans(model, None), window).int8_bytes)


def prune_to_budget(model, spec, *, mac_budget: float, flash_budget_bytes: float,
                    ram_budget_bytes: float | None = None, example_windows=None, seed: int = 0,
                    progress: bool = True, margin: float = 0.95, cost_exponent: float = 0.5,
                    runtime: str | None = None):
    """A pruned deep copy of `model` within the budgets, and an info dict.

    mac_budget: MACs per window (conv + linear). flash_budget_bytes: INT8 model bytes allowed (weights,
    int32 biases, per-channel quantisation records and flatbuffer tables, estimated); the plan aims at
    `margin` of it. ram_budget_bytes: INT8 activation peak allowed (estimate; None: not checked), counted as
    the target's `runtime` keeps tensors alive (RUNTIME_ARENA: our engine's fused Swish, or tflite-micro's).
    Raises BudgetError naming what overflows, by how much, when whole-group pruning cannot get there.
    """
    import torch
    from rich.console import Console

    torch.manual_seed(seed)
    window = _window_samples(spec)
    console = Console(stderr=True, quiet=not progress)
    source = model
    model = copy.deepcopy(model).eval()
    widths_before = layer_widths(model)
    params_before = sum(p.numel() for p in model.parameters())
    macs_before = count_macs(model, window)
    fp_before = _footprint(model, _block_plans(model, None), window, runtime)
    if fp_before.macs != macs_before:
        raise ModelError(f"pruning cost model counts {fp_before.macs:,} MACs, zoo counts {macs_before:,}: "
                         "the model is not a Net1D the planner understands")
    activation_scale = _activation_scale(model, example_windows) if example_windows is not None else None

    scale = margin
    for attempt in range(4):
        budget = _Budget(macs=mac_budget * (1.0 if attempt == 0 else scale),
                         int8_bytes=flash_budget_bytes * scale,
                         activation_bytes=None if ram_budget_bytes is None else ram_budget_bytes * scale,
                         stated={"macs": mac_budget, "int8_bytes": flash_budget_bytes,
                                 "activation_bytes": ram_budget_bytes})
        with console.status("planning structured pruning"):
            blocks, fp_plan = plan_pruning(model, window, budget, cost_exponent, activation_scale, runtime)
        pruned = copy.deepcopy(model)
        _apply(pruned, blocks)
        macs_after = count_macs(pruned, window)
        if macs_after <= mac_budget:
            break
        scale *= 0.97
    else:
        raise BudgetError(f"pruned model still has {macs_after:,} MACs > budget {int(mac_budget):,}")

    with torch.no_grad():
        y = pruned(torch.zeros(1, model.first_conv.in_channels, window))
    if tuple(y.shape) != (1, model.dense.out_features):
        raise ModelError(f"pruned model output shape {tuple(y.shape)}, expected (1, {model.dense.out_features})")
    fp_after = _footprint(pruned, _block_plans(pruned, None), window, runtime)
    info = {
        "macs_before": macs_before, "macs_after": macs_after, "mac_budget": int(mac_budget),
        "params_before": params_before, "params_after": sum(p.numel() for p in pruned.parameters()),
        "int8_bytes_before": fp_before.int8_bytes, "int8_bytes_after": fp_after.int8_bytes,
        "flash_budget_bytes": int(flash_budget_bytes),
        "activation_bytes_before": fp_before.activation_bytes, "activation_bytes_after": fp_after.activation_bytes,
        "ram_budget_bytes": None if ram_budget_bytes is None else int(ram_budget_bytes),
        "widths_before": widths_before, "widths_after": layer_widths(pruned),
        "blocks_dropped": [b.name for b in blocks if b.dropped],
        "importance": "L2 of BN-folded weights per group" + (" x mean |activation|" if activation_scale else ""),
        "estimates": "int8_bytes and activation_bytes are analytic estimates; MACs are counted on the model",
    }
    console.print(f"pruned {macs_before / 1e6:.2f} M -> {macs_after / 1e6:.2f} M MACs "
                  f"(budget {mac_budget / 1e6:.2f} M), params {params_before:,} -> {info['params_after']:,}")
    del source
    return pruned, info

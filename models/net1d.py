"""Net1D: the 1-D CNN family of ECGFounder, written for ecgedge.

Module names and forward semantics follow ECGFounder's public `net1d.py` (PKUDigitalHealth/ECGFounder,
Shenda Hong's Net1D) so that an ECGFounder-layout state dict loads with `load_state_dict(strict=True)`:

    first_conv.conv.{weight,bias}, first_bn.*,
    stage_list.<i>.block_list.<j>.{bn1,bn2,bn3}.*, .{conv1,conv2,conv3}.conv.{weight,bias},
    .se_fc1.{weight,bias}, .se_fc2.{weight,bias}, dense.{weight,bias}

Semantics (checked against the reference file):
- Convolutions pad TF-style SAME: total pad p = max(0, (ceil(L/s)-1)*s + k - L), p//2 on the left,
  the rest on the right, zeros.
- The stem convolution always has stride 2 (whatever `stride` is), kernel `kernel_size`.
- Block (pre-activation bottleneck): [bn1 -> Swish -> dropout] (skipped in the very first block of the
  network) -> conv1 (1x1, to middle = int(out * ratio)) -> bn2 -> Swish -> dropout -> conv2 (kernel k,
  stride s on the first block of a stage, groups = stage_out_channels // groups_width) -> bn3 -> Swish ->
  dropout -> conv3 (1x1, to out) -> squeeze-excitation (mean over time, se_fc1 out -> out//2, Swish,
  se_fc2, sigmoid, multiply per channel) -> add shortcut.
- Shortcut: on downsampling blocks a max pool (kernel = stride = s) after zero padding p = s-1 split
  p//2 left / rest right (zeros, not -inf: a negative tail can pool to 0, as in the reference); when
  widths differ, zero channels are padded: (out-in)//2 before, the rest after.
- Head: mean over time, then `dense`.
- BatchNorm modules always exist (so the key set is the same with use_bn=False); when use_bn=False
  they are skipped in forward, as in the reference. ECGFounder itself uses use_bn=False, use_do=False.

Deviations from the reference (none change the state-dict layout or the eval-mode output):
- The dropout probability is a parameter (`dropout`, default 0.5 as in the reference).
- The SE product is a broadcast multiply instead of an einsum, and the channel padding pads the
  channel axis directly instead of transposing twice (same numbers; friendlier to ONNX/TFLite).
- No `return_features`/`verbose` switches; `features()` returns the pooled features instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SE_REDUCTION = 2  # squeeze-excitation bottleneck: out -> out // 2, as in ECGFounder


def same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding of TF-style SAME for a 1-D input of `length` samples."""
    out_len = (length + stride - 1) // stride
    total = max(0, (out_len - 1) * stride + kernel_size - length)
    return total // 2, total - total // 2


class MyConv1dPadSame(nn.Module):
    """nn.Conv1d with TF-style SAME padding; output length ceil(L / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
        return self.conv(F.pad(x, (left, right), "constant", 0.0))


class MyMaxPool1dPadSame(nn.Module):
    """Max pool (kernel = stride = kernel_size) after zero padding kernel_size-1 samples."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.max_pool = nn.MaxPool1d(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = max(0, self.kernel_size - 1)
        return self.max_pool(F.pad(x, (total // 2, total - total // 2), "constant", 0.0))


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class BasicBlock(nn.Module):
    """Bottleneck block: 1x1 conv -> grouped k conv -> 1x1 conv, squeeze-excitation, residual."""

    def __init__(self, in_channels: int, out_channels: int, ratio: float, kernel_size: int, stride: int,
                 groups: int, downsample: bool, is_first_block: bool = False, use_bn: bool = True,
                 use_do: bool = True, dropout: float = 0.5):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ratio = ratio
        self.kernel_size = kernel_size
        self.groups = groups
        self.downsample = downsample
        self.stride = stride if downsample else 1
        self.is_first_block = is_first_block
        self.use_bn = use_bn
        self.use_do = use_do
        self.middle_channels = int(out_channels * ratio)
        mid = self.middle_channels

        self.bn1 = nn.BatchNorm1d(in_channels)
        self.activation1 = Swish()
        self.do1 = nn.Dropout(p=dropout)
        self.conv1 = MyConv1dPadSame(in_channels, mid, kernel_size=1, stride=1)

        self.bn2 = nn.BatchNorm1d(mid)
        self.activation2 = Swish()
        self.do2 = nn.Dropout(p=dropout)
        self.conv2 = MyConv1dPadSame(mid, mid, kernel_size=kernel_size, stride=self.stride, groups=groups)

        self.bn3 = nn.BatchNorm1d(mid)
        self.activation3 = Swish()
        self.do3 = nn.Dropout(p=dropout)
        self.conv3 = MyConv1dPadSame(mid, out_channels, kernel_size=1, stride=1)

        self.se_fc1 = nn.Linear(out_channels, out_channels // SE_REDUCTION)
        self.se_fc2 = nn.Linear(out_channels // SE_REDUCTION, out_channels)
        self.se_activation = Swish()

        if downsample:
            self.max_pool = MyMaxPool1dPadSame(kernel_size=self.stride)

    def _pre(self, x: torch.Tensor, bn: nn.Module, act: nn.Module, do: nn.Module) -> torch.Tensor:
        if self.use_bn:
            x = bn(x)
        x = act(x)
        if self.use_do:
            x = do(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = x
        if not self.is_first_block:
            out = self._pre(out, self.bn1, self.activation1, self.do1)
        out = self.conv1(out)
        out = self.conv2(self._pre(out, self.bn2, self.activation2, self.do2))
        out = self.conv3(self._pre(out, self.bn3, self.activation3, self.do3))

        se = out.mean(-1)
        se = torch.sigmoid(self.se_fc2(self.se_activation(self.se_fc1(se))))
        out = out * se.unsqueeze(-1)

        if self.downsample:
            identity = self.max_pool(identity)
        if self.out_channels != self.in_channels:
            ch1 = (self.out_channels - self.in_channels) // 2
            ch2 = self.out_channels - self.in_channels - ch1
            identity = F.pad(identity, (0, 0, ch1, ch2), "constant", 0.0)
        return out + identity


class BasicStage(nn.Module):
    """m_blocks BasicBlocks; the first one downsamples by `stride` and changes the width."""

    def __init__(self, in_channels: int, out_channels: int, ratio: float, kernel_size: int, stride: int,
                 groups: int, i_stage: int, m_blocks: int, use_bn: bool = True, use_do: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.i_stage = i_stage
        self.m_blocks = m_blocks
        self.block_list = nn.ModuleList()
        for i_block in range(m_blocks):
            first = i_block == 0
            self.block_list.append(BasicBlock(
                in_channels=in_channels if first else out_channels,
                out_channels=out_channels, ratio=ratio, kernel_size=kernel_size,
                stride=stride if first else 1, groups=groups, downsample=first,
                is_first_block=(i_stage == 0 and first), use_bn=use_bn, use_do=use_do, dropout=dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class Net1D(nn.Module):
    """ECGFounder's Net1D. Input [B, in_channels, L] -> output [B, n_classes] (raw logits/values)."""

    def __init__(self, in_channels: int, base_filters: int, ratio: float, filter_list: list[int],
                 m_blocks_list: list[int], kernel_size: int, stride: int, groups_width: int, n_classes: int,
                 use_bn: bool = True, use_do: bool = True, dropout: float = 0.5):
        super().__init__()
        if len(filter_list) != len(m_blocks_list):
            raise ValueError(f"filter_list has {len(filter_list)} stages, m_blocks_list {len(m_blocks_list)}")
        self.in_channels = in_channels
        self.base_filters = base_filters
        self.ratio = ratio
        self.filter_list = list(filter_list)
        self.m_blocks_list = list(m_blocks_list)
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups_width = groups_width
        self.n_stages = len(filter_list)
        self.n_classes = n_classes
        self.use_bn = use_bn
        self.use_do = use_do

        self.first_conv = MyConv1dPadSame(in_channels, base_filters, kernel_size=kernel_size, stride=2)
        self.first_bn = nn.BatchNorm1d(base_filters)
        self.first_activation = Swish()

        self.stage_list = nn.ModuleList()
        width = base_filters
        for i_stage, (out_channels, m_blocks) in enumerate(zip(filter_list, m_blocks_list)):
            self.stage_list.append(BasicStage(
                in_channels=width, out_channels=out_channels, ratio=ratio, kernel_size=kernel_size,
                stride=stride, groups=max(1, out_channels // groups_width), i_stage=i_stage, m_blocks=m_blocks,
                use_bn=use_bn, use_do=use_do, dropout=dropout))
            width = out_channels
        self.dense = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, filter_list[-1]] before the dense head."""
        out = self.first_conv(x)
        if self.use_bn:
            out = self.first_bn(out)
        out = self.first_activation(out)
        for stage in self.stage_list:
            out = stage(out)
        return out.mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))

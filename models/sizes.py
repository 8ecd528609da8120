"""Parameters and MACs of a Net1D from its shapes alone (no torch): what `edge-train --list` prints.

Building the 15 zoo models in torch to count them took seconds; these sums of the layers' shapes give
the same integers (a test compares them with `zoo.count_params` / `zoo.count_macs` on built models for
every spec and preset). Counting follows `zoo.mac_breakdown`: every convolution (output length x output
channels x input channels per group x kernel) and linear layer (in x out); element-wise work is not
counted. Parameters: every weight and bias, BatchNorm's weight and bias (modules exist even with
use_bn=False); running statistics are buffers, not parameters.
"""

from __future__ import annotations

SE_REDUCTION = 2  # as ecgedge.models.net1d.SE_REDUCTION (the test checks both against built models)


def _conv(length: int, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> tuple[int, int, int]:
    """(params, MACs, output length) of a SAME-padded Conv1d with bias."""
    out_len = (length + stride - 1) // stride
    per_out = (c_in // groups) * kernel
    return c_out * per_out + c_out, out_len * c_out * per_out, out_len


def _linear(n_in: int, n_out: int) -> tuple[int, int]:
    return n_in * n_out + n_out, n_in * n_out


def net1d_size(arch: dict, window_samples: int) -> dict[str, int]:
    """{"params", "macs"} of `Net1D(**arch)` on one window of `window_samples` samples."""
    c_in, base, k, stride = arch["in_channels"], arch["base_filters"], arch["kernel_size"], arch["stride"]
    params, macs, length = _conv(window_samples, c_in, base, k, 2)   # the stem always has stride 2
    params += 2 * base                                             # first_bn
    width = base
    for out_ch, blocks in zip(arch["filter_list"], arch["m_blocks_list"]):
        groups = max(1, out_ch // arch["groups_width"])
        mid = int(out_ch * arch["ratio"])
        for i in range(blocks):
            first = i == 0
            c = width if first else out_ch
            p = 2 * c + 2 * mid + 2 * mid                          # bn1, bn2, bn3
            p1, m1, _ = _conv(length, c, mid, 1, 1)
            p2, m2, length = _conv(length, mid, mid, k, stride if first else 1, groups)
            p3, m3, _ = _conv(length, mid, out_ch, 1, 1)
            pf1, mf1 = _linear(out_ch, out_ch // SE_REDUCTION)
            pf2, mf2 = _linear(out_ch // SE_REDUCTION, out_ch)
            params += p + p1 + p2 + p3 + pf1 + pf2
            macs += m1 + m2 + m3 + mf1 + mf2
        width = out_ch
    p, m = _linear(width, arch["n_classes"])
    return {"params": params + p, "macs": macs + m}


def spec_size(spec, preset: str | None = None) -> dict[str, int]:
    """{"params", "macs"} of a zoo spec at a width preset (default: the spec's), per window."""
    arch = spec.arch.kwargs(preset)
    arch.update(in_channels=1, n_classes=spec.n_outputs)
    return net1d_size(arch, spec.input.window_samples)

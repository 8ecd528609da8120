"""Build, load and measure the zoo's models.

Checkpoints that load:
- ecgedge's own dict: {"model": name, "preset": ..., "arch": {...}, "state_dict": ..., "demo": ..., "card": ...}
  (written by `ecgedge.models.train`); the architecture comes from "arch".
- a bare state dict, or one wrapped under "state_dict" / "model" (ECGFounder's checkpoints), with or
  without DataParallel's "module." prefix. The architecture is the spec's `preset` when one is given,
  otherwise it is read off the tensors (widths, depths, kernel, groups, head size) so that an
  ECGFounder-layout dict loads as it is.
Any missing/unexpected key or shape difference is a ModelError naming the layer (and both shapes).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ecgedge.errors import ConfigError, ModelError
from ecgedge.models.net1d import Net1D
from ecgedge.models.specs import ModelSpec, get_spec

UNTRAINED_MESSAGE = "UNTRAINED weights: {name} has no trained checkpoint; outputs are meaningless (profiling only)"


class UntrainedWeightsWarning(UserWarning):
    """A model is being used with random (untrained) weights."""


def arch_kwargs(spec: ModelSpec, preset: str | None = None, **overrides) -> dict:
    """Full Net1D keyword arguments for a spec's preset (in_channels and n_classes filled in)."""
    kwargs = spec.arch.kwargs(preset)
    kwargs.update(in_channels=1, n_classes=spec.n_outputs)
    unknown = sorted(set(overrides) - set(kwargs) - {"dropout"})
    if unknown:
        raise ConfigError(f"unknown Net1D arguments {unknown}; expected some of {sorted(kwargs)}")
    kwargs.update(overrides)
    return kwargs


def build_model(name: str, preset: str | None = None, **overrides) -> Net1D:
    """A freshly initialised (untrained) model of spec `name` at width `preset` (default: the spec's)."""
    spec = get_spec(name)
    kwargs = arch_kwargs(spec, preset, **overrides)
    model = _build(kwargs)
    model.ecgedge_spec = spec.name
    model.ecgedge_preset = preset or spec.arch.default
    model.ecgedge_arch = kwargs
    return model


def _build(kwargs: dict) -> Net1D:
    try:
        return Net1D(**kwargs)
    except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as exc:
        raise ModelError(f"cannot build Net1D from {kwargs}: {exc}") from exc


# ---------------------------------------------------------------------------------------------- checkpoints

def _check_zip_integrity(path: Path) -> None:
    """torch.load does not check the CRC-32 of a zip checkpoint's members: a flipped byte in a tensor
    loads as a wrong weight. Check every member's CRC first (legacy non-zip files are left to torch)."""
    import zipfile
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:   # BadZipFile, OSError, zlib errors on corrupt compressed members, ...
        raise ModelError(f"checkpoint {str(path)!r} is a damaged zip archive: {type(exc).__name__}: {exc}") from exc
    if bad is not None:
        raise ModelError(f"checkpoint {str(path)!r} is corrupted: member {bad!r} fails its CRC-32 check "
                         "(expected the bytes torch.save wrote)")


def read_checkpoint(path: str | Path) -> dict:
    """torch.load a checkpoint safely (weights_only); ModelError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} not found")
    _check_zip_integrity(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated pickle, non-tensor payloads ...
        raise ModelError(f"checkpoint {str(path)!r} is not a readable torch checkpoint: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(obj, Mapping):
        raise ModelError(f"checkpoint {str(path)!r}: expected a dict, got {type(obj).__name__}")
    return dict(obj)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap_state_dict(obj: Mapping) -> tuple[dict, str]:
    """(state dict with 'module.' prefixes removed, layout) from any supported checkpoint object."""
    if isinstance(obj.get("state_dict"), Mapping) and isinstance(obj.get("arch"), Mapping):
        layout, sd = "ecgedge", obj["state_dict"]
    elif _is_state_dict(obj):
        layout, sd = "state_dict", obj
    elif _is_state_dict(obj.get("state_dict")):
        layout, sd = "wrapped", obj["state_dict"]
    elif _is_state_dict(obj.get("model")):
        layout, sd = "wrapped", obj["model"]
    else:
        raise ModelError(f"checkpoint holds no state dict: top-level keys {sorted(map(str, obj))[:10]}; "
                         "expected tensors, or a dict with 'state_dict' or 'model'")
    out = {}
    for key, value in sd.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out, layout


_BLOCK_KEY = re.compile(r"^stage_list\.(\d+)\.block_list\.(\d+)\.")


def infer_arch(state_dict: Mapping[str, torch.Tensor], stride: int = 2) -> dict:
    """Net1D keyword arguments read off an ECGFounder-layout state dict (stride cannot be read: given)."""
    try:
        stem = state_dict["first_conv.conv.weight"]
        dense = state_dict["dense.weight"]
    except KeyError as exc:
        raise ModelError(f"not a Net1D state dict: no {exc.args[0]!r}") from None
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    n_stages = len(blocks)
    if sorted(blocks) != list(range(n_stages)) or n_stages == 0:
        raise ModelError(f"not a Net1D state dict: stage indices {sorted(blocks)}")
    filter_list, m_blocks_list, groups_width, ratio = [], [], None, None
    for i in range(n_stages):
        prefix = f"stage_list.{i}.block_list.0."
        try:
            conv2 = state_dict[prefix + "conv2.conv.weight"]
            conv3 = state_dict[prefix + "conv3.conv.weight"]
        except KeyError as exc:
            raise ModelError(f"not a Net1D state dict: no {exc.args[0]!r}") from None
        out_ch, mid = int(conv3.shape[0]), int(conv3.shape[1])
        groups = mid // int(conv2.shape[1])
        filter_list.append(out_ch)
        m_blocks_list.append(len(blocks[i]))
        groups_width = out_ch // groups if groups_width is None else groups_width
        ratio = mid / out_ch if ratio is None else ratio
    # BatchNorm modules exist either way; they were used only if their statistics ever moved.
    tracked = [v for k, v in state_dict.items() if k.endswith("num_batches_tracked")]
    use_bn = any(int(v) > 0 for v in tracked) if tracked else True
    return {"in_channels": int(stem.shape[1]), "base_filters": int(stem.shape[0]),
            "ratio": int(ratio) if float(ratio).is_integer() else ratio, "filter_list": filter_list,
            "m_blocks_list": m_blocks_list, "kernel_size": int(stem.shape[2]), "stride": stride,
            "groups_width": groups_width, "n_classes": int(dense.shape[0]), "use_bn": use_bn,
            "use_do": False}


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                            source: str = "checkpoint", skip_prefixes: tuple[str, ...] = ()) -> None:
    """Strict load whose errors name the layer: shape mismatches first, then missing/unexpected keys."""
    expected = model.state_dict()
    given = {k: v for k, v in state_dict.items() if not k.startswith(skip_prefixes)}
    for key, tensor in given.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelError(f"{source}: layer {key!r} has shape {tuple(tensor.shape)} in the checkpoint but "
                             f"the model expects {tuple(expected[key].shape)}")
    missing = [k for k in expected if k not in given and not k.startswith(skip_prefixes)]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing layers {missing[:6]}{' ...' if len(missing) > 6 else ''} ({len(missing)})")
        if unexpected:
            parts.append(f"unexpected layers {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''} "
                         f"({len(unexpected)})")
        raise ModelError(f"{source}: " + "; ".join(parts))
    model.load_state_dict(given, strict=not skip_prefixes)


def load_model(name: str, checkpoint: str | Path | None = None, preset: str | None = None,
               drop_head: bool = False) -> tuple[Net1D, ModelSpec, dict]:
    """(model in eval mode, spec, meta) from `checkpoint` or the spec's shipped weights.

    With no checkpoint and no shipped weights the model is built untrained: an UntrainedWeightsWarning
    is raised and meta["untrained"] is True. `drop_head=True` keeps a fresh `dense` head (fine-tuning
    from a foundation checkpoint with other classes, as ECGFounder's own scripts do).
    """
    spec = get_spec(name)
    if checkpoint is None:
        checkpoint = spec.weights_path()
        if checkpoint is None:
            warnings.warn(UNTRAINED_MESSAGE.format(name=name), UntrainedWeightsWarning, stacklevel=2)
            model = build_model(name, preset)
            meta = {"model": name, "preset": model.ecgedge_preset, "arch": model.ecgedge_arch,
                    "demo": True, "untrained": True, "layout": None, "checkpoint": None, "card": {}}
            return model.eval(), spec, meta

    path = Path(checkpoint)
    obj = read_checkpoint(path)
    state_dict, layout = unwrap_state_dict(obj)
    source = f"checkpoint {str(path)!r}"
    if layout == "ecgedge":
        if obj.get("model") not in (None, name):
            raise ModelError(f"{source} is for model {obj.get('model')!r}, not {name!r}")
        kwargs = dict(obj["arch"])
        ckpt_preset = obj.get("preset")
    elif preset is not None:
        kwargs, ckpt_preset = arch_kwargs(spec, preset), preset
    else:
        kwargs, ckpt_preset = infer_arch(state_dict), None
    # a head of another size is a shape mismatch on dense.* (or dropped with drop_head)
    kwargs["n_classes"] = spec.n_outputs
    if kwargs.get("in_channels", 1) != 1:
        raise ModelError(f"{source}: layer 'first_conv.conv.weight' takes {kwargs['in_channels']} input "
                         f"channels; {name} is single-lead (expects 1)")
    model = _build(kwargs)
    load_state_dict_checked(model, state_dict, source, skip_prefixes=("dense.",) if drop_head else ())
    model.ecgedge_spec, model.ecgedge_preset, model.ecgedge_arch = name, ckpt_preset, kwargs
    meta = {"model": name, "preset": ckpt_preset, "arch": kwargs, "layout": layout, "checkpoint": str(path),
            "demo": bool(obj.get("demo", False)) if layout == "ecgedge" else False,
            "untrained": False, "head_untrained": bool(drop_head), "card": dict(obj.get("card") or {})}
    if drop_head:
        warnings.warn(f"UNTRAINED head: {name}'s dense layer is freshly initialised", UntrainedWeightsWarning,
                      stacklevel=2)
    return model.eval(), spec, meta


def is_demo(meta: Mapping) -> bool:
    """True for demo (synthetic-data) weights and for untrained ones: neither is for clinical use."""
    return bool(meta.get("demo")) or bool(meta.get("untrained"))


# ---------------------------------------------------------------------------------------------- size

def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            return module.in_channels
    raise ModelError("model has no convolution: cannot tell its input channels")


def mac_breakdown(model: nn.Module, window_samples: int) -> list[dict]:
    """Multiply-accumulates of each convolution and linear layer for one window, in execution order.

    Conv: out_length x out_channels x (in_channels / groups) x kernel; Linear: in x out (per window).
    Element-wise work (BN, Swish, SE multiply, residual add, pooling) is not counted.
    """
    names = {m: n for n, m in model.named_modules()}
    rows: list[dict] = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv1d):
            macs = (output.shape[-1] * module.out_channels * (module.in_channels // module.groups)
                    * module.kernel_size[0])
            kind = "conv1d"
        elif isinstance(module, nn.Conv2d):
            macs = (output.shape[-1] * output.shape[-2] * module.out_channels
                    * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1])
            kind = "conv2d"
        else:
            macs = module.in_features * module.out_features * (output.numel() // output.shape[-1] // output.shape[0])
            kind = "linear"
        rows.append({"layer": names[module], "kind": kind, "macs": int(macs), "output_shape": list(output.shape[1:])})

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, _input_channels(model), window_samples))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return rows


def count_macs(model: nn.Module, window_samples: int) -> int:
    """MACs of one window (convolutions and linear layers; see mac_breakdown)."""
    return sum(row["macs"] for row in mac_breakdown(model, window_samples))

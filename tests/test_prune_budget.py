"""Structured pruning of Net1D to a budget: whole groups, forward shape, MACs, errors."""

import copy
import dataclasses
import io

import pytest
import torch

from ecgedge.errors import BudgetError
from ecgedge.models.net1d import Net1D
from ecgedge.models.specs import get_spec
from ecgedge.models.zoo import build_model, count_macs
from ecgedge.quantize.prune import layer_widths, prune_to_budget

WINDOW = 1000


@pytest.fixture(scope="module")
def spec():
    s = get_spec("pocket_k")
    return dataclasses.replace(s, input=dataclasses.replace(s.input, window_samples=WINDOW))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = Net1D(1, 16, 1.0, [32, 64, 96], [1, 2, 2], 16, 2, 16, 3)
    with torch.no_grad():  # BN statistics away from identity, so folding matters to importance
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.2, 1.5)
    return m.eval()


def grouped_convs(model):
    return [b.conv2.conv for s in model.stage_list for b in s.block_list]


def test_zero_pruning_gives_the_same_model(model, spec):
    pruned, info = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, progress=False)
    x = torch.randn(2, 1, WINDOW)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=0, atol=0)
    assert info["macs_after"] == info["macs_before"] and info["widths_after"] == info["widths_before"]
    assert pruned is not model


def test_prunes_whole_groups_below_the_mac_budget(model, spec):
    before = count_macs(model, WINDOW)
    budget = before * 0.45
    pruned, info = prune_to_budget(model, spec, mac_budget=budget, flash_budget_bytes=1e12, progress=False)
    assert count_macs(pruned, WINDOW) == info["macs_after"] <= budget
    assert info["macs_before"] == before
    for conv in grouped_convs(pruned):
        assert conv.in_channels // conv.groups == 16 and conv.in_channels == conv.out_channels
        assert conv.weight.shape[1] == 16
    assert any(w["groups"] < info["widths_before"][k]["groups"] for k, w in info["widths_after"].items()
               if k in info["widths_before"])
    with torch.no_grad():
        y = pruned(torch.randn(3, 1, WINDOW))
    assert y.shape == (3, 3) and torch.isfinite(y).all()
    # same module classes and names as the source, so the Keras rebuild can read it
    names = dict(model.named_modules())
    for name, module in pruned.named_modules():
        assert name in names and type(module) is type(names[name])
    # deep-copyable and saveable
    clone = copy.deepcopy(pruned)
    buf = io.BytesIO()
    torch.save(pruned, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(1, 1, WINDOW)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), clone(x))


def test_flash_budget_is_met(model, spec):
    _, full = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, progress=False)
    budget = full["int8_bytes_before"] * 0.5
    pruned, info = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=budget, progress=False)
    assert info["int8_bytes_after"] <= budget
    assert info["params_after"] < info["params_before"] * 0.6


def test_tight_budget_drops_whole_blocks(model, spec):
    pruned, info = prune_to_budget(model, spec, mac_budget=count_macs(model, WINDOW) * 0.2,
                                   flash_budget_bytes=1e12, progress=False)
    assert info["blocks_dropped"], info["widths_after"]
    assert len(layer_widths(pruned)) < len(layer_widths(model))
    assert pruned(torch.randn(1, 1, WINDOW)).shape == (1, 3)


def test_impossible_budget_says_what_overflows(model, spec):
    with pytest.raises(BudgetError, match=r"macs [\d,]+ > budget 1,000 \(over by [\d,]+\)"):
        prune_to_budget(model, spec, mac_budget=1000, flash_budget_bytes=1e12, progress=False)
    with pytest.raises(BudgetError, match=r"int8_bytes .*over by"):
        prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=2000, progress=False)
    with pytest.raises(BudgetError, match=r"activation_bytes .*over by"):
        prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, ram_budget_bytes=1000,
                        progress=False)


def test_example_windows_change_the_importance(model, spec):
    x = torch.randn(8, 1, WINDOW).numpy()
    _, info = prune_to_budget(model, spec, mac_budget=count_macs(model, WINDOW) * 0.45,
                              flash_budget_bytes=1e12, example_windows=x, progress=False)
    assert "activation" in info["importance"]


def test_reference_preset_fits_cortex_m7():
    from ecgedge.targets import get_target

    spec = get_spec("pocket_k")
    target = get_target("cortex-m7")
    reference = build_model("pocket_k", "reference").eval()
    pruned, info = prune_to_budget(reference, spec, mac_budget=target.mac_budget,
                                   flash_budget_bytes=target.model_flash_budget, progress=False)
    assert info["macs_after"] <= target.mac_budget < info["macs_before"]
    assert info["int8_bytes_after"] <= target.model_flash_budget
    assert count_macs(pruned, spec.input.window_samples) == info["macs_after"]


def _kept_rows(pruned_weight, source_weight):
    """Indices of the source's rows (dim 0) that the pruned tensor kept, found by exact equality."""
    kept = []
    for row in pruned_weight:
        hits = [i for i in range(len(source_weight)) if torch.equal(source_weight[i], row)]
        assert len(hits) == 1
        kept.append(hits[0])
    return kept


def test_ungrouped_convolutions_lose_single_channels_and_the_rest_is_the_masked_model():
    """af_lead1's reference preset has ungrouped conv2s: whole-group pruning could not shrink it. Channel
    pruning must give exactly the source model with the removed middle channels cut off (their columns
    of conv2 and conv3 zeroed), and the planner's MAC count must be the model's."""
    from ecgedge.quantize.prune import _block_plans, _footprint

    af = get_spec("af_lead1")
    window = af.input.window_samples
    torch.manual_seed(1)
    source = build_model("af_lead1", "reference").eval()
    with torch.no_grad():
        for mod in source.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.running_mean.uniform_(-0.2, 0.2)
    before = count_macs(source, window)
    pruned, info = prune_to_budget(source, af, mac_budget=before * 0.5, flash_budget_bytes=1e12, progress=False)
    assert count_macs(pruned, window) == info["macs_after"] <= before * 0.5
    assert _footprint(pruned, _block_plans(pruned, None), window).macs == info["macs_after"]
    assert not info["blocks_dropped"]
    masked = copy.deepcopy(source)
    shrunk = 0
    for sb, pb, mb in zip((b for s in source.stage_list for b in s.block_list),
                          (b for s in pruned.stage_list for b in s.block_list),
                          (b for s in masked.stage_list for b in s.block_list)):
        conv2 = pb.conv2.conv
        assert conv2.groups == 1 and conv2.in_channels == conv2.out_channels == pb.conv1.conv.out_channels
        kept = _kept_rows(pb.conv1.conv.weight, sb.conv1.conv.weight)
        removed = [c for c in range(sb.conv1.conv.out_channels) if c not in kept]
        shrunk += bool(removed)
        with torch.no_grad():
            mb.conv2.conv.weight[:, removed] = 0
            mb.conv3.conv.weight[:, removed] = 0
    assert shrunk >= 3
    x = torch.randn(3, 1, window)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(pruned(x), source(x), atol=1e-3)


def test_ram_budget_is_counted_as_the_targets_runtime_keeps_tensors(model, spec):
    """Our engine folds Swish into the conv's store (two tensors alive, not tflite-micro's three): a RAM budget
    between the two counts is met as it is for an ecgedge-c target, and needs pruning for tflite-micro."""
    _, tflm = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, progress=False)
    _, ours = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, progress=False,
                              runtime="ecgedge-c")
    assert ours["activation_bytes_before"] < tflm["activation_bytes_before"]
    ram = (ours["activation_bytes_before"] + tflm["activation_bytes_before"]) / 2 / 0.95
    _, as_ours = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, ram_budget_bytes=ram,
                                 progress=False, runtime="ecgedge-c")
    assert as_ours["widths_after"] == as_ours["widths_before"]
    try:
        _, as_tflm = prune_to_budget(model, spec, mac_budget=1e12, flash_budget_bytes=1e12, ram_budget_bytes=ram,
                                     progress=False)
        assert as_tflm["widths_after"] != as_tflm["widths_before"]
    except BudgetError as e:            # or the stem's tensors alone are over it
        assert "activation_bytes" in str(e)

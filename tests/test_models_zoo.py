"""Zoo: specs as data, building, loading every checkpoint layout, errors, parameter and MAC counts."""

import json
import warnings

import pytest
import torch

from ecgedge.errors import ConfigError, EdgeError, ModelError
from ecgedge.models.net1d import Net1D
from ecgedge.models.specs import get_spec, list_specs
from ecgedge.models.zoo import (UntrainedWeightsWarning, build_model, count_macs, count_params, infer_arch,
                                is_demo, load_model, mac_breakdown)
from ecgedge.targets import get_target


def test_specs_registry_contract():
    assert list_specs()[:4] == ["pocket_k", "anyecg_echo", "holter_sleep", "pg_ssl"]
    spec = get_spec("pocket_k")
    assert spec.output_names == ["p_k_gt_5_5", "p_k_ge_6_0", "k_mmol"]
    assert [o.kind for o in spec.outputs] == ["logit", "logit", "regression"]
    assert spec.outputs[2].unit == "mmol/L"
    c = spec.input
    assert (c.signal, c.lead, c.sampling_rate_hz, c.window_samples, c.units, c.scale_uv) == \
        ("ecg", "I", 500, 5000, "uV", 1000.0)
    assert c.preprocessing == {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}
    assert get_spec("anyecg_echo").n_outputs == 13
    assert get_spec("holter_sleep").output_names == ["stage_wake", "stage_n1", "stage_n2", "stage_n3", "stage_rem"]
    assert get_spec("pg_ssl").input.signal == "ppg"
    for name in list_specs():  # the manifest embeds to_dict(): it must be JSON
        d = json.loads(json.dumps(get_spec(name).to_dict()))
        assert d["name"] == name and len(d["outputs"]) == get_spec(name).n_outputs


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        get_spec("pocket_q")
    for name in list_specs():
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="pocket_k"):
        build_model("nonexistent")
    with pytest.raises(ConfigError, match="reference"):
        build_model("pocket_k", preset="huge")


def test_every_spec_and_preset_builds_and_runs():
    for name in list_specs():
        spec = get_spec(name)
        for preset in spec.arch.presets:
            model = build_model(name, preset).eval()
            with torch.no_grad():
                y = model(torch.zeros(1, 1, spec.input.window_samples))
            assert y.shape == (1, spec.n_outputs)


def test_reference_is_bigger_than_cortex_m7_and_small_fits():
    m7 = get_target("cortex-m7")
    ref = build_model("pocket_k")
    macs = count_macs(ref, 5000)
    assert macs > m7.mac_budget  # export must prune
    assert 60e6 <= macs <= 90e6
    assert 0.5e6 <= count_params(ref) <= 0.9e6
    assert count_params(ref) * 4 <= 4 * 1024 * 1024
    assert count_macs(build_model("pocket_k", "small"), 5000) <= m7.mac_budget


def test_mac_counter_matches_hand_count():
    model = Net1D(in_channels=1, base_filters=4, ratio=1, filter_list=[8], m_blocks_list=[1], kernel_size=3,
                  stride=2, groups_width=4, n_classes=2)
    # stem 10x4x1x3, conv1 10x8x4x1, conv2 (groups 2) 5x8x4x3, conv3 5x8x8x1, SE 8x4 + 4x8, dense 8x2
    assert count_macs(model, 20) == 120 + 320 + 480 + 320 + 32 + 32 + 16
    rows = mac_breakdown(model, 20)
    assert [r["layer"] for r in rows][:2] == ["first_conv.conv", "stage_list.0.block_list.0.conv1.conv"]
    assert {r["layer"]: r["macs"] for r in rows}["stage_list.0.block_list.0.conv2.conv"] == 480
    assert count_params(model) == sum(p.numel() for p in model.parameters())


def _ecgfounder_layout(base, filters, blocks, kernel, groups_width, n_classes, in_channels=1):
    """A state dict written out from ECGFounder's layout (not from our Net1D), random values."""
    g = torch.Generator().manual_seed(7)
    sd = {}

    def bn(prefix, c):
        sd.update({f"{prefix}.weight": torch.rand(c, generator=g) + 0.5, f"{prefix}.bias": torch.randn(c, generator=g),
                   f"{prefix}.running_mean": torch.zeros(c), f"{prefix}.running_var": torch.ones(c),
                   f"{prefix}.num_batches_tracked": torch.tensor(0)})

    def conv(prefix, c_out, c_in_per_group, k):
        sd[f"{prefix}.conv.weight"] = torch.randn(c_out, c_in_per_group, k, generator=g) * 0.1
        sd[f"{prefix}.conv.bias"] = torch.randn(c_out, generator=g) * 0.1

    def linear(prefix, c_out, c_in):
        sd[f"{prefix}.weight"] = torch.randn(c_out, c_in, generator=g) * 0.1
        sd[f"{prefix}.bias"] = torch.randn(c_out, generator=g) * 0.1

    conv("first_conv", base, in_channels, kernel)
    bn("first_bn", base)
    width = base
    for i, (out, m) in enumerate(zip(filters, blocks)):
        groups = out // groups_width
        for j in range(m):
            c_in = width if j == 0 else out
            p = f"stage_list.{i}.block_list.{j}"
            bn(f"{p}.bn1", c_in)
            conv(f"{p}.conv1", out, c_in, 1)
            bn(f"{p}.bn2", out)
            conv(f"{p}.conv2", out, out // groups, kernel)
            bn(f"{p}.bn3", out)
            conv(f"{p}.conv3", out, out, 1)
            linear(f"{p}.se_fc1", out // 2, out)
            linear(f"{p}.se_fc2", out, out // 2)
        width = out
    linear("dense", n_classes, width)
    return sd


def test_ecgfounder_layout_state_dict_loads(tmp_path):
    sd = _ecgfounder_layout(32, [32, 64, 64], [2, 1, 2], 16, 16, n_classes=150)
    arch = infer_arch(sd)
    assert arch["filter_list"] == [32, 64, 64] and arch["m_blocks_list"] == [2, 1, 2]
    assert arch["groups_width"] == 16 and arch["kernel_size"] == 16 and arch["base_filters"] == 32
    assert arch["use_bn"] is False  # ECGFounder never ran its BatchNorms
    # wrapped and DataParallel-prefixed, as ECGFounder's own checkpoints are
    path = tmp_path / "ecgfounder_1lead.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, path)
    with pytest.raises(ModelError, match=r"dense\.weight.*\(150, 64\).*\(3, 64\)"):
        load_model("pocket_k", path)  # 150 ECGFounder classes are not pocket_k's 3 outputs
    with pytest.warns(UntrainedWeightsWarning, match="head"):
        model, spec, meta = load_model("pocket_k", path, drop_head=True)
    assert meta["layout"] == "wrapped" and meta["head_untrained"] and not is_demo(meta)
    got = model.state_dict()
    for key in ("first_conv.conv.weight", "stage_list.2.block_list.1.conv2.conv.weight",
                "stage_list.1.block_list.0.se_fc2.bias"):
        assert torch.equal(got[key], sd[key])
    with torch.no_grad():
        assert model(torch.randn(2, 1, 5000)).shape == (2, 3)
    # with a head of the right size it loads whole, under "model" too
    sd3 = _ecgfounder_layout(32, [32, 64, 64], [2, 1, 2], 16, 16, n_classes=3)
    torch.save({"model": sd3}, path)
    model, _, meta = load_model("pocket_k", path)
    assert torch.equal(model.state_dict()["dense.weight"], sd3["dense.weight"])
    assert meta["untrained"] is False and meta["demo"] is False


def test_own_checkpoint_round_trip_and_mismatch_names_layer(tmp_path):
    model = build_model("pocket_k", "tiny")
    ckpt = {"model": "pocket_k", "preset": "tiny", "arch": model.ecgedge_arch, "state_dict": model.state_dict(),
            "demo": True, "card": {"auroc_k55": 0.5}}
    path = tmp_path / "ok.pt"
    torch.save(ckpt, path)
    loaded, spec, meta = load_model("pocket_k", path)
    assert is_demo(meta) and meta["card"]["auroc_k55"] == 0.5 and not loaded.training
    x = torch.randn(1, 1, 5000)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))

    bad = dict(ckpt, state_dict=dict(ckpt["state_dict"]))
    key = "stage_list.1.block_list.0.conv2.conv.weight"
    bad["state_dict"][key] = torch.zeros(16, 4, 9)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as err:
        load_model("pocket_k", tmp_path / "bad.pt")
    msg = str(err.value)
    assert key in msg and "(16, 4, 9)" in msg and str(tuple(model.state_dict()[key].shape)) in msg
    assert isinstance(err.value, EdgeError)

    # a bare state dict with a preset given: same check
    sd = dict(model.state_dict())
    sd["dense.weight"] = torch.zeros(5, 32)
    torch.save(sd, tmp_path / "bare.pt")
    with pytest.raises(ModelError, match=r"'dense\.weight'.*\(5, 32\).*\(3, 32\)"):
        load_model("pocket_k", tmp_path / "bare.pt", preset="tiny")
    del sd["dense.weight"]
    sd["dense.weight"] = model.state_dict()["dense.weight"]
    sd.pop("first_bn.bias")
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(ModelError, match="first_bn.bias"):
        load_model("pocket_k", tmp_path / "missing.pt", preset="tiny")
    with pytest.raises(ModelError, match="not 'anyecg_echo'|for model 'pocket_k'"):
        load_model("anyecg_echo", path)


def test_unreadable_checkpoints_raise_model_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 50)
    with pytest.raises(ModelError, match="junk.pt"):
        load_model("pocket_k", junk)
    with pytest.raises(ModelError, match="not found"):
        load_model("pocket_k", tmp_path / "absent.pt")
    truncated = tmp_path / "truncated.pt"
    torch.save({"state_dict": {"a": torch.zeros(100)}, "arch": {}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ModelError):
        load_model("pocket_k", truncated)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="expected a dict"):
        load_model("pocket_k", tmp_path / "list.pt")


def test_untrained_models_warn_loudly():
    with pytest.warns(UntrainedWeightsWarning, match="UNTRAINED weights"):
        model, spec, meta = load_model("anyecg_echo")
    assert meta["untrained"] and is_demo(meta) and spec.name == "anyecg_echo"
    assert model(torch.zeros(1, 1, 5000)).shape == (1, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model("holter_sleep")  # building for profiling is silent

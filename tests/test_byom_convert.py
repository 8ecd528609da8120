"""The general PyTorch / ONNX -> full-INT8 TFLite route (quantize/convert_graph, convert_onnx, convert_keras)
and the contract type (models/specs): real torch.export graphs, real Keras, real TFLiteConverter, real
tflite-micro and LiteRT interpreters. No training here (tests/test_byom_families.py trains)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ecgedge.errors import ConfigError, ModelError


class OpMix(nn.Module):
    """Every kind of layer of the supported set at least once, in a small graph."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(1, 6, 5, stride=2, padding=2, padding_mode="reflect")
        self.c2 = nn.Conv1d(6, 6, 3, padding=1, padding_mode="replicate", groups=3)
        self.c3 = nn.Conv1d(6, 8, 3, padding=1, padding_mode="circular")
        self.c4 = nn.Conv1d(8, 8, 3, padding="same", dilation=2)
        self.dw = nn.Conv1d(8, 16, 5, padding=2, groups=8)                # depthwise, multiplier 2
        self.bn = nn.BatchNorm1d(16)
        self.bn_alone = nn.BatchNorm1d(16)
        self.pool = nn.AvgPool1d(3, 2, 1)
        self.mpool = nn.MaxPool1d(3, 2, 1)
        self.amax = nn.AdaptiveMaxPool1d(4)
        self.lstm = nn.LSTM(16, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(12, 5, batch_first=False)
        self.fc = nn.Linear(16 * 4, 6)
        self.fc_bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6 + 5 + 12 + 16, 4)

    def forward(self, x):
        y = F.gelu(self.c1(x))
        y = F.relu6(self.c2(y)) + F.silu(y)
        y = F.leaky_relu(self.c3(y), 0.2)
        y = torch.tanh(self.bn(self.dw(self.c4(y)))) * 0.5 - 0.1
        y = F.hardswish(self.bn_alone(self.pool(y)))
        flat = torch.flatten(self.amax(y), 1)                  # [N, 16 * 4] taken in torch (channel) order
        a = torch.sigmoid(self.fc_bn(self.fc(flat)))
        seq, _ = self.lstm(self.mpool(y).transpose(1, 2))      # [N, T, 12]
        _, h = self.gru(seq.permute(1, 0, 2))                  # time-major GRU, final state [1, N, 5]
        se = F.hardsigmoid(y.mean(dim=2))
        z = torch.cat([a, h[-1], seq.mean(1), se * y.amax(dim=2)], dim=1)
        z = z + y.sum(dim=2).amax(1, keepdim=True) / 8
        return torch.softmax(self.fc2(F.relu(z)), dim=-1)


def _randomise_bn(model):
    torch.manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.6, 1.4)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _varied(n, w, seed=0):
    """Windows of very different scale and offset: a random network's outputs move with them."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, w)) * rng.uniform(0.2, 4, (n, 1)) + rng.uniform(-2, 2, (n, 1))).astype(np.float32)


def _windows(n, w, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(w) / 100.0
    return (np.sin(2 * np.pi * 1.3 * t)[None] * rng.uniform(0.5, 1.5, (n, 1)) + 0.2 * rng.normal(size=(n, w))
            ).astype(np.float32)


@pytest.fixture(scope="module")
def opmix():
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import to_keras
    torch.manual_seed(0)
    model = _randomise_bn(OpMix())
    with torch.no_grad():       # a head wide enough that the softmax output moves with the input
        model.fc2.weight.mul_(4.0)
    gm = canonical(model, 96)
    keras_model, info = to_keras(gm, 96)
    return model, gm, keras_model, info


def test_every_supported_layer_rebuilds_in_keras_to_float_precision(opmix):
    from ecgedge.quantize.convert_keras import max_abs_difference
    model, gm, keras_model, info = opmix
    x = _windows(3, 96)[:, None, :]
    with torch.no_grad():
        assert torch.equal(gm(torch.from_numpy(x)), model(torch.from_numpy(x)))   # lifting changes nothing
    # GELU is built as its tanh form (tflite-micro has no GELU kernel): within 1e-3 of the erf form here
    assert max_abs_difference(gm, keras_model, x) < 2e-4
    assert info["transposes"] == []
    mods = {m["path"] for m in info["layers"].values()}
    assert {"c1", "dw", "lstm", "gru", "fc2"} <= mods


def test_op_mix_is_full_int8_and_runs_in_tflite_micro(opmix):
    from ecgedge.contract.runners import smallest_arena
    from ecgedge.quantize import tflite_export as te
    from ecgedge.quantize.validate import run_int8
    model, _, keras_model, info = opmix
    x = _varied(40, 96, seed=1)
    tfl = te.quantize_calibrated(te.calibrate_only(keras_model, x[:24]))
    ops = te.check_int8_only(tfl)["ops"]           # no float tensor, no TRANSPOSE, ops tflite-micro runs
    assert {"SPLIT", "TANH", "SUB", "CONCATENATION", "STRIDED_SLICE", "SOFTMAX", "HARD_SWISH", "LEAKY_RELU",
            "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(ops)
    arena = smallest_arena(tfl)
    q_lite, d_lite = run_int8(tfl, x[24:], "litert")
    q_tflm, _ = run_int8(tfl, x[24:], "tflm", arena_size=arena)
    assert np.abs(q_lite.astype(int) - q_tflm.astype(int)).max() <= 1        # LiteRT vs TFLM: 1 LSB at most
    with torch.no_grad():
        ref = model(torch.from_numpy(x[24:, None, :])).numpy()
    assert np.abs(d_lite - ref).max() < 0.08                                  # softmax probabilities
    assert len(np.unique(q_tflm, axis=0)) > 4 and ref.std(axis=0).max() > 0.01


def test_recurrent_reverse_pass_runs_only_the_steps_the_model_reads():
    """out[:, -1] of a bidirectional GRU needs one reverse step: the unrolled graph has one reverse cell."""
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import to_keras

    class Last(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(1, 4, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.gru(x.transpose(1, 2))[0][:, -1]

    k, info = to_keras(canonical(Last().eval(), 12), 12)
    reverse = [n for n, v in info["layers"].items() if v["op"].startswith("l0r_") and v["op"].endswith("_h")]
    forward = [n for n, v in info["layers"].items() if v["op"].startswith("l0_") and v["op"].endswith("_h")]
    assert len(reverse) == 1 and len(forward) == 12


@pytest.mark.parametrize("module,op", [(nn.ELU(), "elu"), (nn.Conv2d(1, 2, (1, 3)), "conv2d")])
def test_unsupported_module_is_refused_with_its_path_op_and_the_supported_list(module, op):
    from ecgedge.quantize.convert_graph import canonical

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
            self.odd = module

        def forward(self, x):
            y = self.features(x)
            return self.odd(y.unsqueeze(1) if isinstance(self.odd, nn.Conv2d) else y).flatten(1)

    with pytest.raises(ModelError) as e:
        canonical(Net().eval(), 32)
    msg = str(e.value)
    assert "'odd'" in msg and op in msg and "supported:" in msg and "Conv1d" in msg and "\n" not in msg


def test_onnx_lift_equals_the_torch_model_and_rebuilds(tmp_path):
    from ecgedge.quantize import onnx_export
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import max_abs_difference, to_keras
    torch.manual_seed(1)
    model = _randomise_bn(nn.Sequential(
        nn.Conv1d(1, 8, 7, stride=2, padding=3), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 8, 5, padding=2, groups=8), nn.Hardswish(), nn.Conv1d(8, 12, 1), nn.LeakyReLU(0.1),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(12, 3)))
    path = tmp_path / "m.onnx"
    onnx_export.export_float(model, 200, path)
    gm = canonical(path)
    x = _windows(3, 200)[:, None, :]
    with torch.no_grad():
        assert np.abs(gm(torch.from_numpy(x)).numpy() - model(torch.from_numpy(x)).numpy()).max() < 1e-5
    k, info = to_keras(gm, 200)
    assert max_abs_difference(gm, k, x) < 1e-5 and info["transposes"] == []


def test_flatten_of_a_time_series_into_linear_needs_no_transpose():
    """[N, C, L] flattened in torch (channel-major) order into a Linear: Keras flattens [N, 1, L, C]
    time-major, so the Linear's columns are permuted instead of the data."""
    from ecgedge.quantize import tflite_export as te
    from ecgedge.quantize.convert_graph import canonical
    from ecgedge.quantize.convert_keras import max_abs_difference, to_keras
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv1d(1, 3, 5, stride=5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8, 2)).eval()
    k, info = to_keras(canonical(model, 40), 40)
    x = _windows(4, 40)
    assert max_abs_difference(model, k, x[:, None, :]) < 1e-5
    tfl = te.convert_int8(k, x)
    assert "TRANSPOSE" not in te.op_list(tfl) and info["transposes"] == []


# ------------------------------------------------------------------------------------------- contracts

def test_every_zoo_spec_saves_as_a_contract_and_loads_back_equal(tmp_path):
    from ecgedge.models.specs import get_spec, list_specs, load_contract, save_contract
    for name in list_specs():
        spec = get_spec(name)
        back = load_contract(save_contract(spec, tmp_path / f"{name}.toml"))
        assert back == spec and back.to_dict() == spec.to_dict() and back.target_caps == spec.target_caps


CONTRACT = """name = "mine"
task = "multiclass"

[input]
signal = "ecg"
lead = "I"
sampling_rate_hz = 300
window_samples = 3000

[labels]
reference = "REFERENCE.csv"
classes = ["N", "A"]

[[outputs]]
name = "normal"
kind = "logit"

[[outputs]]
name = "af"
kind = "logit"
"""


def test_a_user_contract_loads_with_defaults_and_round_trips(tmp_path):
    from ecgedge.models.specs import ECG_PREPROCESSING, load_contract, save_contract
    p = tmp_path / "c.toml"
    p.write_text(CONTRACT)
    spec = load_contract(p)
    assert spec.arch is None and spec.n_outputs == 2 and spec.input.scale_uv == 1000.0
    assert spec.input.preprocessing == ECG_PREPROCESSING and spec.labels["classes"] == ["N", "A"]
    assert load_contract(save_contract(spec, tmp_path / "again.toml")).to_dict() == spec.to_dict()


@pytest.mark.parametrize("edit,expect", [
    (("window_samples = 3000", "window_samples = -5"), "window_samples = -5"),
    (('task = "multiclass"', 'task = "ranking"'), "task = 'ranking'"),
    (('kind = "logit"\n\n[[outputs]]', 'kind = "probability"\n\n[[outputs]]'), "kind = 'probability'"),
    (("lead = \"I\"\n", "lead = \"I\"\nwindow = 3\n"), "unknown key(s) ['window']"),
    (('classes = ["N", "A"]', 'classes = ["N"]'), "one label per output"),
])
def test_bad_contracts_name_the_key_and_what_was_expected(tmp_path, edit, expect):
    from ecgedge.models.specs import load_contract
    p = tmp_path / "c.toml"
    p.write_text(CONTRACT.replace(*edit))
    with pytest.raises(ConfigError) as e:
        load_contract(p)
    assert expect in str(e.value) and "\n" not in str(e.value)

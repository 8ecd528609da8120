"""Distillation fine-tuning of a pruned student: it closes the gap to the teacher, deterministically."""

import dataclasses

import numpy as np
import pytest
import torch

from ecgedge.errors import ConfigError, DataError
from ecgedge.models.net1d import Net1D
from ecgedge.models.specs import get_spec
from ecgedge.models.zoo import count_macs
from ecgedge.quantize.distill import finetune_distill, frozen_prefix_stages
from ecgedge.quantize.prune import prune_to_budget

WINDOW = 600


@pytest.fixture(scope="module")
def spec():
    s = get_spec("pocket_k")
    return dataclasses.replace(s, input=dataclasses.replace(s.input, window_samples=WINDOW))


@pytest.fixture(scope="module")
def setup(spec):
    torch.manual_seed(0)
    teacher = Net1D(1, 8, 1.0, [16, 48, 64], [1, 2, 1], 8, 2, 16, 3, dropout=0.0).eval()
    with torch.no_grad():  # a teacher whose outputs vary from window to window
        for module in teacher.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5)
        teacher.dense.weight.mul_(30.0)
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW) / 100.0

    def windows(n):
        freq = rng.uniform(0.5, 3.0, size=(n, 1, 1))
        x = np.sin(2 * np.pi * freq * t) + 0.3 * rng.normal(size=(n, 1, WINDOW))
        return x.astype(np.float32)

    student, _ = prune_to_budget(teacher, spec, mac_budget=count_macs(teacher, WINDOW) * 0.5,
                                 flash_budget_bytes=1e12, progress=False)
    return teacher, student, windows(64), windows(32)


def gap(a, b, x):
    with torch.no_grad():
        return float(((a.eval()(torch.from_numpy(x)) - b.eval()(torch.from_numpy(x))) ** 2).mean())


def test_distillation_reduces_the_gap(setup, spec):
    teacher, student, x_tr, x_val = setup
    assert frozen_prefix_stages(student, teacher) == 1
    trained, history = finetune_distill(student, teacher, x_tr, x_val, spec, epochs=6, batch_size=8, lr=3e-3,
                                        seed=0, progress=False, time_budget_s=None, threads=1)
    before, after = gap(student, teacher, x_val), gap(trained, teacher, x_val)
    print(f"student-teacher output MSE {before:.4g} -> {after:.4g}")
    assert after < 0.75 * before
    assert history["best_epoch"] >= 1 and history["frozen_stages"] == 1
    assert history["best"]["val_loss"] < history["epochs"][0]["val_loss"]
    # the student passed in is not modified; frozen stages are untouched
    for name, p in trained.stage_list[0].state_dict().items():
        torch.testing.assert_close(p, student.stage_list[0].state_dict()[name])
    assert not torch.equal(trained.dense.weight, student.dense.weight)


def test_distillation_is_deterministic_and_uses_labels(setup, spec):
    teacher, student, x_tr, x_val = setup
    k_tr = np.linspace(3.0, 8.0, len(x_tr)).astype(np.float32)
    k_val = np.linspace(3.0, 8.0, len(x_val)).astype(np.float32)
    runs = [finetune_distill(student, teacher, {"x": x_tr, "k": k_tr}, {"x": x_val, "k": k_val}, spec,
                             epochs=1, batch_size=32, lr=1e-3, seed=3, progress=False, time_budget_s=None, threads=1)
            for _ in range(2)]
    (a, ha), (b, _) = runs
    for name, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[name], rtol=0, atol=0)
    assert 0.0 <= ha["epochs"][-1]["val_auroc_0"] <= 1.0 and "val_auroc_1" in ha["teacher"]


def test_end_to_end_when_the_stem_changed(setup, spec):
    teacher, student, x_tr, x_val = setup
    changed = __import__("copy").deepcopy(student)
    with torch.no_grad():
        changed.first_conv.conv.weight.mul_(0.9)
    assert frozen_prefix_stages(changed, teacher) is None
    trained, history = finetune_distill(changed, teacher, x_tr, x_val, spec, epochs=1, batch_size=32,
                                        seed=0, progress=False, time_budget_s=0.0, threads=1)
    assert history["stopped_early"] and history["frozen_stages"] is None
    assert trained(torch.from_numpy(x_val[:2])).shape == (2, 3)


def test_bad_windows_are_refused(setup, spec):
    teacher, student, x_tr, _ = setup
    with pytest.raises(DataError, match="shape"):
        finetune_distill(student, teacher, x_tr, x_tr[:, :, :100], spec, epochs=1, progress=False)


def test_quant_aware_phase_leaves_int8_weights_and_is_deterministic(setup, spec):
    """The QAT phase runs after the float epochs, trains through fake INT8 and returns weights on their
    per-channel int8 grid; the same seed gives the same weights."""
    teacher, student, x_tr, x_val = setup
    runs = [finetune_distill(student, teacher, x_tr, x_val, spec, epochs=1, qat_epochs=1, batch_size=16, lr=2e-3,
                             seed=1, progress=False, time_budget_s=None, threads=1) for _ in range(2)]
    (a, history), (b, _) = runs
    for name, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[name], rtol=0, atol=0)
    assert [e["phase"] for e in history["epochs"]] == ["float", "float", "qat", "qat"]
    qat = history["quant_aware"]
    assert qat["epochs"] == 1 and qat["points"] > 20 and qat["weights"] > 10
    assert all(np.isfinite(lo) and np.isfinite(hi) and lo < hi for lo, hi in qat["ranges"])
    # trained convolutions: each output channel has at most 255 distinct levels, symmetric around 0
    w = a.stage_list[1].block_list[0].conv2.conv.weight.detach().reshape(-1, a.stage_list[1].block_list[0].conv2.conv.weight[0].numel())
    for row in w:
        step = row.abs().max() / 127
        assert torch.allclose(row / step, torch.round(row / step), atol=1e-3)
    # hooks are gone: the model is a plain Net1D again (no parametrisation, same state_dict keys)
    assert set(a.state_dict()) == set(student.state_dict())
    assert not a.stage_list[1].block_list[0].bn1._forward_hooks


def test_fake_quantisation_matches_int8_arithmetic():
    from ecgedge.quantize.qat import ActivationQuant, fake_quant_weight
    x = torch.linspace(-1.0, 3.0, 1001)
    q = ActivationQuant()(x, training=True)
    assert len(torch.unique(q)) <= 256 and float((q - x).abs().max()) <= 4.0 / 255 / 2 + 1e-6
    assert float(q[torch.argmin(x.abs())]) == pytest.approx(0.0, abs=4.0 / 255 / 2)
    w = torch.randn(4, 3, 5)
    wq = fake_quant_weight(w)
    for c in range(4):
        assert len(torch.unique(wq[c])) <= 255 and torch.isclose(wq[c].abs().max(), w[c].abs().max())


def test_quant_aware_epochs_alone_for_a_model_inside_its_budget(setup, spec):
    """No pruning, no float epochs: the model is its own teacher, trained end to end through fake INT8
    (the model input included); epochs and qat_epochs may not both be 0."""
    teacher, _, x_tr, x_val = setup
    trained, history = finetune_distill(teacher, teacher, x_tr, x_val, spec, epochs=0, qat_epochs=1, batch_size=16,
                                        seed=0, progress=False, time_budget_s=None, threads=1, freeze_prefix=False)
    assert history["frozen_stages"] is None and [e["phase"] for e in history["epochs"]] == ["float", "qat", "qat"]
    assert history["quant_aware"]["points"] > 20
    assert not torch.equal(trained.first_conv.conv.weight, teacher.first_conv.conv.weight)   # stem trained too
    with pytest.raises(ConfigError, match="not both"):
        finetune_distill(teacher, teacher, x_tr, x_val, spec, epochs=0, qat_epochs=0, progress=False)


def test_quant_aware_epochs_quantise_the_model_input_with_the_chosen_range(setup, spec):
    """The export's input range (narrower than the windows' min/max) is the one the QAT phase rounds the
    model input with: fixed, not observed, through calibration and training."""
    teacher, _, x_tr, x_val = setup
    chosen = (-0.75, 0.5)
    assert x_tr.min() < chosen[0] and x_tr.max() > chosen[1]
    _, history = finetune_distill(teacher, teacher, x_tr, x_val, spec, epochs=0, qat_epochs=1, batch_size=16,
                                  seed=0, progress=False, time_budget_s=None, threads=1, freeze_prefix=False,
                                  input_range=chosen)
    ranges = history["quant_aware"]["ranges"]
    assert ranges.count(chosen) == 1 and ranges[-2] == chosen      # inputs_of come after the output points
    _, free = finetune_distill(teacher, teacher, x_tr, x_val, spec, epochs=0, qat_epochs=1, batch_size=16,
                               seed=0, progress=False, time_budget_s=None, threads=1, freeze_prefix=False)
    lo, hi = free["quant_aware"]["ranges"][-2]
    assert lo < chosen[0] and hi > chosen[1]                          # observed: about the windows' min/max


def test_training_mode_keeps_batchnorm_statistics_where_asked(setup):
    """QAT of a model that is its own teacher keeps every BatchNorm's running statistics (eval mode while
    the rest trains); a frozen prefix keeps its own; otherwise everything trains."""
    from ecgedge.quantize.distill import training_mode
    teacher = setup[0]
    bns = lambda m: [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm1d)]  # noqa: E731
    training_mode(teacher, None)
    assert all(b.training for b in bns(teacher)) and teacher.dense.training
    training_mode(teacher, 1)
    assert not teacher.first_bn.training and not any(b.training for b in bns(teacher.stage_list[0]))
    assert all(b.training for b in bns(teacher.stage_list[1]))
    training_mode(teacher, None, freeze_bn=True)
    assert not any(b.training for b in bns(teacher)) and teacher.dense.training
    x = torch.randn(4, 1, WINDOW)
    before = [b.running_mean.clone() for b in bns(teacher)]
    teacher(x)                                          # a training-mode forward: statistics stay
    assert all(torch.equal(a, b.running_mean) for a, b in zip(before, bns(teacher)))
    teacher.eval()


def test_multiclass_distillation_loss_is_a_softmax_kl():
    from ecgedge.quantize.distill import TEMPERATURE, distillation_loss
    t = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.0, 3.0, 0.0, -2.0]])
    same = distillation_loss(t, t, None, [0, 1, 2, 3], [], multiclass=True)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    s = t + torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    p = torch.softmax(t / TEMPERATURE, 1)
    kl = (p * (torch.log_softmax(t / TEMPERATURE, 1) - torch.log_softmax(s / TEMPERATURE, 1))).sum(1).mean()
    got = distillation_loss(s, t, None, [0, 1, 2, 3], [], multiclass=True)
    assert float(got) == pytest.approx(float(kl) * TEMPERATURE ** 2, rel=1e-5) and float(got) > 0
    # shifting every logit by a constant changes no softmax: no loss (a sigmoid loss would see one)
    assert float(distillation_loss(t + 5.0, t, None, [0, 1, 2, 3], [], multiclass=True)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(t + 5.0, t, None, [0, 1, 2, 3], [])) > 0.1

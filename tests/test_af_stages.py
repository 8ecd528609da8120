"""af_lead1's training stages, each called alone on a few synthetic records (no data needed): the batch,
the record-rule loss, one epoch, the time budget, the metrics with their interval, the card, the written
files (checkpoint, card, real calibration windows with the data's licence, split lists)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ecgedge.errors import ConfigError
from ecgedge.models.af_data import RecordSet, read_folds, read_record_list, stratified_folds
from ecgedge.models.af_lead1 import CLASSES
from ecgedge.models.specs import get_spec

SPEC = get_spec("af_lead1")


def _records(n: int = 16, seed: int = 0) -> RecordSet:
    """Records of 9-40 s whose class is in the signal (a sine of a class-specific rate, in µV)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    parts = []
    for c in labels:
        length = int(rng.integers(1350, 6000))
        t = np.arange(length) / 150.0
        parts.append((400 * np.sin(2 * np.pi * (1 + c) * t) + 30 * rng.standard_normal(length)).astype(np.float32))
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    return RecordSet([f"R{i:03d}" for i in range(n)], labels.astype(np.int64), np.concatenate(parts), offsets, 150)


def _state(tmp_path, **recipe):
    from ecgedge.models.train_af import Recipe, TrainState
    rs = _records()
    st = TrainState(data=tmp_path, out=tmp_path / "run", recipe=Recipe(preset="tiny", epochs=2, batch_size=8, **recipe),
                    threads=1, progress=False, log=lambda *_: None, eval_every=1, regression_records=4, spec=SPEC,
                    calibration_windows=6)
    st.rs, st.train_rs, st.val_rs = rs, rs.subset(np.arange(12)), rs.subset(np.arange(12, 16))
    st.split_note = "synthetic"
    return st


def test_batch_draws_whole_records_and_the_loss_is_the_record_rule(tmp_path):
    import torch
    import torch.nn.functional as F

    from ecgedge.models.train_af import batch, build, loss_of

    st = build(_state(tmp_path, record_crops=4))
    x, sel = batch(st)
    assert x.shape == (8, 1500) and sel.shape == (2,) and x.dtype == np.float32
    logits = torch.randn(8, 4)
    got = loss_of(st, logits, sel)
    # by hand: mean window log-softmax per record, renormalised, against the smoothed label
    ls = st.recipe.label_smoothing
    want = 0.0
    for j, rec in enumerate(sel):
        lp = F.log_softmax(F.log_softmax(logits[4 * j:4 * j + 4], 1).mean(0), 0)
        target = torch.full((4,), ls / 4)
        target[st.train_rs.labels[rec]] += 1 - ls
        want += -(target * lp).sum() / len(sel)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    # one crop per draw: plain cross-entropy with label smoothing
    st1 = build(_state(tmp_path, record_crops=1))
    y = torch.from_numpy(st1.train_rs.labels[np.arange(8) % 12])
    assert float(loss_of(st1, logits, np.arange(8) % 12)) == pytest.approx(
        float(F.cross_entropy(logits, y, label_smoothing=ls)), rel=1e-6)


def test_teacher_probabilities_enter_the_target(tmp_path):
    import torch

    from ecgedge.models.train_af import build, loss_of

    st = build(_state(tmp_path, record_crops=2, teacher_weight=1.0))
    st.teacher_probs = np.tile(np.array([[0.7, 0.1, 0.1, 0.1]]), (12, 1))
    logits = torch.zeros(8, 4)                                   # uniform: loss = log 4 whatever the target
    assert float(loss_of(st, logits, np.arange(4))) == pytest.approx(math.log(4), rel=1e-6)
    logits[:, 0] = 2.0
    lp0 = float(torch.log_softmax(torch.tensor([2.0, 0, 0, 0]), 0)[0])
    lp1 = float(torch.log_softmax(torch.tensor([2.0, 0, 0, 0]), 0)[1])
    assert float(loss_of(st, logits, np.arange(4))) == pytest.approx(-(0.7 * lp0 + 0.3 * lp1), rel=1e-5)


def test_bad_record_crops_is_refused(tmp_path):
    from ecgedge.models.train_af import build
    with pytest.raises(ConfigError, match="record_crops 3"):
        build(_state(tmp_path, record_crops=3))


def test_one_epoch_and_the_time_budget(tmp_path):
    from ecgedge.models.train_af import build, fit_time_budget, lr_at, train_epoch

    st = build(_state(tmp_path))
    assert st.steps_per_epoch == math.ceil(12 / 8) and st.total_steps == 2 * st.steps_per_epoch
    before = {k: v.clone() for k, v in st.model.state_dict().items()}
    loss = train_epoch(st)
    assert math.isfinite(loss) and st.step == st.steps_per_epoch
    assert any(not (st.model.state_dict()[k] == v).all() for k, v in before.items())
    st.recipe.epochs, st.max_minutes = 50, 1.0
    fit_time_budget(st, epoch_s=10.0, spent_s=0.0)             # 60 s * 0.9 / 10 s -> 5 epochs
    assert st.recipe.epochs == 5 and st.total_steps == 5 * st.steps_per_epoch
    assert lr_at(0, 100, 10, 1.0, 0.01) == pytest.approx(0.1) and lr_at(100, 100, 10, 1.0, 0.01) == pytest.approx(0.01)


def test_fit_finish_card_and_files(tmp_path):
    from ecgedge.models.af_export import calibration_path
    from ecgedge.models.train_af import build, finish, fit, make_card, write
    from ecgedge.models.zoo import load_model

    st = make_card(finish(fit(build(_state(tmp_path, record_crops=2)))))
    assert [h["epoch"] for h in st.history] == [1, 2] and "f1_challenge" in st.history[-1]
    card = st.card
    ci = card["f1_challenge_interval"]
    assert ci["low"] <= card["f1_challenge"] <= ci["high"]
    for key in ("f1_challenge", "f1_N", "f1_A", "f1_O", "f1_noise", "auroc_A", "confusion", "records", "split_seed",
                "validation_records", "regression", "training", "input", "arch", "params", "macs", "notice"):
        assert key in card, key
    assert card["records"] == 4 == len(card["validation_records"]) and len(card["regression"]["records"]) == 4
    assert "record rule" in card["training"]["record_windows"]
    ckpt = write(st)
    model, _, meta = load_model("af_lead1", ckpt)
    assert meta["demo"] is False and meta["card"]["calibration_windows"]["windows"] == 6
    z = np.load(calibration_path(ckpt))
    assert z["x_uv"].dtype == np.int16 and z["x_uv"].shape == (6, 1500)
    assert set(z["records"].tolist()) <= set(st.train_rs.names)          # training records only
    for i, name in enumerate(z["records"].tolist()):                       # each window is its record's samples
        rec = st.train_rs.record(st.train_rs.names.index(name))
        s = int(z["starts"][i])
        seg = np.pad(rec, (0, max(0, 1500 - len(rec))))[s:s + 1500]
        np.testing.assert_array_equal(z["x_uv"][i], np.round(seg).astype(np.int16))
    meta_npz = json.loads(str(z["meta"]))
    assert "ODC-By" in meta_npz["licence"] and any("Clifford" in c for c in meta_npz["citations"])
    readme = calibration_path(ckpt).with_name("af_lead1.calibration.README.md").read_text()
    assert "ODC-By 1.0" in readme and "Goldberger" in readme and "Clifford" in readme
    lists = st.out / "af_lead1.splits"
    assert read_record_list(lists / "validation.txt") == sorted(st.val_rs.names)
    assert read_record_list(lists / "training.txt") == sorted(st.train_rs.names)
    assert set(read_record_list(lists / "calibration.txt")) == set(z["records"].tolist())
    assert set(read_folds(lists / "folds.csv")) == set(st.train_rs.names)
    selection = read_record_list(lists / "selection.txt")
    assert selection and set(selection) <= set(st.train_rs.names)
    assert card["training_records"] == sorted(st.train_rs.names)


def test_folds_are_stratified_and_fixed():
    labels = np.repeat(np.arange(4), [300, 50, 140, 20])
    f = stratified_folds(labels, 5, 0)
    for c in range(4):
        counts = np.bincount(f[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(f, stratified_folds(labels, 5, 0)) and not np.array_equal(f, stratified_folds(labels, 5, 1))
    with pytest.raises(ConfigError):
        stratified_folds(labels, 1, 0)


def test_paired_bootstrap_tells_a_better_model_apart():
    from ecgedge.models.af_eval import bootstrap_f1

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 600)
    good = np.eye(4)[np.where(rng.random(600) < 0.9, labels, rng.integers(0, 4, 600))]
    poor = np.eye(4)[np.where(rng.random(600) < 0.6, labels, rng.integers(0, 4, 600))]
    b = bootstrap_f1(labels, poor, good, resamples=300)
    assert b["b_minus_a"]["f1_challenge"] > 0.15 and b["b_minus_a"]["low"] > 0.1 and b["b_better_share"] == 1.0
    assert b["a"]["low"] < b["a"]["f1_challenge"] < b["a"]["high"]
    same = bootstrap_f1(labels, good, good, resamples=100)
    assert same["b_minus_a"]["low"] == same["b_minus_a"]["high"] == 0.0

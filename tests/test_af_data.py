"""af_lead1's real-data path: PhysioNet/CinC 2017 records (Clifford et al., CinC 2017) read with the
product's WFDB loader, resampled and filtered to the contract; split and windowing rules."""

import sys
from pathlib import Path

import numpy as np
import pytest

from ecgedge.errors import ConfigError, DataError
from ecgedge.models.af_lead1 import CLASSES
from ecgedge.models.train_af import (load_records, predict_records, read_labels, record_metrics, record_windows,
                                     stratified_split)

sys.path.insert(0, str(Path(__file__).parent))
from af_helpers import CINC, SPEC, needs_data  # noqa: E402



def test_spec_contract_and_classes():
    assert SPEC.task == "multiclass"
    assert SPEC.output_names == ["logit_N", "logit_A", "logit_O", "logit_~"]
    assert (SPEC.input.sampling_rate_hz, SPEC.input.window_samples, SPEC.input.scale_uv) == (150, 1500, 1000.0)
    assert CLASSES == ("N", "A", "O", "~")


@needs_data
def test_records_load_through_the_product_loader(tmp_path):
    from ecgedge.signals import StreamingFilter, load_record

    labels = read_labels(CINC, CLASSES)
    assert len(labels) == 6035
    names = ["A00001", "A00004", "A00005"]  # N, A, A in REFERENCE.csv
    assert [CLASSES[labels[n]] for n in names] == ["N", "A", "A"]
    rs = load_records(CINC, SPEC, names=names, cache_dir=tmp_path, progress=False)
    for i, name in enumerate(names):
        raw = load_record(CINC / f"{name}.hea")
        assert raw.sampling_rate == 300.0
        x = rs.record(i)
        assert abs(len(x) - len(raw.signal_uv) / 2) <= 1       # 300 -> 150 Hz
        expect = StreamingFilter(150, SPEC.input.preprocessing).process(
            load_record(CINC / f"{name}.hea", sampling_rate=150).signal_uv)
        np.testing.assert_allclose(x, expect.astype(np.float32), rtol=0, atol=1e-3)
        assert 50 < np.percentile(np.abs(x), 99) < 5000           # µV: a real ECG, not mV or ADC counts
    assert list(rs.labels) == [labels[n] for n in names]
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1                                      # read once, then from the cache
    again = load_records(CINC, SPEC, names=names, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.signal, rs.signal)


@needs_data
def test_bad_data_folders_and_names(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_records(tmp_path / "absent", SPEC, progress=False)
    with pytest.raises(DataError, match="REFERENCE.csv"):
        load_records(tmp_path, SPEC, progress=False)
    with pytest.raises(DataError, match="no label"):
        load_records(CINC, SPEC, names=["A99999"], use_cache=False, progress=False)
    (tmp_path / "REFERENCE.csv").write_text("A00001,X\n")
    with pytest.raises(DataError, match="'X'"):
        read_labels(tmp_path, CLASSES)


def test_split_is_stratified_disjoint_and_fixed():
    labels = np.repeat(np.arange(4), [300, 50, 140, 20])
    tr, va = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va]).tolist() == [60, 10, 28, 4]
    tr2, va2 = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(va, va2) and not np.array_equal(va, stratified_split(labels, 0.2, seed=1)[1])
    with pytest.raises(ConfigError):
        stratified_split(labels, 1.0, seed=0)


def test_windows_follow_the_bench_rule():
    x = np.arange(3 * 1500 + 700, dtype=np.float32)
    w = record_windows(x, 1500)
    assert w.shape == (3, 1500) and w[1, 0] == 1500               # non-overlapping, tail dropped
    short = record_windows(np.ones(1350, np.float32), 1500)       # a 9 s record: zero-padded at the end
    assert short.shape == (1, 1500) and short[0, 1349] == 1 and short[0, 1350:].sum() == 0
    hop = SPEC.input.record_hop_samples
    assert hop == 500
    w = record_windows(x, 1500, hop)                              # every 500 samples + one ending at the end
    assert [int(r[0]) for r in w] == [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 3700] and w[-1, -1] == len(x) - 1
    assert record_windows(np.ones(1350, np.float32), 1500, hop).shape == (1, 1500)
    assert record_windows(x[:4500], 1500, hop).shape == (7, 1500)  # a 30 s record: the last window ends it


def test_bench_windows_records_as_the_card_does():
    from ecgedge.signals import record_window_starts

    for n in (900, 1500, 1501, 4500, 4700, 9000, 18286):
        for hop in (None, 500, 1500):
            starts = record_window_starts(n, 1500, hop)
            assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:]))
            if n >= 1500:
                assert starts[-1] + 1500 <= n
                if hop is not None:
                    assert starts[-1] + 1500 == n and max(np.diff(starts), default=0) <= hop


def test_record_metrics_on_known_predictions():
    labels = np.array([0, 0, 1, 1, 2, 3])
    probs = np.eye(4)[[0, 1, 1, 1, 2, 0]]
    m = record_metrics(probs, labels)
    assert m["f1_N"] == pytest.approx(0.5) and m["f1_A"] == pytest.approx(0.8) and m["f1_O"] == 1.0
    assert m["f1_noise"] == 0.0
    assert m["f1_challenge"] == pytest.approx((0.5 + 0.8 + 1.0) / 3)
    assert m["confusion"][0] == [1, 1, 0, 0] and m["records"] == 6


def test_record_probabilities_are_the_geometric_mean_over_windows():
    import torch

    from ecgedge.models.train_af import RecordSet

    class Energy(torch.nn.Module):  # logits that depend on the window, to check the averaging
        def forward(self, x):
            e = x.abs().mean(-1)
            return torch.cat([e, -e, 0 * e, 0 * e], dim=1)

    a = np.r_[np.full(1500, 1000.0), np.full(1500, 3000.0)].astype(np.float32)  # 1 and 3 mV halves
    rs = RecordSet(["r"], np.array([0]), a, np.array([0, 3000]), 150)
    p = predict_records(Energy(), rs, SPEC)
    # windows at 0, 500, 1000, 1500: mean |x| of 1, 5/3, 7/3 and 3 mV
    levels = [1.0, 5 / 3, 7 / 3, 3.0]
    logp = np.mean([torch.log_softmax(torch.tensor([v, -v, 0.0, 0.0], dtype=torch.float64), 0).numpy()
                    for v in levels], axis=0)
    expect = np.exp(logp) / np.exp(logp).sum()
    np.testing.assert_allclose(p[0], expect, rtol=1e-5)

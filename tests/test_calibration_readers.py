"""Calibration data readers, representative windows and activation-range collection on a Net1D."""

import dataclasses

import numpy as np
import pytest

from ecgedge.calibration import (CalibrationDataReader, RecordDataReader, WindowDataReader,
                                 collect_activation_ranges, get_calibrator, synthetic_calibration_windows)
from ecgedge.errors import DataError


def drain(reader):
    batches = []
    while (feed := reader.get_next()) is not None:
        batches.append(feed)
    return batches


def test_window_reader_exhausts_in_order_and_rewinds():
    x = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 4)
    reader = WindowDataReader(x, "input", batch_size=4)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 3
    batches = drain(reader)
    assert [b["input"].shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), x)
    assert reader.get_next() is None
    reader.rewind()
    assert len(drain(reader)) == 3


def test_window_reader_refuses_empty():
    with pytest.raises(DataError, match="shape"):
        WindowDataReader(np.zeros((0, 1, 5)), "input")


def test_base_reader_is_abstract():
    with pytest.raises(TypeError):
        CalibrationDataReader()


@pytest.fixture
def contract():
    from ecgedge.models.specs import get_spec
    return get_spec("pocket_k").input


def test_record_reader_windows_a_record(tmp_path, contract):
    from ecgedge.signals import ecg_simulate, save_record

    signal = ecg_simulate(duration=25.0, sampling_rate=500, seed=1)
    path = save_record(tmp_path / "rec", signal, 500, fmt="wfdb")
    reader = RecordDataReader([path], contract, input_name="x", batch_size=1)
    batches = drain(reader)
    assert len(batches) == 2  # 25 s -> two whole 10 s windows
    window = batches[0]["x"]
    assert window.shape == (1, 1, 5000) and window.dtype == np.float32
    assert 0.1 < float(np.abs(window).max()) < 10.0  # model units are mV


def test_record_reader_names_a_wrong_rate(tmp_path, contract):
    from ecgedge.signals import ecg_simulate, save_record

    path = save_record(tmp_path / "rec250", ecg_simulate(duration=12.0, sampling_rate=250, seed=2), 250, fmt="wfdb")
    with pytest.raises(DataError, match="250 Hz.*500 Hz"):
        RecordDataReader([path], contract)
    resampled = drain(RecordDataReader([path], contract, resample=True))
    assert resampled[0]["input"].shape == (1, 1, 5000)


def test_record_reader_names_a_short_record(tmp_path, contract):
    from ecgedge.signals import ecg_simulate, save_record

    path = save_record(tmp_path / "short.csv", ecg_simulate(duration=4.0, sampling_rate=500, seed=3), 500, fmt="csv")
    with pytest.raises(DataError, match="2000 samples"):
        RecordDataReader([path], contract)


def test_synthetic_calibration_windows_are_deterministic(contract):
    from ecgedge.models.specs import get_spec

    spec = get_spec("pocket_k")
    spec = dataclasses.replace(spec, input=dataclasses.replace(contract, window_samples=1000))
    a = synthetic_calibration_windows(spec, n=3, seed=7)
    b = synthetic_calibration_windows(spec, n=3, seed=7)
    assert a.shape == (3, 1, 1000) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthetic_calibration_windows(spec, n=3, seed=8))


def test_activation_ranges_cover_the_quantised_points():
    import torch

    from ecgedge.models.net1d import Net1D

    torch.manual_seed(0)
    model = Net1D(1, 8, 1.0, [16, 32], [1, 2], 8, 2, 16, 3).eval()
    x = np.random.default_rng(0).normal(size=(6, 1, 400)).astype(np.float32)
    ranges = collect_activation_ranges(model, WindowDataReader(x, "input", 4), get_calibrator("minmax"))
    block = "stage_list.1.block_list.1"
    for point in ("input", "first_conv", "first_activation", f"{block}.conv1", f"{block}.bn2",
                  f"{block}.activation3", f"{block}.se_fc1", f"{block}.se_gate", f"{block}.se_mul",
                  f"{block}.add", "features.mean", "dense"):
        assert point in ranges, point
    with torch.no_grad():
        stem = model.first_conv(torch.from_numpy(x)).numpy()
        out = model(torch.from_numpy(x)).numpy()
    assert ranges["first_conv"] == pytest.approx((min(stem.min(), 0), max(stem.max(), 0)), rel=1e-5)
    assert ranges["dense"] == pytest.approx((min(out.min(), 0), max(out.max(), 0)), rel=1e-5)
    assert 0.0 <= ranges[f"{block}.se_gate"][1] <= 1.0
    assert not model.training

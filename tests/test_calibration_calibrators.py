"""Calibrators on known distributions, the factory, and histogram re-binning across batches."""

import numpy as np
import pytest

from ecgedge.calibration import calibrator_names, get_calibrator
from ecgedge.errors import ConfigError, DataError


def quantisation_mse(x, lo, hi):
    """MSE of TFLite-style asymmetric int8 quantisation of x with the range [lo, hi]."""
    scale = (hi - lo) / 255.0
    zero_point = np.round(-128 - lo / scale)
    q = np.clip(np.round(x / scale) + zero_point, -128, 127)
    return float(np.mean((x - (q - zero_point) * scale) ** 2))


def calibrate(name, data, batches=8, **kw):
    cal = get_calibrator(name, **kw)
    for part in np.array_split(data, batches):
        cal.collect("t", part)
    return cal.compute_ranges()["t"]


def test_minmax_is_exact_over_many_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(size=10_000) * 3 + 1
    lo, hi = calibrate("minmax", data)
    assert lo == pytest.approx(data.min()) and hi == pytest.approx(data.max())


def test_ranges_always_contain_zero():
    data = np.random.default_rng(1).uniform(2.0, 5.0, size=5000)
    for name in calibrator_names():
        lo, hi = calibrate(name, data)
        assert lo == 0.0 and hi > 2.0, name


def test_symmetric_ranges_for_weights():
    data = np.random.default_rng(2).normal(size=4000) - 0.5
    for name in calibrator_names():
        lo, hi = calibrate(name, data, symmetric=True)
        assert lo == -hi and hi > 0, name
    lo, hi = calibrate("minmax", data, symmetric=True)
    assert hi == pytest.approx(np.abs(data).max())


def test_percentile_clips_outliers():
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.normal(size=200_000), [400.0, -300.0, 250.0]])
    lo, hi = calibrate("percentile", data, percentile=99.99)
    assert -6.0 < lo < -3.0 and 3.0 < hi < 6.0
    lo100, hi100 = calibrate("percentile", data, percentile=100.0)
    assert lo100 <= -299.0 and hi100 >= 399.0


@pytest.mark.parametrize("name", ["entropy", "mse"])
def test_entropy_and_mse_beat_minmax_on_heavy_tails(name):
    data = np.random.default_rng(4).laplace(size=200_000)
    lo_mm, hi_mm = calibrate("minmax", data)
    lo, hi = calibrate(name, data)
    assert lo > lo_mm and hi < hi_mm and lo < 0 < hi
    assert quantisation_mse(data, lo, hi) < quantisation_mse(data, lo_mm, hi_mm)


def test_mse_keeps_full_range_of_uniform_data():
    data = np.random.default_rng(5).uniform(-1, 1, size=100_000)
    lo, hi = calibrate("mse", data)
    assert lo < -0.97 and hi > 0.97


def test_histogram_widening_matches_one_batch():
    rng = np.random.default_rng(6)
    data = rng.laplace(size=100_000)
    order = np.argsort(np.abs(data))  # small values first: every batch widens the histogram
    widened = calibrate("percentile", data[order], batches=20, percentile=99.9)
    direct = calibrate("percentile", data, batches=1, percentile=99.9)
    assert widened == pytest.approx(direct, rel=0.05)


def test_several_tensors_are_kept_apart():
    cal = get_calibrator("minmax")
    cal.collect("a", np.array([-1.0, 2.0]))
    cal.collect("b", np.array([5.0, 7.0]))
    cal.collect("a", np.array([3.0]))
    assert cal.compute_ranges() == {"a": (-1.0, 3.0), "b": (0.0, 7.0)}


def test_factory_errors():
    with pytest.raises(ConfigError) as e:
        get_calibrator("kl")
    for name in ("minmax", "percentile", "entropy", "mse"):
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="percentile"):
        get_calibrator("percentile", percentile=20)
    with pytest.raises(ConfigError, match="bad option"):
        get_calibrator("minmax", bins=3)


def test_nan_is_a_data_error():
    cal = get_calibrator("entropy")
    with pytest.raises(DataError, match="'x'"):
        cal.collect("x", np.array([1.0, np.nan]))

"""One resampler, one R-peak detector, one SQI: the live runtime path (samples streamed in chunks through
the runtime's Processor) and the offline path (a whole recording resampled, filtered and cut into windows,
as training and export do) give the same numbers."""

from fractions import Fraction

import numpy as np
import pytest
from scipy import signal as sps

from ecgedge.edge_runtime.processing import Processor
from ecgedge.signals import (StreamingFilter, StreamingResampler, ecg_peaks, ecg_simulate, heart_rate_bpm, resample,
                             signal_quality)

PREPROCESSING = {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}


def _chunks(x, rng, most=400):
    i = 0
    while i < x.size:
        n = int(rng.integers(1, most))
        yield i, x[i:i + n]
        i += n


@pytest.mark.parametrize("rates", [(130, 500), (250, 500), (300, 150), (360, 500), (500, 250)])
def test_streamed_resampler_equals_offline_resample(rates):
    a, b = rates
    rng = np.random.default_rng(a + b)
    x = np.cumsum(rng.normal(size=4000)) + 200.0   # a baseline offset, as ECG front ends have
    offline = resample(x, a, b)
    r = StreamingResampler(a, b)
    live = np.concatenate([r.process(c) for _, c in _chunks(x, rng)])
    assert offline.size == -(-x.size * Fraction(b, a).numerator // Fraction(b, a).denominator)
    assert live.size == offline.size - r.delay              # the live path lags by the filter's delay ...
    assert np.array_equal(live, offline[:live.size])        # ... and agrees bit for bit
    assert np.array_equal(np.concatenate([live, r.flush()]), offline)
    # it is scipy's resample_poly computed incrementally: the offline numbers of before, bit for bit
    f = Fraction(b, a)
    assert np.array_equal(offline, sps.resample_poly(x, f.numerator, f.denominator))


def test_runtime_windows_and_quality_equal_the_offline_path():
    """A 250 Hz device streamed in random chunks into the runtime's Processor (500 Hz model) gives the same
    windows, filtered samples and signal-quality numbers (heart rate from ecg_peaks) as the offline path."""
    fs_dev, fs_model, window = 250, 500, 5000
    uv_per_lsb = 0.5
    ecg = ecg_simulate(42.0, fs_dev, heart_rate=75, noise=0.1, seed=3)
    counts = np.round(ecg / uv_per_lsb).astype(np.int16)
    proc = Processor(fs_dev, uv_per_lsb, fs_model, window, 2500, PREPROCESSING)
    rng = np.random.default_rng(7)
    live = [w for start, c in _chunks(counts, rng, 97) for w in proc.push(start, c)]

    uv = counts.astype(np.float64) * uv_per_lsb
    raw = resample(uv, fs_dev, fs_model)
    filtered = StreamingFilter(fs_model, PREPROCESSING).process(raw)
    starts = range(0, raw.size - window + 1 - StreamingResampler(fs_dev, fs_model).delay, 2500)
    assert [w.start for w in live] == list(starts) and len(live) >= 5
    for w in live:
        assert np.array_equal(w.raw_uv, raw[w.start:w.start + window])
        assert np.array_equal(w.filtered, filtered[w.start:w.start + window])
        q_live = signal_quality(w.raw_uv, w.filtered, fs_model, proc.rail_uv, False)
        q_off = signal_quality(raw[w.start:w.start + window], filtered[w.start:w.start + window], fs_model,
                               proc.rail_uv, False)
        assert q_live == q_off and q_live["ok"]
        peaks = ecg_peaks(filtered[w.start:w.start + window], fs_model)
        assert q_live["hr_bpm"] == round(60.0 * fs_model / np.median(np.diff(peaks)), 1)
        assert abs(q_live["hr_bpm"] - 75) < 8


def test_heart_rate_needs_three_beats():
    assert heart_rate_bpm(np.zeros(5000), 500) is None
    assert heart_rate_bpm(np.zeros(100), 500) is None

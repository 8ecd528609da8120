"""Streaming filters (block-by-block == one call), their frequency response, and ecg_clean."""

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal as sps

from ecgedge.errors import ConfigError, DataError
from ecgedge.signals import StreamingFilter, design_filters, ecg_clean, ecg_peaks, ecg_simulate

FS = 500
PRE = {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}


@lru_cache(maxsize=1)
def noisy_record():
    return ecg_simulate(8.0, FS, noise=0.8, seed=1) + 300.0  # DC offset as from a real front end


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
       notch=st.sampled_from([50.0, 60.0, None]))
def test_block_by_block_equals_one_call(cuts, notch):
    x = noisy_record()
    pre = dict(PRE, notch_hz=notch)
    whole = StreamingFilter(FS, pre).process(x)
    f = StreamingFilter(FS, pre)
    edges = [0, *sorted(cuts), x.size]
    blocks = [f.process(x[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    assert np.array_equal(np.concatenate(blocks), whole)


def test_reset_starts_over():
    x = ecg_simulate(3.0, FS, noise=0.5, seed=2)
    f = StreamingFilter(FS, PRE)
    first = f.process(x)
    f.process(x)
    f.reset()
    assert np.array_equal(f.process(x), first)


def gain_at(sos, freq, fs=FS):
    w, h = sps.sosfreqz(sos, worN=[freq], fs=fs)
    return abs(h[0])


def test_design_filters_response():
    sos = design_filters(FS, highpass_hz=0.5, notch_hz=50.0, lowpass_hz=40.0)
    assert sos.ndim == 2 and sos.shape[1] == 6
    assert gain_at(sos, 10.0) > 0.95  # QRS band passes
    assert gain_at(sos, 50.0) < 0.01  # mains removed
    assert gain_at(sos, 0.05) < 0.05  # baseline wander removed
    assert gain_at(sos, 100.0) < 0.03  # EMG above the low-pass (4th order at 40 Hz)
    sixty = design_filters(FS, highpass_hz=None, notch_hz=60.0, lowpass_hz=None)
    assert gain_at(sixty, 60.0) < 0.01 and gain_at(sixty, 50.0) > 0.9
    identity = design_filters(FS, None, None, None)
    assert gain_at(identity, 30.0) == pytest.approx(1.0)


def test_dc_offset_at_start_does_not_ring():
    x = np.full(5 * FS, 2500.0)
    y = StreamingFilter(FS, PRE).process(x)
    assert np.max(np.abs(y)) < 1.0


@pytest.mark.parametrize("bad", [{"notch_hz": 300.0}, {"lowpass_hz": 250.0}, {"highpass_hz": -1.0},
                                 {"band": 3.0}])
def test_bad_filter_settings_raise(bad):
    with pytest.raises(ConfigError):
        StreamingFilter(FS, bad)


def test_process_rejects_2d_blocks():
    with pytest.raises(DataError):
        StreamingFilter(FS, PRE).process(np.zeros((2, 10)))


def test_ecg_clean_is_zero_phase_and_removes_wander():
    clean_truth = ecg_simulate(10.0, FS, noise=0.0, seed=4)
    t = np.arange(clean_truth.size) / FS
    wandering = clean_truth + 800.0 * np.sin(2 * np.pi * 0.2 * t) + 1000.0
    cleaned = ecg_clean(wandering, FS)
    peaks_truth = ecg_peaks(clean_truth, FS)
    # R peaks stay where they were (no group delay) ...
    assert np.all(np.abs(np.argmax(np.stack([cleaned[p - 10:p + 11] for p in peaks_truth[1:-1]]), axis=1) - 10) <= 1)
    # ... and the wander is gone.
    residual = cleaned - ecg_clean(clean_truth, FS)
    assert np.std(residual) < 20.0 and abs(np.mean(residual)) < 10.0

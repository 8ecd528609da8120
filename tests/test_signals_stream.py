"""EcgStream continuity and settings changes; make_windows shapes, labels, determinism, filtering."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgedge.errors import ConfigError
from ecgedge.signals import (EcgStream, StreamingFilter, ecg_delineate, ecg_peaks, ecg_simulate, make_windows,
                             random_subject)

FS = 500
PRE = {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}


@settings(max_examples=15, deadline=None)
@given(chunks=st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=12),
       seed=st.integers(min_value=0, max_value=2**31))
def test_chunked_reads_equal_one_long_read(chunks, seed):
    total = sum(chunks)
    whole = EcgStream(FS, heart_rate=80, k_mmol=6.0, noise=0.6, seed=seed).read(total)
    stream = EcgStream(FS, heart_rate=80, k_mmol=6.0, noise=0.6, seed=seed)
    parts = np.concatenate([stream.read(n) for n in chunks])
    assert np.array_equal(parts, whole)


def test_ecg_simulate_is_one_stream_read():
    x = ecg_simulate(4.0, FS, heart_rate=66, k_mmol=5.1, noise=0.2, seed=9)
    s = EcgStream(FS, heart_rate=66, k_mmol=5.1, noise=0.2, seed=9)
    assert np.array_equal(np.concatenate([s.read(700), s.read(1300)]), x)


def test_stream_r_peaks_are_ground_truth_for_the_detector():
    s = EcgStream(FS, heart_rate=75, k_mmol=4.5, noise=0.3, seed=2)
    x = s.read(20 * FS)
    truth = s.r_peaks()
    found = ecg_peaks(x, FS)
    inner = truth[(truth > 0.3 * FS) & (truth < x.size - 0.3 * FS)]
    matched = [np.min(np.abs(found - t)) <= 0.05 * FS for t in inner]
    assert all(matched)
    assert len(found) <= len(truth) + 1


def test_set_changes_potassium_without_a_discontinuity():
    s = EcgStream(FS, heart_rate=70, k_mmol=4.0, noise=0.0, subject=random_subject(1), seed=1)
    before = s.read(8 * FS)
    s.set(k_mmol=7.5)
    after = s.read(8 * FS)
    x = np.concatenate([before, after])
    steps = np.abs(np.diff(x))
    assert steps[before.size - 1] <= np.percentile(steps, 99)
    amp = lambda seg: np.nanmedian(ecg_delineate(seg, ecg_peaks(seg, FS), FS)["t_amplitude"])  # noqa: E731
    assert amp(after[2 * FS:]) > 1.5 * amp(before)


def test_set_noise_ramps_in_and_heart_rate_follows():
    s = EcgStream(FS, heart_rate=60, k_mmol=4.5, noise=0.0, seed=3)
    quiet = s.read(5 * FS)
    s.set(noise=1.0, heart_rate=110)
    loud = s.read(30 * FS)
    x = np.concatenate([quiet, loud])
    steps = np.abs(np.diff(x))
    assert steps[quiet.size - 1] < 5 * np.median(steps)
    rr = np.diff(ecg_peaks(loud[3 * FS:], FS)) / FS
    assert abs(60.0 / np.median(rr) - 110) < 5


def test_stream_is_cheap_for_ten_minutes():
    # Work done is deterministic: ten minutes in large reads produce 300,000 finite samples.
    s = EcgStream(FS, heart_rate=72, k_mmol=6.2, noise=0.02, seed=0)
    x = np.concatenate([s.read(FS * 30) for _ in range(20)])
    assert x.shape == (300_000,) and np.all(np.isfinite(x))
    assert 600 < len(s.r_peaks()) < 840


@pytest.mark.parametrize("bad", [dict(k_mmol=0.5), dict(heart_rate=5), dict(noise=1.5), dict(sampling_rate=0),
                                 dict(noise="loud")])
def test_bad_settings_raise_config_error(bad):
    with pytest.raises(ConfigError):
        EcgStream(**bad)


def test_make_windows_shapes_labels_and_determinism():
    d = make_windows(4, 3, seed=5, window_s=4.0, k_range=(3.0, 7.5))
    assert d["x"].shape == (12, 2000) and d["x"].dtype == np.float32
    assert d["k"].dtype == np.float32 and d["hr"].dtype == np.float32 and d["subject"].dtype == np.int32
    assert np.all((d["k"] >= 3.0) & (d["k"] <= 7.5))
    assert np.all((d["hr"] >= 50) & (d["hr"] <= 110))
    assert list(d["subject"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    again = make_windows(4, 3, seed=5, window_s=4.0, k_range=(3.0, 7.5))
    assert all(np.array_equal(d[key], again[key]) for key in d)
    other = make_windows(4, 3, seed=6, window_s=4.0, k_range=(3.0, 7.5))
    assert not np.array_equal(d["x"], other["x"])


def test_make_windows_label_balance_for_hyperkalaemia():
    d = make_windows(30, 4, seed=0, window_s=1.0)
    positive = np.mean(d["k"] > 5.5)
    assert 0.3 < positive < 0.6


def test_make_windows_filters_like_the_live_runtime():
    d = make_windows(2, 2, seed=3, window_s=3.0, filters=PRE, noise_range=(0.5, 0.5))
    raw = make_windows(2, 2, seed=3, window_s=5.0, filters=None, noise_range=(0.5, 0.5))
    # Same seeds: the filtered window is the causal filter of the same stream, lead-in dropped.
    expected = StreamingFilter(FS, PRE).process(raw["x"][0].astype(np.float64))[2 * FS:]
    assert np.allclose(d["x"][0], expected, atol=1e-2)
    # Causal high-pass removes the wander: the window's mean is near zero.
    assert np.all(np.abs(d["x"].mean(axis=1)) < 50)


def test_make_windows_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        make_windows(0, 3)
    with pytest.raises(ConfigError):
        make_windows(2, 2, k_range=(6.0, 3.0))
    with pytest.raises(ConfigError):
        make_windows(2, 2, filters={"bandpass": 3})


def test_make_windows_progress_bar_changes_nothing(capsys):
    quiet = make_windows(2, 2, seed=1, window_s=1.0, progress=False)
    shown = make_windows(2, 2, seed=1, window_s=1.0, progress=True)
    assert all(np.array_equal(quiet[key], shown[key]) for key in quiet)
    assert "simulating ECG windows" in capsys.readouterr().out

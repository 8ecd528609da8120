"""R-peak detection against the generator's ground truth, and delineation of known beats."""

import numpy as np
import pytest

from ecgedge.errors import DataError
from ecgedge.signals import EcgStream, SubjectParams, ecg_delineate, ecg_peaks, random_subject

FS = 500


def score(found, truth, tolerance):
    matched = sum(1 for t in truth if found.size and np.min(np.abs(found - t)) <= tolerance)
    return matched / max(len(truth), 1), matched / max(len(found), 1)


@pytest.mark.parametrize("subject_seed", range(8))
def test_detector_sensitivity_and_ppv_on_noisy_subjects(subject_seed):
    rng = np.random.default_rng(subject_seed)
    stream = EcgStream(FS, heart_rate=float(rng.uniform(45, 140)), k_mmol=float(rng.uniform(3.0, 6.5)),
                       noise=0.5, subject=random_subject(subject_seed + 100), seed=subject_seed)
    x = stream.read(20 * FS)
    truth = stream.r_peaks()
    truth = truth[(truth > 0.25 * FS) & (truth < x.size - 0.25 * FS)]
    found = ecg_peaks(x, FS)
    found = found[(found > 0.25 * FS) & (found < x.size - 0.25 * FS)]
    sensitivity, ppv = score(found, truth, tolerance=0.05 * FS)
    assert sensitivity >= 0.97 and ppv >= 0.97, (sensitivity, ppv)


@pytest.mark.parametrize("fs", [130, 250, 300, 1000])
def test_detector_works_at_other_sampling_rates(fs):
    stream = EcgStream(fs, heart_rate=75, k_mmol=4.5, noise=0.2, seed=1)
    x = stream.read(15 * fs)
    truth = stream.r_peaks()
    sensitivity, ppv = score(ecg_peaks(x, fs), truth[truth > 0.25 * fs], tolerance=0.05 * fs)
    assert sensitivity >= 0.95 and ppv >= 0.9


def test_detector_on_inverted_signal_still_counts_beats():
    stream = EcgStream(FS, heart_rate=70, k_mmol=4.5, noise=0.1, seed=4)
    x = stream.read(15 * FS)
    assert abs(len(ecg_peaks(-x, FS)) - len(ecg_peaks(x, FS))) <= 1


def test_detector_on_flat_short_or_noise_only_signals():
    assert ecg_peaks(np.zeros(5000), FS).size == 0
    assert ecg_peaks(np.ones(100), FS).size == 0
    noise = np.random.default_rng(0).normal(0, 5, 5000)
    assert ecg_peaks(noise, FS).size < 50  # never a crash; few peaks
    with pytest.raises(DataError):
        ecg_peaks(np.zeros((2, 100)), FS)
    with pytest.raises(DataError):
        ecg_peaks(np.array([0.0, np.nan] * 500), FS)


def test_delineation_matches_the_generated_intervals():
    subject = SubjectParams()
    stream = EcgStream(FS, heart_rate=60, k_mmol=4.3, noise=0.0, subject=subject, seed=0)
    x = stream.read(10 * FS)
    waves = ecg_delineate(x, ecg_peaks(x, FS), FS)
    pr = np.nanmedian(waves["pr_interval"])
    qrs = np.nanmedian(waves["qrs_duration"])
    qt = np.nanmedian(waves["qt_interval"])
    # Measured from the waveform, so within tens of ms of the subject's nominal values.
    assert abs(pr - subject.pr_interval_s) < 0.03
    assert abs(qrs - subject.qrs_duration_s) < 0.02
    assert abs(qt - subject.qtc_s) < 0.06  # at 60 bpm QT == QTc
    assert np.all(waves["qrs_onset"][1:-1] < waves["r_peak"][1:-1])
    assert np.all(waves["t_peak"][1:-1] > waves["qrs_offset"][1:-1])
    assert np.all(waves["p_peak"][1:-1] < waves["qrs_onset"][1:-1])


def test_delineation_rejects_out_of_range_peaks():
    with pytest.raises(DataError):
        ecg_delineate(np.zeros(100), [5, 200], FS)
    empty = ecg_delineate(np.zeros(100), [], FS)
    assert all(v.size == 0 for v in empty.values())


@pytest.mark.parametrize("seed,k_mmol", [(8, 6.5), (8, 7.5), (3, 6.5), (5, 4.0)])
def test_heart_rate_display_on_filtered_ten_second_windows(seed, k_mmol):
    """What a live screen does: causal filters, then HR from the last 10 s, every 5 s."""
    from ecgedge.signals import StreamingFilter

    stream = EcgStream(FS, heart_rate=72, k_mmol=k_mmol, noise=0.02, seed=seed)
    x = StreamingFilter(FS, {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}).process(stream.read(60 * FS))
    for start in range(0, 50 * FS, 5 * FS):
        peaks = ecg_peaks(x[start:start + 10 * FS], FS)
        assert abs(60 * FS / np.median(np.diff(peaks)) - 72) < 3, start

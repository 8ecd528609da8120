"""The generator's physiology, measured on the generated signal with our own detector and delineator."""

import numpy as np
import pytest
from scipy import signal as sps

from ecgedge.signals import SubjectParams, ecg_delineate, ecg_peaks, ecg_simulate, random_subject

FS = 500
K_STEPS = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


def measure(x, fs=FS):
    """Median of each delineated quantity over the beats of a clean signal."""
    peaks = ecg_peaks(x, fs)
    waves = ecg_delineate(x, peaks, fs)
    return {key: float(np.nanmedian(v)) for key, v in waves.items() if np.isfinite(v).any()}


@pytest.fixture(scope="module")
def k_series():
    subject = SubjectParams()
    return {k: measure(ecg_simulate(12.0, FS, heart_rate=70, k_mmol=k, subject=subject, seed=3)) for k in K_STEPS}


def series(k_series, key):
    return np.array([k_series[k][key] for k in K_STEPS])


def test_t_wave_peaks_and_narrows_as_potassium_rises(k_series):
    t_amp, t_width = series(k_series, "t_amplitude"), series(k_series, "t_width")
    assert np.all(np.diff(t_amp) > 0), t_amp
    assert np.all(np.diff(t_width) < 0), t_width
    # Clearly visible hyperkalaemic peaking: K+ 7 vs 4 at least 1.8x taller and a third narrower.
    assert t_amp[4] > 1.8 * t_amp[1]
    assert t_width[4] < 0.67 * t_width[1]


def test_pr_lengthens_and_qrs_widens_with_hyperkalaemia(k_series):
    pr, qrs = series(k_series, "pr_interval"), series(k_series, "qrs_duration")
    assert np.all(np.diff(pr) > 0), pr
    assert pr[-1] - pr[1] > 0.04  # K 8 vs 4: > 40 ms longer
    # QRS changes mostly above ~6.5 mmol/L: flat (within a sample) in the normal range, then wider.
    assert np.all(np.diff(qrs) >= -1.0 / FS), qrs
    assert qrs[4] > qrs[2] and qrs[5] > qrs[4]
    assert qrs[-1] - qrs[1] > 0.015


def test_p_wave_flattens_with_hyperkalaemia(k_series):
    p_amp = series(k_series, "p_amplitude")
    assert np.all(np.diff(p_amp[1:]) < 0), p_amp
    assert p_amp[-1] < 0.5 * p_amp[1]


def test_hypokalaemia_flattens_t_and_raises_u():
    subject = SubjectParams()
    low = measure(ecg_simulate(12.0, FS, heart_rate=65, k_mmol=2.8, subject=subject, seed=1))
    normal = measure(ecg_simulate(12.0, FS, heart_rate=65, k_mmol=4.3, subject=subject, seed=1))
    assert low["t_amplitude"] < 0.7 * normal["t_amplitude"]
    assert low["u_amplitude"] > 2.0 * normal["u_amplitude"]
    assert low["u_amplitude"] > 0.5 * low["t_amplitude"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t_peaking_in_random_subjects(seed):
    subject = random_subject(seed)
    normal = measure(ecg_simulate(10.0, FS, heart_rate=75, k_mmol=4.2, subject=subject, seed=seed))
    high = measure(ecg_simulate(10.0, FS, heart_rate=75, k_mmol=6.8, subject=subject, seed=seed))
    assert high["t_amplitude"] > 1.3 * normal["t_amplitude"]
    assert high["t_width"] < 0.85 * normal["t_width"]


@pytest.mark.parametrize("heart_rate", [50.0, 72.0, 120.0])
def test_heart_rate_from_detected_peaks_matches_request(heart_rate):
    x = ecg_simulate(30.0, FS, heart_rate=heart_rate, k_mmol=4.5, noise=0.2, seed=int(heart_rate))
    peaks = ecg_peaks(x, FS)
    measured = 60.0 * FS / np.mean(np.diff(peaks))
    assert abs(measured - heart_rate) < 2.0


def test_heart_rate_variability_is_present():
    x = ecg_simulate(60.0, FS, heart_rate=60, k_mmol=4.5, seed=5)
    rr = np.diff(ecg_peaks(x, FS)) / FS
    sdnn = float(np.std(rr))
    assert 0.01 < sdnn < 0.1  # tens of ms, as at rest


def test_qt_shortens_at_faster_rates_like_bazett():
    subject = SubjectParams()
    slow = measure(ecg_simulate(12.0, FS, heart_rate=55, k_mmol=4.5, subject=subject, seed=2))
    fast = measure(ecg_simulate(12.0, FS, heart_rate=110, k_mmol=4.5, subject=subject, seed=2))
    assert fast["qt_interval"] < slow["qt_interval"] - 0.04
    qtc_slow = slow["qt_interval"] / np.sqrt(60 / 55)
    qtc_fast = fast["qt_interval"] / np.sqrt(60 / 110)
    assert abs(qtc_slow - qtc_fast) < 0.03


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_powerline_line_at_requested_frequency(mains):
    x = ecg_simulate(20.0, FS, heart_rate=70, noise=0.5, powerline_hz=mains, seed=4)
    freqs, power = sps.welch(x, fs=FS, nperseg=2048)
    band = (freqs > 40) & (freqs < 70)
    peak = freqs[band][np.argmax(power[band])]
    assert abs(peak - mains) < 0.5
    other = 60.0 if mains == 50.0 else 50.0
    at = lambda f: power[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(mains) > 20 * at(other)


def test_noise_free_signal_has_no_powerline():
    x = ecg_simulate(10.0, FS, noise=0.0, powerline_hz=50.0, seed=4)
    noisy = ecg_simulate(10.0, FS, noise=0.5, powerline_hz=50.0, seed=4)
    freqs, p_clean = sps.welch(x, fs=FS, nperseg=1024)
    _, p_noisy = sps.welch(noisy, fs=FS, nperseg=1024)
    i50 = np.argmin(np.abs(freqs - 50))
    assert p_noisy[i50] > 100 * p_clean[i50]


def test_same_seed_same_signal_other_seed_other_signal():
    a = ecg_simulate(5.0, FS, noise=0.3, seed=7)
    b = ecg_simulate(5.0, FS, noise=0.3, seed=7)
    c = ecg_simulate(5.0, FS, noise=0.3, seed=8)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_subjects_differ_in_morphology():
    amps = [measure(ecg_simulate(8.0, FS, k_mmol=4.5, subject=random_subject(s), seed=0))["r_amplitude"]
            for s in range(6)]
    assert np.std(amps) / np.mean(amps) > 0.1


def test_adc_quantisation_gives_multiples_of_lsb():
    lsb = 2.44
    x = ecg_simulate(3.0, FS, noise=0.3, adc_uv_per_lsb=lsb, seed=1)
    codes = x / lsb
    assert np.allclose(codes, np.round(codes), atol=1e-9)
    assert np.unique(np.round(codes)).size > 100


def test_output_units_are_microvolts():
    x = ecg_simulate(10.0, FS, k_mmol=4.5, seed=0)
    r_amp = measure(x)["r_amplitude"]
    assert 100.0 < r_amp < 3000.0  # lead-I R wave: 0.1-3 mV


def test_noise_sources_are_each_present():
    from dataclasses import replace

    calm = replace(SubjectParams(), artefact_rate_per_s=1e-6)
    clean = ecg_simulate(30.0, FS, k_mmol=4.5, subject=calm, noise=0.0, seed=6)
    noisy = ecg_simulate(30.0, FS, k_mmol=4.5, subject=calm, noise=1.0, seed=6)
    freqs, p_clean = sps.welch(clean, fs=FS, nperseg=4096)
    _, p_noisy = sps.welch(noisy, fs=FS, nperseg=4096)
    wander, emg = (freqs > 0.05) & (freqs < 0.5), (freqs > 70) & (freqs < 140)
    assert p_noisy[wander].sum() > 10 * p_clean[wander].sum()  # baseline wander
    assert p_noisy[emg].sum() > 10 * p_clean[emg].sum()  # muscle noise
    # Electrode motion: with frequent artefacts the signal strays much further from the clean one.
    jumpy = replace(calm, artefact_rate_per_s=0.5)
    moved = ecg_simulate(30.0, FS, k_mmol=4.5, subject=jumpy, noise=1.0, seed=6)
    assert np.max(np.abs(moved - clean)) > 1.5 * np.max(np.abs(noisy - clean))


def test_potassium_figure_is_written(tmp_path):
    from ecgedge.signals.figures import plot_potassium

    path = plot_potassium(tmp_path / "k.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000

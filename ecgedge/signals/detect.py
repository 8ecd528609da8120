"""R-peak detection (Pan-Tompkins style) and a simple wave delineator for clean beats."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from ecgedge.errors import DataError
from ecgedge.signals.filters import ecg_clean

REFRACTORY_S = 0.2
T_WAVE_WINDOW_S = 0.36
INTEGRATION_S = 0.15
# A candidate soon after a beat whose sharpness is below this fraction of recent beats' is a T wave.
T_SLOPE_RATIO = 0.4


def _as_1d(signal, name: str) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"{name} expects a 1-D signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{name} got a signal with NaN or infinite samples")
    return x


def ecg_peaks(signal, sampling_rate: float) -> np.ndarray:
    """Indices (int64, sorted) of R peaks: Pan-Tompkins band-pass, derivative, squaring and moving
    integration, with adaptive signal/noise thresholds, T-wave discrimination and search-back."""
    x = _as_1d(signal, "ecg_peaks")
    fs = float(sampling_rate)
    if fs <= 0:
        raise DataError(f"ecg_peaks needs a positive sampling_rate, got {sampling_rate!r}")
    if x.size < int(0.5 * fs) or np.ptp(x) == 0:
        return np.zeros(0, dtype=np.int64)

    high = min(15.0, 0.45 * fs)
    band = sps.sosfiltfilt(sps.butter(2, [min(5.0, 0.5 * high), high], btype="bandpass", fs=fs, output="sos"),
                           x - np.median(x), padlen=min(x.size - 1, int(fs)))
    slope = np.gradient(band) * fs
    width = max(1, int(round(INTEGRATION_S * fs)))
    integrated = np.convolve(slope**2, np.ones(width) / width, mode="same")
    # T-wave discrimination compares sharpness (15-40 Hz content), where QRS and T differ most.
    sharp_high = min(40.0, 0.45 * fs)
    sharp = sps.sosfiltfilt(sps.butter(2, [0.375 * sharp_high, sharp_high], btype="bandpass", fs=fs, output="sos"),
                            x - np.median(x), padlen=min(x.size - 1, int(fs)))
    sharp = np.abs(sharp)
    refractory = max(1, int(REFRACTORY_S * fs))
    # No refractory spacing here: a tall T wave must not hide the QRS just before it.
    candidates, _ = sps.find_peaks(integrated, distance=max(1, int(0.05 * fs)))
    if candidates.size == 0:
        return np.zeros(0, dtype=np.int64)

    learn = integrated[: int(2 * fs)]
    signal_level = 0.25 * np.max(learn)
    noise_level = 0.5 * np.mean(learn)
    qrs: list[int] = []
    qrs_slopes: list[float] = []
    rr_recent: list[int] = []
    noise_candidates: list[int] = []
    half = max(1, int(0.04 * fs))

    def max_slope(i: int) -> float:
        return float(np.max(sharp[max(0, i - half): i + half + 1]))

    def accept(i: int, level_weight: float) -> None:
        nonlocal signal_level
        if qrs:
            rr_recent.append(i - qrs[-1])
            del rr_recent[:-8]
        qrs.append(i)
        qrs_slopes.append(max_slope(i))
        signal_level = level_weight * integrated[i] + (1 - level_weight) * signal_level

    for c in candidates:
        threshold = noise_level + 0.25 * (signal_level - noise_level)
        # Search back for a missed beat when the gap grows beyond 1.66 average RR intervals.
        if qrs and rr_recent:
            rr_avg = np.mean(rr_recent)
            if c - qrs[-1] > 1.66 * rr_avg:
                missed = [m for m in noise_candidates if m - qrs[-1] > refractory and c - m > refractory
                          and integrated[m] > 0.5 * threshold]
                if missed:
                    best = max(missed, key=lambda m: integrated[m])
                    accept(best, 0.25)
                    noise_candidates = [m for m in noise_candidates if m > best]
        if integrated[c] > threshold:
            t_window = max(T_WAVE_WINDOW_S * fs, 0.5 * np.mean(rr_recent)) if rr_recent else T_WAVE_WINDOW_S * fs
            if qrs and c - qrs[-1] < t_window and max_slope(c) < T_SLOPE_RATIO * np.percentile(qrs_slopes[-8:], 75):
                noise_level = 0.125 * integrated[c] + 0.875 * noise_level  # a T wave, not a beat
                continue
            if qrs and c - qrs[-1] < refractory:
                # Within the refractory period only a clearly sharper peak (the real QRS after a P
                # wave or artefact) replaces the last beat.
                if max_slope(c) > 1.5 * qrs_slopes[-1]:
                    qrs.pop()
                    qrs_slopes.pop()
                    if rr_recent:
                        rr_recent.pop()
                    accept(c, 0.125)
                continue
            accept(c, 0.125)
            noise_candidates = []
        else:
            noise_level = 0.125 * integrated[c] + 0.875 * noise_level
            noise_candidates.append(int(c))

    if not qrs:
        return np.zeros(0, dtype=np.int64)
    # Place each beat on the R wave of the cleaned signal, in the record's dominant QRS polarity.
    clean = ecg_clean(x, fs, highpass_hz=0.5, lowpass_hz=min(40.0, 0.45 * fs))
    search = max(1, int(0.06 * fs))
    segments = [(max(0, i - search), min(x.size, i + search + 1)) for i in qrs]
    up = np.median([clean[a:b].max() for a, b in segments])
    down = np.median([-clean[a:b].min() for a, b in segments])
    polarity = 1.0 if up >= 0.5 * down else -1.0
    peaks = np.array([a + int(np.argmax(polarity * clean[a:b])) for a, b in segments], dtype=np.int64)
    peaks = np.unique(peaks)
    keep = np.concatenate([[True], np.diff(peaks) >= refractory])
    return peaks[keep]


def _level_crossing(y: np.ndarray, start: int, stop: int, level: float) -> float:
    """First fractional index between start and stop (either direction) where y drops below level."""
    step = 1 if stop >= start else -1
    for i in range(start, stop, step):
        if y[i + step] < level <= y[i]:
            frac = (y[i] - level) / (y[i] - y[i + step])
            return i + step * frac
    return np.nan


def _wave_end(y: np.ndarray, peak: int, stop: int, level: float) -> float:
    """Where a wave that peaks at `peak` ends going right: it falls below `level`, or the valley
    before the next wave (T-U fusion), whichever comes first."""
    for i in range(peak, stop):
        if y[i + 1] < level <= y[i]:
            return i + (y[i] - level) / (y[i] - y[i + 1])
        if y[i + 1] > y[i] and i > peak:
            return float(i)
    return np.nan


def ecg_delineate(signal, rpeaks, sampling_rate: float) -> dict[str, np.ndarray]:
    """Delineate clean beats (noise-free or gently cleaned signals).

    Returns per-beat float arrays (NaN where a wave was not found). Positions are sample indices
    (fractional where interpolated): r_peak, qrs_onset, qrs_offset, p_peak, p_onset, t_peak,
    t_offset, u_peak. Amplitudes in the signal's units relative to the PR-segment baseline:
    baseline, r_amplitude, s_amplitude, p_amplitude, t_amplitude (signed), u_amplitude.
    Durations in seconds: t_width (full width at half maximum), pr_interval, qrs_duration,
    qt_interval.
    """
    x = _as_1d(signal, "ecg_delineate")
    fs = float(sampling_rate)
    r_all = np.asarray(rpeaks, dtype=np.int64).ravel()
    if np.any((r_all < 0) | (r_all >= x.size)):
        raise DataError(f"rpeaks must index into the signal of {x.size} samples, got range "
                        f"[{r_all.min() if r_all.size else 0}, {r_all.max() if r_all.size else 0}]")
    names = ("r_peak", "qrs_onset", "qrs_offset", "p_peak", "p_onset", "t_peak", "t_offset", "u_peak",
             "baseline", "r_amplitude", "s_amplitude", "p_amplitude", "t_amplitude", "u_amplitude",
             "t_width", "pr_interval", "qrs_duration", "qt_interval")
    out = {name: np.full(r_all.size, np.nan) for name in names}
    if r_all.size == 0:
        return out
    deriv = np.abs(np.gradient(x)) * fs
    ms = lambda seconds: max(1, int(round(seconds * fs)))  # noqa: E731
    rr_median = float(np.median(np.diff(r_all))) / fs if r_all.size > 1 else 1.0

    for b, r in enumerate(r_all):
        out["r_peak"][b] = r
        prev_r = r_all[b - 1] if b > 0 else r - int(rr_median * fs)
        next_r = r_all[b + 1] if b + 1 < r_all.size else r + int(rr_median * fs)
        rr = max(0.25, (r - prev_r) / fs)
        lo, hi = r - ms(0.15), r + ms(0.18)
        if lo < 1 or hi >= x.size - 1:
            continue
        # QRS onset/offset: nearest run of 10 ms with slope under 4 % of the QRS's steepest slope.
        slope_max = deriv[r - ms(0.06): r + ms(0.06) + 1].max()
        quiet = deriv < 0.04 * slope_max
        run_len = ms(0.01)
        onset = offset = None
        run = 0
        for j in range(r, lo, -1):
            run = run + 1 if quiet[j] else 0
            if run == run_len:
                onset = j + run_len - 1
                break
        run = 0
        for j in range(r, hi):
            run = run + 1 if quiet[j] else 0
            if run == run_len:
                offset = j - run_len + 1
                break
        if onset is None or offset is None:
            continue
        out["qrs_onset"][b], out["qrs_offset"][b] = onset, offset
        out["qrs_duration"][b] = (offset - onset) / fs
        base = float(np.mean(x[max(0, onset - ms(0.02)): max(1, onset - ms(0.004))]))
        y = x - base
        out["baseline"][b] = base
        out["r_amplitude"][b] = y[r]
        out["s_amplitude"][b] = y[r: offset + 1].min()

        # P: largest positive deflection in the 280 ms before QRS onset, after the previous beat's T.
        p_lo = max(onset - ms(0.28), prev_r + int(0.6 * (r - prev_r)), 1)
        p_hi = onset - ms(0.02)
        if p_hi > p_lo + 2:
            p_peak = p_lo + int(np.argmax(y[p_lo:p_hi]))
            p_amp = y[p_peak]
            if p_amp > max(5.0, 0.02 * abs(y[r])) and p_lo < p_peak < p_hi - 1:
                out["p_peak"][b], out["p_amplitude"][b] = p_peak, p_amp
                p_on = _level_crossing(y, p_peak, p_lo - 1, 0.1 * p_amp)
                out["p_onset"][b] = p_on
                out["pr_interval"][b] = (onset - p_on) / fs

        # T: the larger extremum between the end of QRS and the expected end of the QT interval.
        t_lo = offset + ms(0.05)
        t_hi = min(r + ms(0.40 * np.sqrt(rr)), next_r - ms(0.1), x.size - 2)
        if t_hi <= t_lo + 2:
            continue
        seg = y[t_lo:t_hi]
        i_max, i_min = int(np.argmax(seg)), int(np.argmin(seg))
        t_peak = t_lo + (i_max if seg[i_max] >= -seg[i_min] else i_min)
        t_amp = y[t_peak]
        sign = 1.0 if t_amp >= 0 else -1.0
        ys = sign * y
        out["t_peak"][b], out["t_amplitude"][b] = t_peak, t_amp
        half_left = _level_crossing(ys, t_peak, max(offset, 1) - 1, 0.5 * abs(t_amp))
        half_right = _level_crossing(ys, t_peak, min(next_r, x.size - 1) - 1, 0.5 * abs(t_amp))
        out["t_width"][b] = (half_right - half_left) / fs
        t_off = _wave_end(ys, t_peak, min(next_r - ms(0.1), x.size - 2), 0.1 * abs(t_amp))
        out["t_offset"][b] = t_off
        out["qt_interval"][b] = (t_off - onset) / fs
        # U: a hump after the T wave (T-U valley or T end), before the next P wave.
        if not np.isfinite(t_off):
            continue
        u_lo = int(np.ceil(t_off))
        u_hi = min(u_lo + ms(0.25), next_r - ms(0.25), x.size - 1)
        if u_hi > u_lo + 2:
            humps, _ = sps.find_peaks(y[u_lo:u_hi])
            if humps.size:
                u_peak = u_lo + int(humps[np.argmax(y[u_lo + humps])])
                out["u_peak"][b], out["u_amplitude"][b] = u_peak, y[u_peak]
    return out

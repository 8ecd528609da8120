"""Signal quality of one window (SQI), live and offline: lead-off, flatline, saturation, noise, heart rate.

The heart rate comes from the one R-peak detector, `ecgedge.signals.detect.ecg_peaks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgedge.signals.detect import ecg_peaks


@dataclass
class QualityThresholds:
    flatline_std_uv: float = 5.0
    saturation_fraction: float = 0.005
    min_snr_db: float = 0.0


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(x, np.ones(n) / n, mode="same")


def heart_rate_bpm(filtered, fs: float) -> float | None:
    """Median heart rate (beats/min) of a window from its R peaks; None with fewer than 3 beats."""
    x = np.asarray(filtered, np.float64)
    if x.size < int(fs):
        return None
    peaks = ecg_peaks(x, fs)
    if peaks.size < 3:
        return None
    rr = np.diff(peaks) / fs
    rr = rr[(rr > 0.25) & (rr < 2.5)]
    return float(60.0 / np.median(rr)) if rr.size else None


def signal_quality(raw_uv, filtered, fs: float, rail_uv: float, lead_off: bool,
                   th: QualityThresholds = QualityThresholds()) -> dict:
    """{"ok", "reasons", ...} of one window: raw µV (saturation against the ADC rail), filtered µV
    (flatline, noise = what a 100 Hz smoother leaves, heart rate) and the device's lead-off flag."""
    raw = np.asarray(raw_uv, np.float64)
    f = np.asarray(filtered, np.float64)
    std = float(np.std(f))
    saturated = float(np.mean(np.abs(raw) >= rail_uv * 0.999)) if raw.size else 0.0
    hf = f - _moving_average(f, max(1, int(round(fs / 100))))  # what a 100 Hz smoother leaves: noise
    noise_power = float(np.mean(hf * hf))
    snr_db = float(10 * np.log10(max(std * std, 1e-12) / max(noise_power, 1e-12)))
    flat = std < th.flatline_std_uv
    sat = saturated > th.saturation_fraction
    noisy = snr_db < th.min_snr_db
    reasons = [name for name, bad in (("lead_off", lead_off), ("flatline", flat), ("saturation", sat),
                                      ("noise", noisy)) if bad]
    hr = heart_rate_bpm(f, fs)
    return {"ok": not reasons, "reasons": reasons, "lead_off": bool(lead_off), "flatline": bool(flat),
            "saturation_fraction": round(saturated, 5), "std_uv": round(std, 2),
            "noise_power_uv2": round(noise_power, 3), "snr_db": round(snr_db, 2),
            "hr_bpm": round(hr, 1) if hr is not None else None}

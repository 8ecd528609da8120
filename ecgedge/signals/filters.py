"""ECG filters: causal streaming filters (what a device/runtime applies) and zero-phase cleaning."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from ecgedge.errors import ConfigError, DataError

HIGHPASS_ORDER = 2
LOWPASS_ORDER = 4
NOTCH_Q = 30.0
PREPROCESSING_KEYS = ("highpass_hz", "notch_hz", "lowpass_hz")


def _cutoff(name: str, value, sampling_rate: float) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a frequency in Hz or None, got {value!r}") from None
    if value == 0.0:
        return None
    nyquist = sampling_rate / 2.0
    if not 0.0 < value < nyquist:
        raise ConfigError(f"{name}={value} Hz must be in (0, {nyquist}) for a sampling rate of {sampling_rate} Hz")
    return value


def design_filters(sampling_rate: float, highpass_hz: float | None = 0.5, notch_hz: float | None = 50.0,
                   lowpass_hz: float | None = 40.0) -> np.ndarray:
    """Second-order sections [n, 6]: Butterworth high-pass, IIR notch, Butterworth low-pass (each optional)."""
    return _design_filters(sampling_rate, highpass_hz, notch_hz, lowpass_hz).copy()


@lru_cache(maxsize=128)
def _design_filters(sampling_rate, highpass_hz, notch_hz, lowpass_hz) -> np.ndarray:
    try:
        sampling_rate = float(sampling_rate)
    except (TypeError, ValueError):
        raise ConfigError(f"sampling_rate must be a positive number, got {sampling_rate!r}") from None
    if not sampling_rate > 0:
        raise ConfigError(f"sampling_rate must be positive, got {sampling_rate!r}")
    sections = []
    hp = _cutoff("highpass_hz", highpass_hz, sampling_rate)
    if hp is not None:
        sections.append(sps.butter(HIGHPASS_ORDER, hp, btype="highpass", fs=sampling_rate, output="sos"))
    notch = _cutoff("notch_hz", notch_hz, sampling_rate)
    if notch is not None:
        b, a = sps.iirnotch(notch, NOTCH_Q, fs=sampling_rate)
        sections.append(sps.tf2sos(b, a))
    lp = _cutoff("lowpass_hz", lowpass_hz, sampling_rate)
    if lp is not None:
        sections.append(sps.butter(LOWPASS_ORDER, lp, btype="lowpass", fs=sampling_rate, output="sos"))
    if not sections:
        return np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # identity
    return np.concatenate(sections, axis=0)


def _preprocessing_kwargs(preprocessing: Mapping | None) -> dict:
    if preprocessing is None:
        return {key: None for key in PREPROCESSING_KEYS}
    if not isinstance(preprocessing, Mapping):
        raise ConfigError(f"preprocessing must be a dict with keys {PREPROCESSING_KEYS}, got {preprocessing!r}")
    unknown = sorted(set(preprocessing) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ConfigError(f"unknown preprocessing key(s) {unknown}; expected some of {list(PREPROCESSING_KEYS)}")
    return {key: preprocessing.get(key) for key in PREPROCESSING_KEYS}


class StreamingFilter:
    """Causal SOS filter whose state carries across `process` calls.

    The state starts as the steady state for a constant input equal to the first sample, so a
    recording that starts with a DC offset does not ring. Filtering block by block gives the same
    result as filtering the whole array at once.
    """

    def __init__(self, sampling_rate: float, preprocessing: Mapping | None = None):
        self.sampling_rate = float(sampling_rate)
        self.preprocessing = _preprocessing_kwargs(preprocessing)
        self.sos = design_filters(self.sampling_rate, **self.preprocessing)
        self._zi_unit = sps.sosfilt_zi(self.sos)
        self._zi: np.ndarray | None = None

    def reset(self) -> None:
        self._zi = None

    def process(self, block) -> np.ndarray:
        x = np.asarray(block, dtype=np.float64)
        if x.ndim != 1:
            raise DataError(f"StreamingFilter.process expects a 1-D block of samples, got shape {x.shape}")
        if x.size == 0:
            return x.copy()
        if self._zi is None:
            self._zi = self._zi_unit * x[0]
        y, self._zi = sps.sosfilt(self.sos, x, zi=self._zi)
        return y


def ecg_clean(signal, sampling_rate: float, highpass_hz: float = 0.5, lowpass_hz: float = 40.0,
              notch_hz: float | None = None) -> np.ndarray:
    """Zero-phase band-pass (and optional notch) for analysis: no delay, no phase distortion."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"ecg_clean expects a 1-D signal, got shape {x.shape}")
    sos = design_filters(sampling_rate, highpass_hz=highpass_hz, notch_hz=notch_hz, lowpass_hz=lowpass_hz)
    if x.size < 2:
        return x.copy()
    padlen = min(x.size - 1, int(3 * sampling_rate))
    return sps.sosfiltfilt(sos, x - np.median(x), padlen=padlen)

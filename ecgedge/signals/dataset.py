"""Labelled windows of simulated lead-I ECG for training and evaluating potassium models."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ecgedge.errors import ConfigError
from ecgedge.signals.filters import StreamingFilter
from ecgedge.signals.physiology import random_subject
from ecgedge.signals.synth import EcgStream

FILTER_LEAD_IN_S = 2.0  # settles the causal filters before the window starts, as in a live stream


def _check_pair(name: str, pair, low: float, high: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (low, high) pair of numbers, got {pair!r}") from None
    if not (low <= a <= b <= high):
        raise ConfigError(f"{name} must satisfy {low} <= low <= high <= {high}, got {pair!r}")
    return a, b


def make_windows(n_subjects: int, windows_per_subject: int, seed: int = 0, sampling_rate: float = 500,
                 window_s: float = 10.0, k_range=(2.5, 8.0), noise_range=(0.0, 0.5),
                 filters: Mapping | None = None, progress: bool = False,
                 hr_range=(50.0, 110.0)) -> dict[str, np.ndarray]:
    """Simulate `n_subjects` x `windows_per_subject` windows.

    Each subject has its own random SubjectParams and mains frequency (50 or 60 Hz); each window
    draws K+ uniformly from `k_range`, heart rate from `hr_range` and noise level from
    `noise_range`. With `filters` (a model contract's preprocessing dict) each window gets a
    2 s lead-in, is filtered causally by StreamingFilter and the lead-in is dropped.
    Returns x float32 [N, W] µV, k float32 [N], hr float32 [N], subject int32 [N].
    """
    if int(n_subjects) < 1 or int(windows_per_subject) < 1:
        raise ConfigError(f"n_subjects and windows_per_subject must be >= 1, got {n_subjects}, {windows_per_subject}")
    n_subjects, windows_per_subject = int(n_subjects), int(windows_per_subject)
    k_low, k_high = _check_pair("k_range", k_range, 1.0, 10.0)
    noise_low, noise_high = _check_pair("noise_range", noise_range, 0.0, 1.0)
    hr_low, hr_high = _check_pair("hr_range", hr_range, 20.0, 250.0)
    sampling_rate = float(sampling_rate)
    if sampling_rate <= 0:
        raise ConfigError(f"sampling_rate must be positive, got {sampling_rate}")
    window = int(round(window_s * sampling_rate))
    if window < 1:
        raise ConfigError(f"window_s={window_s} gives no samples at {sampling_rate} Hz")
    lead_in = int(round(FILTER_LEAD_IN_S * sampling_rate)) if filters is not None else 0
    if filters is not None:
        StreamingFilter(sampling_rate, filters)  # validate the dict before simulating anything

    n = n_subjects * windows_per_subject
    x = np.empty((n, window), dtype=np.float32)
    k = np.empty(n, dtype=np.float32)
    hr = np.empty(n, dtype=np.float32)
    subject_ids = np.repeat(np.arange(n_subjects, dtype=np.int32), windows_per_subject)

    bar = None
    if progress:
        from rich.progress import Progress
        bar = Progress(transient=False)
        bar.start()
        task = bar.add_task("simulating ECG windows", total=n)
    try:
        for s_index, subject_seq in enumerate(np.random.SeedSequence(int(seed)).spawn(n_subjects)):
            rng = np.random.default_rng(subject_seq)
            subject = random_subject(rng)
            powerline_hz = 50.0 if rng.uniform() < 0.5 else 60.0
            for w in range(windows_per_subject):
                i = s_index * windows_per_subject + w
                k[i] = rng.uniform(k_low, k_high)
                hr[i] = rng.uniform(hr_low, hr_high)
                noise = rng.uniform(noise_low, noise_high)
                stream = EcgStream(sampling_rate=sampling_rate, heart_rate=float(hr[i]), k_mmol=float(k[i]),
                                   noise=noise, subject=subject, seed=int(rng.integers(2**62)),
                                   powerline_hz=powerline_hz)
                signal = stream.read(lead_in + window)
                if filters is not None:
                    signal = StreamingFilter(sampling_rate, filters).process(signal)[lead_in:]
                x[i] = signal
                if bar is not None:
                    bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return {"x": x, "k": k, "hr": hr, "subject": subject_ids}


def record_window_starts(n_samples: int, window: int, hop: int | None = None) -> list[int]:
    """Start samples of a record's windows. hop None: non-overlapping windows from the start (a tail
    shorter than a window is left out). hop given: windows every `hop` samples plus one that ends at the
    record's end when the last would not. A record shorter than a window has one window at 0 (the caller
    zero-pads it)."""
    if window < 1 or (hop is not None and hop < 1):
        raise ValueError(f"window {window} and hop {hop}: expected >= 1")
    if n_samples <= window:
        return [0]
    if hop is None:
        return [i * window for i in range(n_samples // window)]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] != n_samples - window:
        starts.append(n_samples - window)
    return starts

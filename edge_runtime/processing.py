"""Sample processing shared by the live runtime and offline replay: resampling, filtering, signal
quality, windowing and inference. Feeding the same samples (in any block sizes) gives the same windows
and results, which is what the live-vs-offline check relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ecgedge.errors import ConfigError


class StreamingResampler:
    """Polyphase rational resampler (up/down) with state: block-size invariant, causal."""

    def __init__(self, rate_in: float, rate_out: float):
        frac = Fraction(rate_out / rate_in).limit_denominator(1000)
        self.up, self.down = frac.numerator, frac.denominator
        self.identity = self.up == self.down == 1
        if self.identity:
            return
        maxrate = max(self.up, self.down)
        half = 10 * maxrate
        from scipy import signal as sps  # here, not at import: edge-run refuses bad flags in well under a second

        h = sps.firwin(2 * half + 1, 1.0 / maxrate, window=("kaiser", 5.0)) * self.up
        self.taps_per_phase = math.ceil(h.size / self.up)
        h = np.concatenate([h, np.zeros(self.taps_per_phase * self.up - h.size)])
        # H[phase, i] = h[phase + i*up]
        self.H = h.reshape(self.taps_per_phase, self.up).T.copy()
        self.reset()

    def reset(self):
        if self.identity:
            return
        self._hist = np.zeros(0)
        self._hist_start = 0  # input index of _hist[0]
        self._n_in = 0
        self._m_out = 0  # next output index

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.identity:
            return x.copy()
        if self._n_in == 0 and x.size:
            # start from the steady state of the first sample (like StreamingFilter)
            pad = np.full(self.taps_per_phase, x[0])
            self._hist = pad
            self._hist_start = -self.taps_per_phase
        self._hist = np.concatenate([self._hist, x])
        self._n_in += x.size
        # output m needs input index base = (m*down)//up <= n_in-1
        m_end = (self._n_in * self.up + self.down - 1) // self.down
        m = np.arange(self._m_out, m_end)
        self._m_out = m_end
        if m.size:
            pos = m * self.down
            base = pos // self.up
            phase = pos % self.up
            idx = base[:, None] - np.arange(self.taps_per_phase)[None, :] - self._hist_start
            y = np.einsum("ij,ij->i", self.H[phase], self._hist[idx])
        else:
            y = np.zeros(0)
        keep = self.taps_per_phase + 1
        if self._hist.size > keep:
            drop = self._hist.size - keep
            self._hist = self._hist[drop:]
            self._hist_start += drop
        return y

    def out_index(self, in_index: int) -> int:
        return in_index if self.identity else (in_index * self.up + self.down - 1) // self.down


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(x, np.ones(n) / n, mode="same")


def detect_r_peaks(filtered: np.ndarray, fs: float) -> np.ndarray:
    """R peaks in a filtered lead-I segment: energy envelope + adaptive threshold + 250 ms refractory."""
    x = np.asarray(filtered, np.float64)
    if x.size < int(fs):
        return np.zeros(0, int)
    d = np.diff(x, prepend=x[0])
    env = _moving_average(d * d, max(1, int(0.12 * fs)))
    thr = 0.3 * np.percentile(env, 99)
    if thr <= 0:
        return np.zeros(0, int)
    above = env > thr
    starts = np.flatnonzero(above & ~np.r_[False, above[:-1]])
    ends = np.flatnonzero(above & ~np.r_[above[1:], False])
    peaks, last = [], -10**9
    refractory = int(0.25 * fs)
    for s, e in zip(starts, ends):
        lo, hi = max(0, s - int(0.05 * fs)), min(x.size, e + int(0.05 * fs) + 1)
        p = lo + int(np.argmax(np.abs(x[lo:hi])))
        if p - last >= refractory:
            peaks.append(p)
            last = p
    return np.asarray(peaks, int)


def heart_rate_bpm(filtered: np.ndarray, fs: float) -> float | None:
    peaks = detect_r_peaks(filtered, fs)
    if peaks.size < 3:
        return None
    rr = np.diff(peaks) / fs
    rr = rr[(rr > 0.25) & (rr < 2.5)]
    return float(60.0 / np.median(rr)) if rr.size else None


@dataclass
class QualityThresholds:
    flatline_std_uv: float = 5.0
    saturation_fraction: float = 0.005
    min_snr_db: float = 0.0


def signal_quality(raw_uv: np.ndarray, filtered: np.ndarray, fs: float, rail_uv: float, lead_off: bool,
                   th: QualityThresholds = QualityThresholds()) -> dict:
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
    return {"ok": not reasons, "reasons": reasons, "lead_off": bool(lead_off), "flatline": bool(flat),
            "saturation_fraction": round(saturated, 5), "std_uv": round(std, 2),
            "noise_power_uv2": round(noise_power, 3), "snr_db": round(snr_db, 2),
            "hr_bpm": (round(hr, 1) if (hr := heart_rate_bpm(f, fs)) is not None else None)}


@dataclass
class Window:
    start: int  # model-rate sample index since the session start
    raw_uv: np.ndarray
    filtered: np.ndarray
    lead_off: bool
    device_start: int | None = None  # device sample index (same rate only)


class Processor:
    """device samples (counts) -> µV -> resample -> filter -> windows (with lead-off flags).

    `push(device_index, counts)` for a contiguous block; `gap(device_index)` when samples are missing:
    the filter and window buffer restart after it, so no window spans a gap.
    """

    def __init__(self, device_rate: float, uv_per_lsb: float, model_rate: float, window: int, hop: int | None,
                 preprocessing: dict | None):
        from ecgedge.signals import StreamingFilter

        self.device_rate = float(device_rate)
        self.uv_per_lsb = float(uv_per_lsb)
        self.model_rate = float(model_rate)
        self.window = int(window)
        self.hop = int(window if hop is None else hop)
        # a hop below 1 never advances: the window loop would grow memory until it fails
        if self.window < 1 or self.hop < 1:
            raise ConfigError(f"window {self.window} / hop {self.hop} model samples: expected whole numbers >= 1")
        self.resampler = StreamingResampler(device_rate, model_rate)
        self.filter = StreamingFilter(model_rate, preprocessing)
        self.rail_uv = 32767 * self.uv_per_lsb
        self._seg_start = 0  # model index of the current segment's first sample
        self._raw = np.zeros(0)
        self._flt = np.zeros(0)
        self._off = np.zeros(0, bool)
        self._buf_start = 0  # model index of _raw[0]
        self._next_window = 0
        self._lead_off_marks: list[int] = []  # device indices at which STATUS said lead-off
        self.segments = 0

    def mark_lead_off(self, device_index: int) -> None:
        self._lead_off_marks.append(int(device_index))

    def restart(self, device_index: int) -> None:
        self.resampler.reset()
        self.filter.reset()
        m = self.resampler.out_index(device_index)
        self._seg_start = self._buf_start = self._next_window = m
        self._raw = np.zeros(0)
        self._flt = np.zeros(0)
        self._off = np.zeros(0, bool)
        self.segments += 1

    def push(self, device_index: int, counts: np.ndarray) -> list[Window]:
        uv = np.asarray(counts, np.float64) * self.uv_per_lsb
        off = np.zeros(uv.size, bool)
        if self._lead_off_marks:
            marks = np.asarray(self._lead_off_marks) - device_index
            marks = marks[(marks >= 0) & (marks < uv.size)]
            off[marks] = True
            self._lead_off_marks = [m for m in self._lead_off_marks if m >= device_index + uv.size]
        r = self.resampler.process(uv)
        if not self.resampler.identity:
            off = np.zeros(r.size, bool) | bool(off.any())
        f = self.filter.process(r)
        self._raw = np.concatenate([self._raw, r])
        self._flt = np.concatenate([self._flt, f])
        self._off = np.concatenate([self._off, off])
        out = []
        while self._next_window + self.window <= self._buf_start + self._raw.size:
            a = self._next_window - self._buf_start
            sl = slice(a, a + self.window)
            dev = self._next_window if self.resampler.identity else None
            out.append(Window(self._next_window, self._raw[sl].copy(), self._flt[sl].copy(),
                              bool(self._off[sl].any()), dev))
            self._next_window += self.hop
        drop = self._next_window - self._buf_start
        if drop > 0:
            drop = min(drop, self._raw.size)
            self._raw, self._flt, self._off = self._raw[drop:], self._flt[drop:], self._off[drop:]
            self._buf_start += drop
        return out


def window_result(win: Window, package, infer_fn, thresholds: QualityThresholds, rail_uv: float,
                  model_rate: float, skip_low_quality: bool = True) -> dict:
    """One results.jsonl record for a window (inference skipped when quality is low)."""
    sqi = signal_quality(win.raw_uv, win.filtered, model_rate, rail_uv, win.lead_off, thresholds)
    rec = {"window_start_sample": int(win.start), "window_start_s": round(win.start / model_rate, 4),
           "window_samples": int(win.filtered.size), "sqi": sqi, "model_sha256": package.model_sha256}
    if sqi["ok"] or not skip_low_quality:
        rec.update(infer_fn(win))
        rec["skipped"] = False
    else:
        rec["skipped"] = True
    return rec


def offline_results(recording, package, infer_fn, hop: int | None = None,
                    thresholds: QualityThresholds = QualityThresholds(), lead_off_marks=()) -> list[dict]:
    """The same processing and inference over a finished recording (read_partial) — the offline reference."""
    proc = Processor(recording.sampling_rate, recording.uv_per_lsb, package.sampling_rate, package.window_samples,
                     hop, package.preprocessing)
    for m in lead_off_marks:
        proc.mark_lead_off(m)
    out = []
    for start, counts in recording.segments():
        proc.restart(start)
        for win in proc.push(start, counts):
            out.append(window_result(win, package, infer_fn, thresholds, proc.rail_uv, package.sampling_rate))
    return out

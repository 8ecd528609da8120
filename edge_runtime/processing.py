"""Sample processing shared by the live runtime and offline replay: windowing and inference over the
signals' one resampler, filter and signal quality (ecgedge.signals). Feeding the same samples (in any
block sizes) gives the same windows and results, which is what the live-vs-offline check relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgedge.errors import ConfigError
from ecgedge.signals import QualityThresholds, StreamingFilter, StreamingResampler, signal_quality


@dataclass
class Window:
    start: int  # model-rate sample index since the session start
    raw_uv: np.ndarray
    filtered: np.ndarray
    lead_off: bool
    device_start: int | None = None  # device sample index (same rate only)


class Processor:
    """device samples (counts) -> µV -> resample -> filter -> windows (with lead-off flags).

    `push(device_index, counts)` for a contiguous block; `restart(device_index)` after missing samples:
    the resampler, filter and window buffer restart there, so no window spans a gap. The resampler's
    output is aligned in time and lags its input by `resampler.delay` samples; the segment's last ones
    come out when it ends (`restart` at a gap, `finish` at the end of the stream), as the offline
    `ecgedge.signals.resample` gives them, so live and offline windows are the same.
    """

    def __init__(self, device_rate: float, uv_per_lsb: float, model_rate: float, window: int, hop: int | None,
                 preprocessing: dict | None):
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
        self._pending: list[Window] = []  # windows the end of the last segment completed
        self.segments = 0

    def mark_lead_off(self, device_index: int) -> None:
        self._lead_off_marks.append(int(device_index))

    def restart(self, device_index: int) -> None:
        self._pending += self.finish()
        self.resampler.reset()
        self.filter.reset()
        m = self.resampler.out_index(device_index)
        self._seg_start = self._buf_start = self._next_window = m
        self._raw = np.zeros(0)
        self._flt = np.zeros(0)
        self._off = np.zeros(0, bool)
        self.segments += 1

    def finish(self) -> list[Window]:
        """The windows the end of the current segment completes (the resampler's last samples)."""
        tail = self.resampler.flush()
        return self._extend(tail, np.zeros(tail.size, bool)) if tail.size else []

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
        out, self._pending = self._pending, []
        return out + self._extend(r, off)

    def _extend(self, r: np.ndarray, off: np.ndarray) -> list[Window]:
        """Filter model-rate samples onto the buffer and cut the windows they complete."""
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
    for win in proc.finish():
        out.append(window_result(win, package, infer_fn, thresholds, proc.rail_uv, package.sampling_rate))
    return out

"""Range calibrators for INT8 quantisation, one small class per method behind `get_calibrator(name)`.

Each calibrator sees a tensor many times (`collect(name, array)`, once per batch) and keeps a running
summary, never the data: min/max, and for the histogram methods a fixed-size histogram that is
re-binned when a later batch widens the range. `compute_ranges()` returns {name: (min, max)} with
min <= 0 <= max (TFLite's zero point must be representable), or (-t, t) when `symmetric=True`
(weights).

- minmax:     the observed extremes.
- percentile: clip each tail at the given percentile (default 99.99) of the observed values.
- entropy:    TensorRT's KL-divergence search: the clip range whose 8-bit quantised histogram diverges
              least from the clipped float histogram.
- mse:        the clip range that minimises the expected quantisation error (rounding noise scale^2/12
              inside the range plus the squared clipping error outside), from the histogram.
"""

from __future__ import annotations

import math

import numpy as np

from ecgedge.errors import ConfigError, DataError

INT8_LEVELS = 256


class _Histogram:
    """Counts over [lo, hi] in `bins` equal bins; widened (with re-binning) when new data falls outside."""

    def __init__(self, bins: int):
        self.bins = bins
        self.lo = 0.0
        self.hi = 0.0
        self.counts: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        vmin, vmax = float(values.min()), float(values.max())
        if self.counts is None:
            lo, hi = min(vmin, 0.0), max(vmax, 0.0)
            if hi <= lo:
                hi = lo + 1e-8
            self.lo, self.hi = lo, hi
            self.counts = np.zeros(self.bins, dtype=np.float64)
        elif vmin < self.lo or vmax > self.hi:
            lo, hi = min(vmin, self.lo), max(vmax, self.hi)
            centres = self.centres()
            self.counts, _ = np.histogram(centres, bins=self.bins, range=(lo, hi), weights=self.counts)
            self.counts = self.counts.astype(np.float64)
            self.lo, self.hi = lo, hi
        counts, _ = np.histogram(values, bins=self.bins, range=(self.lo, self.hi))
        self.counts += counts

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / self.bins

    def centres(self) -> np.ndarray:
        return self.lo + (np.arange(self.bins) + 0.5) * self.width


class Calibrator:
    """Base: keeps the running min/max of every tensor; subclasses add their summary and range rule."""

    name = "base"

    def __init__(self, symmetric: bool = False, num_bins: int = 2048):
        if num_bins < 2 * INT8_LEVELS:
            raise ConfigError(f"num_bins={num_bins}: expected at least {2 * INT8_LEVELS}")
        self.symmetric = symmetric
        self.num_bins = num_bins
        self.minmax: dict[str, tuple[float, float]] = {}
        self.count: dict[str, int] = {}

    def collect(self, tensor_name: str, array) -> None:
        values = np.asarray(array, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if not np.all(np.isfinite(values)):
            raise DataError(f"tensor {tensor_name!r}: calibration data contains NaN or inf")
        if self.symmetric:
            values = np.abs(values)
        vmin, vmax = float(values.min()), float(values.max())
        old = self.minmax.get(tensor_name)
        self.minmax[tensor_name] = (vmin, vmax) if old is None else (min(old[0], vmin), max(old[1], vmax))
        self.count[tensor_name] = self.count.get(tensor_name, 0) + values.size
        self._collect(tensor_name, values)

    def _collect(self, tensor_name: str, values: np.ndarray) -> None:
        """Subclass hook: update the per-tensor summary (values are |x| when symmetric)."""

    def _range(self, tensor_name: str) -> tuple[float, float]:
        return self.minmax[tensor_name]

    def compute_ranges(self) -> dict[str, tuple[float, float]]:
        ranges = {}
        for tensor_name in self.minmax:
            lo, hi = self._range(tensor_name)
            if self.symmetric:
                t = max(abs(lo), abs(hi))
                lo, hi = -t, t
            lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
            ranges[tensor_name] = (lo, hi)
        return ranges

    def __repr__(self) -> str:
        return f"{type(self).__name__}(symmetric={self.symmetric}, tensors={len(self.minmax)})"


class MinMaxCalibrator(Calibrator):
    """The observed extremes: nothing clipped, the widest step."""

    name = "minmax"


class _HistogramCalibrator(Calibrator):
    def __init__(self, symmetric: bool = False, num_bins: int = 2048):
        super().__init__(symmetric=symmetric, num_bins=num_bins)
        self.histograms: dict[str, _Histogram] = {}

    def _collect(self, tensor_name: str, values: np.ndarray) -> None:
        hist = self.histograms.get(tensor_name)
        if hist is None:
            hist = self.histograms[tensor_name] = _Histogram(self.num_bins)
        hist.add(values)

    def _candidate_windows(self, hist: _Histogram, steps: int) -> list[tuple[int, int]]:
        """Bin windows [start, stop) shrinking both tails towards zero in proportion, widest first.

        The zero bin stays inside every window, so each candidate is a legal TFLite range.
        """
        zero = min(max(int(round(-hist.lo / hist.width)), 0), hist.bins)
        left, right = zero, hist.bins - zero
        windows = []
        for fraction in np.linspace(1.0, 0.0, steps, endpoint=False):
            start = zero - int(math.ceil(left * fraction))
            stop = zero + int(math.ceil(right * fraction))
            if stop - start >= 1 and (start, stop) not in windows:
                windows.append((start, stop))
        return windows


class PercentileCalibrator(_HistogramCalibrator):
    """Clip each tail at `percentile` (e.g. 99.99 keeps all but 0.01 % of the values in each tail)."""

    name = "percentile"

    def __init__(self, percentile: float = 99.99, symmetric: bool = False, num_bins: int = 2048):
        if not 50.0 < percentile <= 100.0:
            raise ConfigError(f"percentile={percentile}: expected a value in (50, 100]")
        super().__init__(symmetric=symmetric, num_bins=num_bins)
        self.percentile = percentile

    def _range(self, tensor_name: str) -> tuple[float, float]:
        hist = self.histograms[tensor_name]
        cdf = np.cumsum(hist.counts) / hist.counts.sum()
        edges = hist.lo + np.arange(hist.bins + 1) * hist.width
        upper_q = self.percentile / 100.0
        hi = edges[min(int(np.searchsorted(cdf, upper_q)) + 1, hist.bins)]
        if self.symmetric:  # values are |x|: only the upper tail exists
            return 0.0, float(hi)
        lo = edges[int(np.searchsorted(cdf, 1.0 - upper_q))]
        vmin, vmax = self.minmax[tensor_name]
        return max(float(lo), vmin), min(float(hi), vmax)


def _expected_quant_mse(counts: np.ndarray, centres: np.ndarray, lo: float, hi: float, levels: int) -> float:
    """Mean squared error of quantising the histogram's values to `levels` steps over [lo, hi]."""
    step = (hi - lo) / (levels - 1)
    below = np.minimum(centres - lo, 0.0)
    above = np.maximum(centres - hi, 0.0)
    inside = counts[(centres >= lo) & (centres <= hi)].sum()
    clip_error = float((counts * (below ** 2 + above ** 2)).sum())
    return (clip_error + inside * step * step / 12.0) / counts.sum()


class MseCalibrator(_HistogramCalibrator):
    """The candidate clip range with the least expected quantisation MSE."""

    name = "mse"

    def __init__(self, symmetric: bool = False, num_bins: int = 2048, steps: int = 200):
        super().__init__(symmetric=symmetric, num_bins=num_bins)
        self.steps = steps

    def _range(self, tensor_name: str) -> tuple[float, float]:
        hist = self.histograms[tensor_name]
        centres = hist.centres()
        levels = INT8_LEVELS // 2 if self.symmetric else INT8_LEVELS
        best, best_err = None, math.inf
        for start, stop in self._candidate_windows(hist, self.steps):
            lo, hi = hist.lo + start * hist.width, hist.lo + stop * hist.width
            err = _expected_quant_mse(hist.counts, centres, lo, hi, levels)
            if err < best_err:
                best, best_err = (lo, hi), err
        vmin, vmax = self.minmax[tensor_name]
        return max(best[0], vmin), min(best[1], vmax)


def _kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


class EntropyCalibrator(_HistogramCalibrator):
    """TensorRT-style KL search over clip windows of the histogram.

    For each candidate window the reference P is the clipped histogram with the outliers folded into
    its edge bins; Q merges P's bins into the 8-bit levels and spreads each level's mass back over its
    non-empty bins. The window with the least KL(P || Q) wins.
    """

    name = "entropy"

    def __init__(self, symmetric: bool = False, num_bins: int = 2048, steps: int = 200):
        super().__init__(symmetric=symmetric, num_bins=num_bins)
        self.steps = steps

    def _range(self, tensor_name: str) -> tuple[float, float]:
        hist = self.histograms[tensor_name]
        levels = INT8_LEVELS // 2 if self.symmetric else INT8_LEVELS
        counts = hist.counts
        best, best_kl = None, math.inf
        for start, stop in self._candidate_windows(hist, self.steps):
            if stop - start < levels:
                continue
            p = counts[start:stop].copy()
            p[0] += counts[:start].sum()
            p[-1] += counts[stop:].sum()
            # merge the window's bins into `levels` chunks, spread each chunk's mass over its non-empty bins
            chunk = (np.arange(p.size) * levels) // p.size
            mass = np.bincount(chunk, weights=counts[start:stop], minlength=levels)
            nonzero = p > 0
            filled = np.bincount(chunk, weights=nonzero.astype(np.float64), minlength=levels)
            q = np.where(nonzero, mass[chunk] / np.maximum(filled[chunk], 1.0), 0.0)
            p_sum, q_sum = p.sum(), q.sum()
            if q_sum == 0:
                continue
            p_n, q_n = p / p_sum, np.maximum(q / q_sum, 1e-12)
            kl = _kl_divergence(p_n, q_n)
            if kl < best_kl - 1e-12:
                best, best_kl = (start, stop), kl
        if best is None:  # too few bins for any shrunk window: keep the full range
            return self.minmax[tensor_name]
        lo, hi = hist.lo + best[0] * hist.width, hist.lo + best[1] * hist.width
        vmin, vmax = self.minmax[tensor_name]
        return max(lo, vmin), min(hi, vmax)


CALIBRATORS: dict[str, type[Calibrator]] = {
    cls.name: cls for cls in (MinMaxCalibrator, PercentileCalibrator, EntropyCalibrator, MseCalibrator)
}


def calibrator_names() -> list[str]:
    return sorted(CALIBRATORS)


def get_calibrator(name: str, **kwargs) -> Calibrator:
    """A fresh calibrator by name ("minmax", "percentile", "entropy", "mse"); kwargs go to its class."""
    cls = CALIBRATORS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown calibrator {name!r}; valid calibrators: {', '.join(calibrator_names())}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"calibrator {name!r}: bad option ({e})") from None

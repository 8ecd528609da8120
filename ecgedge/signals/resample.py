"""The one resampler, live and offline: a polyphase rational resampler with state.

`StreamingResampler(rate_in, rate_out).process(block)` takes blocks of any size and returns the output
samples they complete; the output is aligned with the input in time (the FIR filter's delay is taken
out: output m is the signal at m / rate_out), so it lags the input by `delay` output samples.
`flush()` ends the signal and returns the rest. `resample(x, from, to)` is process + flush over a whole
signal: offline and live give the same samples, bit for bit, whatever the block sizes.

It is scipy's `resample_poly` (default settings), computed incrementally: the same filter (Kaiser-
windowed sinc, beta 5, 10 x max(up, down) taps each side, cut-off at the lower Nyquist rate), the same
centring, zeros before and after the signal, and each output summed in upfirdn's order — so offline
results equal `resample_poly`'s bit for bit, and recordings read before and after this module existed
give the same numbers. (The zero extension makes the first and last few output samples ramp; a live
stream's first window sees the same ramp its training records did.)
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from ecgedge.errors import ConfigError, DataError

MAX_RESAMPLE_DENOMINATOR = 1000


def _ratio(rate_in, rate_out) -> Fraction:
    for name, rate in (("from_rate", rate_in), ("to_rate", rate_out)):
        if not (isinstance(rate, (int, float, np.integer, np.floating)) and np.isfinite(rate) and rate > 0):
            raise ConfigError(f"resample: {name} must be a positive number of Hz, got {rate!r}")
    ratio = Fraction(float(rate_out) / float(rate_in)).limit_denominator(MAX_RESAMPLE_DENOMINATOR)
    if ratio.numerator < 1:  # e.g. a fuzzed WFDB header claiming 2.5 MHz, resampled to 500 Hz
        raise DataError(f"cannot resample from {rate_in:g} Hz to {rate_out:g} Hz: more than "
                        f"{MAX_RESAMPLE_DENOMINATOR}:1")
    return ratio


class StreamingResampler:
    """Polyphase rational resampler (up/down) with state: block-size invariant, aligned, causal."""

    def __init__(self, rate_in: float, rate_out: float):
        frac = _ratio(rate_in, rate_out)
        self.up, self.down = frac.numerator, frac.denominator
        self.identity = self.up == self.down == 1
        self.delay = 0
        if self.identity:
            return
        maxrate = max(self.up, self.down)
        half = 10 * maxrate
        h = sps.firwin(2 * half + 1, 1.0 / maxrate, window=("kaiser", 5.0)) * self.up
        # leading zeros put the filter's centre on an output sample: its delay is `delay` outputs
        pre = self.down - half % self.down
        self.delay = (half + pre) // self.down
        h = np.concatenate([np.zeros(pre), h])
        self.taps_per_phase = math.ceil(h.size / self.up)
        h = np.concatenate([h, np.zeros(self.taps_per_phase * self.up - h.size)])
        # H[phase, i] = h[phase + i*up]: the tap that meets input sample base - i
        self.H = h.reshape(self.taps_per_phase, self.up).T.copy()
        self.reset()

    def reset(self) -> None:
        """Forget the signal (a new one starts with the next block)."""
        if self.identity:
            return
        # the signal is zero before its first sample (resample_poly's constant extension)
        self._hist = np.zeros(self.taps_per_phase)
        self._hist_start = -self.taps_per_phase  # input index of _hist[0]
        self._n_in = 0                           # input samples received
        self._m_raw = self.delay  # next filter output to compute (the first `delay` precede the signal)

    def n_out(self, n_in: int) -> int:
        """Output samples of a whole signal of n_in input samples."""
        return n_in if self.identity else -(-n_in * self.up // self.down)

    def out_index(self, in_index: int) -> int:
        """The first output index at or after input sample `in_index` in time."""
        return self.n_out(in_index)

    def _outputs(self, m_end: int) -> np.ndarray:
        m = np.arange(self._m_raw, m_end)
        if not m.size:
            return np.zeros(0)
        self._m_raw = m_end
        pos = m * self.down
        base = pos // self.up - self._hist_start
        taps = self.H[pos % self.up]
        y = np.zeros(m.size)
        # oldest input first, one tap at a time: upfirdn's summation order, hence its exact result
        for i in range(self.taps_per_phase - 1, -1, -1):
            y += self._hist[base - i] * taps[:, i]
        return y

    def _trim(self) -> None:
        keep = self.taps_per_phase + 1
        if self._hist.size > keep:
            drop = self._hist.size - keep
            self._hist = self._hist[drop:]
            self._hist_start += drop

    def process(self, block) -> np.ndarray:
        x = np.asarray(block, np.float64)
        if x.ndim != 1:
            raise DataError(f"resampler expects a 1-D block of samples, got shape {x.shape}")
        if self.identity:
            return x.copy()
        self._hist = np.concatenate([self._hist, x])
        self._n_in += x.size
        # a filter output needs every input up to base = (m * down) // up
        y = self._outputs(-(-self._n_in * self.up // self.down))
        self._trim()
        return y

    def flush(self) -> np.ndarray:
        """The outputs still owed for the signal so far (zero after its end, as offline); then reset."""
        if self.identity or self._n_in == 0:
            self.reset()
            return np.zeros(0)
        last = self.n_out(self._n_in) - 1 + self.delay  # last filter output owed
        need = (last * self.down) // self.up            # the input it reaches
        have = self._hist_start + self._hist.size - 1
        if need > have:
            self._hist = np.concatenate([self._hist, np.zeros(need - have)])
        y = self._outputs(last + 1)
        self.reset()
        return y


def resample(signal, from_rate: float, to_rate: float) -> np.ndarray:
    """A whole signal resampled from `from_rate` to `to_rate` Hz (rational approximation of the ratio,
    denominator up to 1000): the streaming resampler's process + flush, so identical to the live path."""
    x = np.asarray(signal, dtype=np.float64)
    r = StreamingResampler(from_rate, to_rate)
    if x.ndim != 1:
        raise DataError(f"resample expects a 1-D signal, got shape {x.shape}")
    if r.identity or x.size == 0:
        return x.copy()
    return np.concatenate([r.process(x), r.flush()])

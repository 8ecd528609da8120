"""Streaming lead-I ECG generator: beats on an HRV-modulated RR series plus realistic noise.

`EcgStream.read(n)` returns the next n samples; the output does not depend on how reads are
chunked (beats and artefacts are scheduled in time, filtered noise keeps its filter state), so
`ecg_simulate` is simply one long read.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as sps

from ecgedge.errors import ConfigError
from ecgedge.signals.physiology import (BEAT_POST_S, BEAT_PRE_S, N_WAVES, SubjectParams, beat_waves,
                                        random_subject)

# Noise amplitudes at noise = 1.0 (µV); a subject's noise profile multiplies them.
RESP_WANDER_UV = 100.0
DRIFT_RMS_UV = 150.0
EMG_RMS_UV = 25.0
POWERLINE_UV = 30.0
AMPLIFIER_RMS_UV = 4.0
ARTEFACT_MEDIAN_UV = 500.0
NOISE_RAMP_S = 0.25  # a noise level change fades in over this time (no steps in the output)
GENERATION_BLOCK_S = 0.2  # samples are generated in blocks of this length (or longer reads)

HR_RANGE = (20.0, 250.0)
K_RANGE = (1.0, 10.0)


def _check_range(name: str, value: float, low: float, high: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}") from None
    if not np.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


@lru_cache(maxsize=64)
def _unit_noise_filter(kind: str, sampling_rate: float) -> tuple[np.ndarray, float]:
    """SOS of a noise-shaping filter and the gain that makes its output unit-RMS for unit white input."""
    nyq = sampling_rate / 2.0
    if kind == "drift":
        sos = sps.butter(2, min(0.15, 0.4 * nyq), btype="lowpass", fs=sampling_rate, output="sos")
        n_imp = int(40 * sampling_rate / 0.15)
    elif kind == "envelope":
        sos = sps.butter(2, min(0.3, 0.4 * nyq), btype="lowpass", fs=sampling_rate, output="sos")
        n_imp = int(40 * sampling_rate / 0.3)
    elif kind == "emg":
        high = min(150.0, 0.45 * sampling_rate)
        low = min(20.0, 0.5 * high)
        sos = sps.butter(2, [low, high], btype="bandpass", fs=sampling_rate, output="sos")
        n_imp = int(2 * sampling_rate)
    else:  # pragma: no cover - internal names only
        raise ValueError(kind)
    impulse = np.zeros(n_imp)
    impulse[0] = 1.0
    gain = float(np.sqrt(np.sum(sps.sosfilt(sos, impulse) ** 2)))
    return sos, 1.0 / gain


class _FilteredNoise:
    """White Gaussian noise through a fixed filter, state carried across chunks (chunk-invariant)."""

    def __init__(self, kind: str, sampling_rate: float, rng: np.random.Generator):
        self._sos, self._norm = _unit_noise_filter(kind, sampling_rate)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._rng = rng

    def next(self, n: int) -> np.ndarray:
        white = self._rng.standard_normal(n) * self._norm
        out, self._zi = sps.sosfilt(self._sos, white, zi=self._zi)
        return out


class EcgStream:
    """An endless lead-I ECG (µV) whose K+, heart rate and noise level can change mid-stream.

    Same seed, same settings and the same sequence of `set` calls give the same samples, however
    `read` is chunked.
    """

    def __init__(self, sampling_rate: float = 500, heart_rate: float = 72, k_mmol: float = 6.2,
                 noise: float = 0.02, subject: SubjectParams | None = None, seed: int = 0,
                 powerline_hz: float | None = 50.0, adc_uv_per_lsb: float | None = None):
        self.sampling_rate = _check_range("sampling_rate", sampling_rate, 1.0, 100_000.0)
        self.heart_rate = _check_range("heart_rate", heart_rate, *HR_RANGE)
        self.k_mmol = _check_range("k_mmol", k_mmol, *K_RANGE)
        self.noise = _check_range("noise", noise, 0.0, 1.0)
        if powerline_hz is not None and float(powerline_hz) != 0.0:
            self.powerline_hz = _check_range("powerline_hz", powerline_hz, 1.0, 1000.0)
        else:
            self.powerline_hz = None
        if adc_uv_per_lsb is not None:
            adc_uv_per_lsb = _check_range("adc_uv_per_lsb", adc_uv_per_lsb, 1e-6, 1e6)
        self.adc_uv_per_lsb = adc_uv_per_lsb
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise ConfigError(f"seed must be an integer, got {seed!r}") from None
        ss = np.random.SeedSequence(self.seed)
        subject_ss, beat_ss, noise_ss, artefact_ss, phase_ss = ss.spawn(5)
        if subject is None:
            subject = random_subject(np.random.default_rng(subject_ss))
        if not isinstance(subject, SubjectParams):
            raise ConfigError(f"subject must be SubjectParams or None, got {type(subject).__name__}")
        self.subject = subject
        self._beat_rng = np.random.default_rng(beat_ss)
        self._artefact_rng = np.random.default_rng(artefact_ss)
        noise_rng = np.random.default_rng(noise_ss)
        phases = np.random.default_rng(phase_ss).uniform(0, 2 * np.pi, size=8)
        self._resp_phase0, self._lf_phase0, self._lf_phase1, self._pl_phase = phases[:4]
        self._wander_phase2, self._pl_mod_phase = phases[4:6]
        fs = self.sampling_rate
        # Each noise source has its own generator so adding one never reshuffles the others.
        noise_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(noise_rng.integers(2**63)).spawn(4)]
        self._drift = _FilteredNoise("drift", fs, noise_rngs[0])
        self._emg = _FilteredNoise("emg", fs, noise_rngs[1])
        self._emg_envelope = _FilteredNoise("envelope", fs, noise_rngs[2])
        self._white_rng = noise_rngs[3]

        self._pos = 0  # samples returned by read()
        self._generated = 0  # samples generated (at most one block ahead of _pos)
        self._block = max(1, int(round(GENERATION_BLOCK_S * self.sampling_rate)))
        self._buffer = np.zeros(0)
        self._buffer_start = 0
        rr0 = 60.0 / self.heart_rate
        self._last_rr = rr0
        self._next_r = -1.4 - self._beat_rng.uniform(0.0, rr0)
        empty = np.zeros((0, N_WAVES))
        self._beat_t = np.zeros(0)
        self._beat_params = {"center": empty, "amplitude": empty, "sigma_left": empty, "sigma_right": empty}
        self._r_times: list[float] = []
        self._artefacts: list[tuple] = []  # (kind, start_s, end_s, amplitude, a, b)
        self._next_artefact = self._artefact_rng.exponential(1.0 / self.subject.artefact_rate_per_s)
        self._noise_ramp = (0, self.noise, self.noise)  # (start sample, from, to)

    # -- settings ---------------------------------------------------------------------------
    def set(self, k_mmol: float | None = None, heart_rate: float | None = None,
            noise: float | None = None) -> None:
        """Change settings for what is not generated yet: within GENERATION_BLOCK_S of the read
        position, beats not yet begun take the new K+ and rate, and noise fades to its new level."""
        if k_mmol is not None:
            self.k_mmol = _check_range("k_mmol", k_mmol, *K_RANGE)
        if heart_rate is not None:
            self.heart_rate = _check_range("heart_rate", heart_rate, *HR_RANGE)
        if noise is not None:
            noise = _check_range("noise", noise, 0.0, 1.0)
            start = self._generated
            self._noise_ramp = (start, self._noise_gain_at(np.array([start]))[0], noise)
            self.noise = noise

    @property
    def samples_emitted(self) -> int:
        return self._pos

    def r_peaks(self) -> np.ndarray:
        """Ground truth: sample indices (rounded) of the R peaks emitted so far."""
        t = np.asarray(self._r_times)
        idx = np.round(t * self.sampling_rate).astype(np.int64)
        return idx[(idx >= 0) & (idx < self._pos)]

    # -- beats ------------------------------------------------------------------------------
    def _rr_at(self, t: float) -> float:
        s = self.subject
        rr0 = 60.0 / self.heart_rate
        vagal = min(1.5, rr0)  # respiratory sinus arrhythmia fades at fast rates
        modulation = (s.rsa_fraction * vagal * np.sin(2 * np.pi * s.resp_rate_hz * t + self._resp_phase0)
                      + s.lf_fraction * (0.75 * np.sin(2 * np.pi * s.lf_hz * t + self._lf_phase0)
                                         + 0.45 * np.sin(2 * np.pi * 1.37 * s.lf_hz * t + self._lf_phase1)))
        rr = rr0 * (1.0 + modulation) + s.rr_jitter_s * min(1.0, rr0) * self._beat_rng.standard_normal()
        return float(np.clip(rr, 0.6 * rr0, 1.4 * rr0))

    def _schedule_beats(self, t_end: float) -> None:
        times, prev_rr, ks = [], [], []
        while self._next_r - BEAT_PRE_S < t_end:
            t = self._next_r
            times.append(t)
            prev_rr.append(self._last_rr)
            ks.append(self.k_mmol)
            rr = self._rr_at(t)
            self._last_rr = rr
            self._next_r = t + rr
        if not times:
            return
        times = np.asarray(times)
        resp_phase = 2 * np.pi * self.subject.resp_rate_hz * times + self._resp_phase0
        waves = beat_waves(self.subject, np.asarray(prev_rr), np.asarray(ks), resp_phase=resp_phase)
        self._beat_t = np.concatenate([self._beat_t, times])
        for key in self._beat_params:
            self._beat_params[key] = np.concatenate([self._beat_params[key], waves[key]])
        self._r_times.extend(times.tolist())

    def _render_beats(self, i0: int, i1: int) -> np.ndarray:
        fs = self.sampling_rate
        t0, t1 = i0 / fs, i1 / fs
        # Forget beats that ended before this chunk.
        keep = self._beat_t + BEAT_POST_S >= t0
        if not keep.all():
            self._beat_t = self._beat_t[keep]
            for key in self._beat_params:
                self._beat_params[key] = self._beat_params[key][keep]
        active = (self._beat_t - BEAT_PRE_S < t1)
        out = np.zeros(i1 - i0)
        if not active.any():
            return out
        r = self._beat_t[active]
        p = {key: v[active] for key, v in self._beat_params.items()}
        # Each wave is evaluated only within 5 sigma of its centre: cheap, and the truncation
        # error (< 4e-6 of the wave's amplitude) is far below any ADC step.
        for w in range(N_WAVES):
            sigma_l, sigma_r = p["sigma_left"][:, w], p["sigma_right"][:, w]
            half = int(np.ceil(5.0 * max(sigma_l.max(), sigma_r.max()) * fs)) + 1
            centre = r + p["center"][:, w]
            idx = np.floor(centre * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
            d = idx / fs - centre[:, None]
            sigma = np.where(d < 0, sigma_l[:, None], sigma_r[:, None])
            z = d / sigma
            values = p["amplitude"][:, w, None] * np.exp(-0.5 * z**2)
            # Cut-off per beat (not per batch), so a sample's value never depends on how reads are chunked.
            inside = (idx >= i0) & (idx < i1) & (np.abs(z) <= 5.0)
            out += np.bincount(idx[inside] - i0, weights=values[inside], minlength=i1 - i0)
        return out

    # -- noise ------------------------------------------------------------------------------
    def _noise_gain_at(self, n: np.ndarray) -> np.ndarray:
        start, g_from, g_to = self._noise_ramp
        ramp_len = max(1.0, NOISE_RAMP_S * self.sampling_rate)
        frac = np.clip((n - start) / ramp_len, 0.0, 1.0)
        return g_from + (g_to - g_from) * frac

    def _schedule_artefacts(self, t_end: float) -> None:
        rng = self._artefact_rng
        while self._next_artefact < t_end:
            t = self._next_artefact
            amp = ARTEFACT_MEDIAN_UV * np.exp(0.5 * rng.standard_normal()) * rng.choice([-1.0, 1.0])
            if rng.uniform() < 0.5:  # electrode step: sudden offset that the electrode bleeds off
                tau = rng.uniform(0.3, 2.0)
                self._artefacts.append(("step", t, t + 6 * tau, amp, tau, 0.0))
            else:  # movement burst: a few swings of the cable/skin at 1-4 Hz under a smooth envelope
                dur = rng.uniform(0.3, 1.5)
                self._artefacts.append(("burst", t, t + dur, amp, rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)))
            self._next_artefact = t + rng.exponential(1.0 / self.subject.artefact_rate_per_s)

    def _render_artefacts(self, t: np.ndarray) -> np.ndarray:
        out = np.zeros(t.shape)
        t0, t1 = t[0], t[-1]
        self._artefacts = [a for a in self._artefacts if a[2] >= t0]
        for kind, start, end, amp, a, b in self._artefacts:
            if start > t1:
                continue
            sel = (t >= start) & (t < end)
            dt = t[sel] - start
            if kind == "step":
                out[sel] += amp * (1.0 - np.exp(-dt / 0.01)) * np.exp(-dt / a)
            else:
                out[sel] += amp * np.sin(np.pi * dt / (end - start)) ** 2 * np.sin(2 * np.pi * a * dt + b)
        return out

    def _render_noise(self, i0: int, i1: int) -> np.ndarray:
        n = i1 - i0
        fs = self.sampling_rate
        s = self.subject
        idx = np.arange(i0, i1)
        t = idx / fs
        # Always advance every random source, so that noise=0 stretches keep the stream aligned.
        drift = self._drift.next(n)
        emg = self._emg.next(n)
        envelope = self._emg_envelope.next(n)
        white = self._white_rng.standard_normal(n)
        self._schedule_artefacts(t[-1] + 1.0 / fs)
        gain = self._noise_gain_at(idx)
        if not np.any(gain):
            self._render_artefacts(t)  # prune only
            return np.zeros(n)
        resp = 2 * np.pi * s.resp_rate_hz * t + self._resp_phase0
        wander = s.wander_gain * (RESP_WANDER_UV * (np.sin(resp) + 0.25 * np.sin(2 * resp + self._wander_phase2))
                                  + DRIFT_RMS_UV * drift)
        emg_part = s.emg_gain * EMG_RMS_UV * emg * np.exp(0.7 * envelope - 0.245)
        total = wander + emg_part + AMPLIFIER_RMS_UV * white + self._render_artefacts(t)
        if self.powerline_hz is not None:
            phase = 2 * np.pi * self.powerline_hz * t + self._pl_phase
            line = np.sin(phase)
            if 3 * self.powerline_hz < fs / 2:
                line = line + 0.15 * np.sin(3 * phase)
            modulation = 1.0 + 0.2 * np.sin(2 * np.pi * 0.05 * t + self._pl_mod_phase)
            total += s.powerline_gain * POWERLINE_UV * line * modulation
        return gain * total

    # -- output -----------------------------------------------------------------------------
    def read(self, n: int) -> np.ndarray:
        """The next `n` samples in µV (float64)."""
        n = int(n)
        if n < 0:
            raise ConfigError(f"read(n) needs n >= 0, got {n}")
        if n == 0:
            return np.zeros(0)
        end = self._pos + n
        if end > self._generated:
            # Generate up to a block boundary: many small reads then cost little. Generation is
            # chunk-invariant, so where the boundaries fall never changes the samples.
            target = -(-end // self._block) * self._block
            self._buffer = np.concatenate([self._buffer[self._pos - self._buffer_start:],
                                           self._generate(self._generated, target)])
            self._buffer_start = self._pos
            self._generated = target
        x = self._buffer[self._pos - self._buffer_start: end - self._buffer_start].copy()
        self._pos = end
        return x

    def _generate(self, i0: int, i1: int) -> np.ndarray:
        self._schedule_beats(i1 / self.sampling_rate)
        x = self._render_beats(i0, i1) + self._render_noise(i0, i1)
        if self.adc_uv_per_lsb is not None:
            x = np.round(x / self.adc_uv_per_lsb) * self.adc_uv_per_lsb
        return x


def ecg_simulate(duration: float = 10.0, sampling_rate: float = 500, heart_rate: float = 70.0,
                 k_mmol: float = 4.5, subject: SubjectParams | None = None, noise: float = 0.0,
                 powerline_hz: float | None = 50.0, adc_uv_per_lsb: float | None = None,
                 seed: int = 0) -> np.ndarray:
    """`duration` seconds of lead-I ECG in µV (float64), deterministic for a seed."""
    duration = _check_range("duration", duration, 0.0, 7 * 24 * 3600.0)
    stream = EcgStream(sampling_rate=sampling_rate, heart_rate=heart_rate, k_mmol=k_mmol, noise=noise,
                       subject=subject, seed=seed, powerline_hz=powerline_hz, adc_uv_per_lsb=adc_uv_per_lsb)
    return stream.read(int(round(duration * stream.sampling_rate)))

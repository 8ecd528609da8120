"""Beat morphology of a lead-I ECG as a function of the subject, heart rate and serum potassium.

Every beat is a sum of asymmetric Gaussian waves (P, Q, R, S, an ST-level term, T, U) placed
around its R peak. This module turns (subject, RR interval, K+) into those wave parameters;
`synth.py` places beats in time and adds noise. docs/signals.md explains the model and the
literature it follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ecgedge.errors import ConfigError

# Order of the waves in every per-beat parameter array.
WAVES = ("P", "Q", "R", "S", "ST", "T", "U")
N_WAVES = len(WAVES)
# Extent of one beat around its R peak (seconds): enough for a long PR before and T/U after.
BEAT_PRE_S = 0.55
BEAT_POST_S = 1.05

K_NORMAL = 4.3  # mmol/L, middle of the normal range 3.5-5.0


@dataclass(frozen=True)
class SubjectParams:
    """What makes one simulated person's ECG their own (amplitudes in µV, times in seconds)."""

    qrs_axis_deg: float = 45.0  # frontal QRS axis; lead I sees cos(axis)
    t_axis_offset_deg: float = 10.0  # T axis relative to the QRS axis
    qrs_magnitude_uv: float = 1400.0  # QRS vector magnitude
    q_fraction: float = 0.12  # Q depth as a fraction of R
    s_fraction: float = 0.12  # S depth relative to the QRS magnitude (rightward forces)
    p_axis_deg: float = 55.0  # frontal P axis; lead I sees cos(axis)
    p_magnitude_uv: float = 130.0
    t_magnitude_uv: float = 350.0
    u_fraction: float = 0.08  # U amplitude as a fraction of the T magnitude
    p_duration_s: float = 0.095
    pr_interval_s: float = 0.155  # at rest, normal K+
    qrs_duration_s: float = 0.088
    qtc_s: float = 0.405  # Bazett-corrected QT
    t_asymmetry: float = 1.55  # ascending / descending limb width
    # Potassium sensitivity: where hyperkalaemic changes start and how strongly they show.
    k_hyper_onset: float = 5.0
    k_t_peaking_gain: float = 0.65
    k_t_narrowing_gain: float = 0.45
    k_pr_gain_s: float = 0.022
    k_qrs_onset: float = 6.6
    k_qrs_gain: float = 0.22
    k_hypo_onset: float = 3.6
    k_hypo_gain: float = 1.0
    # Heart-rate variability and respiration.
    resp_rate_hz: float = 0.25
    rsa_fraction: float = 0.03  # RR modulation by respiration (at 60 bpm)
    lf_fraction: float = 0.02  # RR modulation by ~0.1 Hz Mayer waves
    lf_hz: float = 0.1
    rr_jitter_s: float = 0.008
    # Noise profile of this person's recording (skin contact, movement), multiplies defaults.
    wander_gain: float = 1.0
    emg_gain: float = 1.0
    powerline_gain: float = 1.0
    artefact_rate_per_s: float = 0.06

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SubjectParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown SubjectParams field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)


def random_subject(seed: int | np.random.Generator | None = 0) -> SubjectParams:
    """Draw one plausible adult (lead I) with its own morphology, HRV and noise profile."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def lognormal(median: float, sigma: float) -> float:
        return float(median * np.exp(sigma * rng.standard_normal()))

    def clipped_normal(mean: float, sd: float, low: float, high: float) -> float:
        return float(np.clip(mean + sd * rng.standard_normal(), low, high))

    return SubjectParams(
        qrs_axis_deg=clipped_normal(45.0, 22.0, -20.0, 80.0),
        t_axis_offset_deg=clipped_normal(5.0, 15.0, -35.0, 35.0),
        qrs_magnitude_uv=lognormal(1400.0, 0.25),
        q_fraction=clipped_normal(0.12, 0.06, 0.0, 0.3),
        s_fraction=clipped_normal(0.12, 0.05, 0.02, 0.3),
        p_axis_deg=clipped_normal(55.0, 15.0, 0.0, 85.0),
        p_magnitude_uv=lognormal(130.0, 0.25),
        t_magnitude_uv=lognormal(330.0, 0.25),
        u_fraction=clipped_normal(0.08, 0.03, 0.02, 0.16),
        p_duration_s=clipped_normal(0.095, 0.010, 0.075, 0.12),
        pr_interval_s=clipped_normal(0.155, 0.018, 0.12, 0.20),
        qrs_duration_s=clipped_normal(0.088, 0.008, 0.07, 0.108),
        qtc_s=clipped_normal(0.405, 0.018, 0.36, 0.45),
        t_asymmetry=clipped_normal(1.55, 0.15, 1.2, 1.9),
        k_hyper_onset=clipped_normal(5.0, 0.3, 4.4, 5.7),
        k_t_peaking_gain=lognormal(0.65, 0.3),
        k_t_narrowing_gain=lognormal(0.45, 0.25),
        k_pr_gain_s=lognormal(0.022, 0.3),
        k_qrs_onset=clipped_normal(6.6, 0.3, 6.0, 7.2),
        k_qrs_gain=lognormal(0.22, 0.3),
        k_hypo_onset=clipped_normal(3.6, 0.15, 3.2, 4.0),
        k_hypo_gain=lognormal(1.0, 0.25),
        resp_rate_hz=clipped_normal(0.25, 0.04, 0.15, 0.4),
        rsa_fraction=lognormal(0.03, 0.4),
        lf_fraction=lognormal(0.02, 0.4),
        lf_hz=clipped_normal(0.1, 0.015, 0.06, 0.14),
        rr_jitter_s=lognormal(0.008, 0.3),
        wander_gain=lognormal(1.0, 0.4),
        emg_gain=lognormal(1.0, 0.5),
        powerline_gain=lognormal(1.0, 0.6),
        artefact_rate_per_s=lognormal(0.06, 0.5),
    )


def _softplus(x: np.ndarray | float, scale: float) -> np.ndarray:
    """Smooth ramp: ~0 well below 0, ~x well above; strictly increasing."""
    x = np.asarray(x, dtype=float) / scale
    return scale * np.logaddexp(0.0, x)


def potassium_load(subject: SubjectParams, k_mmol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hyper, qrs_hyper, hypo) drive terms in mmol/L-like units; each smooth and monotonic in K+."""
    k = np.asarray(k_mmol, dtype=float)
    hyper = _softplus(k - subject.k_hyper_onset, 0.3)
    qrs_hyper = _softplus(k - subject.k_qrs_onset, 0.35)
    hypo = subject.k_hypo_gain * _softplus(subject.k_hypo_onset - k, 0.3)
    return hyper, qrs_hyper, hypo


def beat_waves(subject: SubjectParams, rr_s: np.ndarray, k_mmol: np.ndarray,
               resp_phase: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Wave parameters of beats with preceding RR intervals `rr_s` at potassium `k_mmol`.

    Returns arrays of shape [n_beats, N_WAVES] (order WAVES): `center` (s, relative to R),
    `amplitude` (µV), `sigma_left` / `sigma_right` (s).
    """
    rr = np.atleast_1d(np.asarray(rr_s, dtype=float))
    k = np.broadcast_to(np.asarray(k_mmol, dtype=float), rr.shape)
    n = rr.shape[0]
    hyper, qrs_hyper, hypo = potassium_load(subject, k)
    s = subject

    # Lead-I projections of the frontal-plane vectors.
    qrs_proj = np.cos(np.radians(s.qrs_axis_deg))
    t_proj = np.cos(np.radians(s.qrs_axis_deg + s.t_axis_offset_deg))
    resp = np.zeros(n) if resp_phase is None else np.sin(resp_phase)
    amp_mod = 1.0 + 0.05 * resp  # respiration swings the electrical axis a little

    # QRS: widens with marked hyperkalaemia.
    qrs = s.qrs_duration_s * (1.0 + s.k_qrs_gain * qrs_hyper)
    r_amp = s.qrs_magnitude_uv * max(qrs_proj, 0.08) * amp_mod
    # A widened QRS loses some of its peak voltage (same area spread over longer time).
    r_amp = r_amp / (1.0 + 0.5 * s.k_qrs_gain * qrs_hyper)
    q_amp = -s.q_fraction * r_amp
    # Lead I sees more of the terminal (rightward) forces as the axis turns right.
    s_amp = -s.qrs_magnitude_uv * s.s_fraction * (0.4 + np.sin(np.radians(max(s.qrs_axis_deg, 0.0)))) * amp_mod
    s_amp = s_amp * (1.0 + 0.3 * s.k_qrs_gain * qrs_hyper)
    qrs_onset = -0.5 * qrs

    # PR: rate-dependent (shorter at fast rates) and lengthened by hyperkalaemia.
    pr = s.pr_interval_s * (0.75 + 0.25 * np.sqrt(rr)) + s.k_pr_gain_s * hyper
    # P: flattens and broadens as K+ rises (atrial myocytes are the most K+-sensitive).
    p_dur = s.p_duration_s * (1.0 + 0.08 * hyper)
    p_amp = s.p_magnitude_uv * max(np.cos(np.radians(s.p_axis_deg)), 0.1) * np.exp(-0.45 * hyper) * amp_mod
    p_sigma = p_dur / 5.0
    p_center = qrs_onset - pr + 2.5 * p_sigma

    # QT follows rate (Bazett), shortens slightly with hyperkalaemia.
    qt = s.qtc_s * np.sqrt(rr) * (1.0 - 0.03 * hyper) * (1.0 + 0.04 * hypo)
    t_end = qrs_onset + qt
    rate_width = qt / 0.405
    sigma_down = 0.038 * rate_width / (1.0 + 0.6 * s.k_t_narrowing_gain * hyper) * (1.0 + 0.35 * hypo)
    sigma_up = (0.038 * s.t_asymmetry * rate_width / (1.0 + s.k_t_narrowing_gain * hyper)
                * (1.0 + 0.35 * hypo))
    t_center = t_end - 2.5 * sigma_down
    peaking = hyper / np.sqrt(1.0 + (hyper / 3.0) ** 2)  # T growth saturates in severe hyperkalaemia
    t_amp = (s.t_magnitude_uv * t_proj * (1.0 + s.k_t_peaking_gain * peaking) / (1.0 + 0.8 * hypo))

    # U: small after T; grows with hypokalaemia. ST: depressed with hypokalaemia.
    u_center = t_end + 0.07 * np.sqrt(rr)
    u_amp = s.u_fraction * s.t_magnitude_uv * max(t_proj, 0.3) * (1.0 + 4.0 * hypo)
    st_center = 0.5 * qrs + 0.07 * np.sqrt(rr)
    st_amp = -70.0 * hypo * max(t_proj, 0.3)

    center = np.stack([p_center, -0.28 * qrs, np.zeros(n), 0.26 * qrs, st_center, t_center, u_center], axis=1)
    amplitude = np.stack([p_amp, q_amp, r_amp, s_amp, st_amp, t_amp, u_amp * np.ones(n)], axis=1)
    sigma_left = np.stack([p_sigma * 1.1, 0.06 * qrs, 0.10 * qrs, 0.07 * qrs, 0.03 * np.ones(n), sigma_up,
                           0.045 * np.ones(n)], axis=1)
    sigma_right = np.stack([p_sigma * 0.9, 0.06 * qrs, 0.10 * qrs, 0.08 * qrs, 0.07 * np.ones(n),
                            sigma_down, 0.035 * np.ones(n)], axis=1)
    return {"center": center, "amplitude": amplitude, "sigma_left": sigma_left, "sigma_right": sigma_right}

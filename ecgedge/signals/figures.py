"""Figures of the generator's potassium physiology (for docs and reports).

    python -m ecgedge.signals.figures docs/img        # writes signals_potassium.png

Every number plotted is measured on the generated signal with `ecg_delineate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ecgedge.signals.detect import ecg_delineate, ecg_peaks
from ecgedge.signals.physiology import SubjectParams
from ecgedge.signals.synth import ecg_simulate

K_LEVELS = (2.8, 4.0, 5.0, 6.0, 7.0, 8.0)
K_SWEEP = np.round(np.arange(2.5, 8.51, 0.25), 2)


def measure_sweep(subject: SubjectParams | None = None, sampling_rate: float = 500, heart_rate: float = 70.0,
                  k_values=K_SWEEP) -> dict[str, np.ndarray]:
    """Median T amplitude/width, PR, QRS, P and U amplitude per K+ value (noise off)."""
    subject = subject or SubjectParams()
    keys = ("t_amplitude", "t_width", "pr_interval", "qrs_duration", "p_amplitude", "u_amplitude")
    out = {key: [] for key in keys}
    for k in k_values:
        x = ecg_simulate(10.0, sampling_rate, heart_rate=heart_rate, k_mmol=float(k), subject=subject, seed=0)
        waves = ecg_delineate(x, ecg_peaks(x, sampling_rate), sampling_rate)
        for key in keys:
            values = waves[key]
            out[key].append(float(np.nanmedian(values)) if np.isfinite(values).any() else np.nan)
    result = {key: np.asarray(v) for key, v in out.items()}
    result["k_mmol"] = np.asarray(k_values, dtype=float)
    return result


def plot_potassium(path, subject: SubjectParams | None = None, sampling_rate: float = 500) -> Path:
    """One beat per K+ level overlaid, and the measured trends against K+."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subject = subject or SubjectParams()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    colours = plt.cm.viridis(np.linspace(0, 0.95, len(K_LEVELS)))
    for k, colour in zip(K_LEVELS, colours):
        x = ecg_simulate(4.0, sampling_rate, heart_rate=70, k_mmol=k, subject=subject, seed=0)
        r = ecg_peaks(x, sampling_rate)[1]
        seg = slice(r - int(0.35 * sampling_rate), r + int(0.6 * sampling_rate))
        t_ms = (np.arange(x.size)[seg] - r) / sampling_rate * 1000
        axes[0].plot(t_ms, x[seg] / 1000, color=colour, label=f"K+ {k:g}")
    axes[0].set(xlabel="time from R (ms)", ylabel="lead I (mV)", title="one beat per K+ level")
    axes[0].legend(fontsize=8)
    sweep = measure_sweep(subject, sampling_rate)
    k = sweep["k_mmol"]
    axes[1].plot(k, sweep["t_amplitude"], "o-", label="T amplitude")
    axes[1].plot(k, sweep["p_amplitude"], "s-", label="P amplitude")
    axes[1].plot(k, sweep["u_amplitude"], "^-", label="U amplitude")
    axes[1].set(xlabel="K+ (mmol/L)", ylabel="µV", title="amplitudes (measured)")
    axes[1].legend(fontsize=8)
    axes[2].plot(k, sweep["t_width"] * 1000, "o-", label="T width (FWHM)")
    axes[2].plot(k, sweep["pr_interval"] * 1000, "s-", label="PR")
    axes[2].plot(k, sweep["qrs_duration"] * 1000, "^-", label="QRS")
    axes[2].set(xlabel="K+ (mmol/L)", ylabel="ms", title="durations (measured)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in axes[1:]:
        ax.axvspan(3.5, 5.0, color="green", alpha=0.07)
    fig.suptitle("ecgedge synthetic lead-I ECG vs serum potassium (synthetic data, not for clinical use)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="docs/img")
    args = parser.parse_args(argv)
    path = plot_potassium(Path(args.out_dir) / "signals_potassium.png")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

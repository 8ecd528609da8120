"""Lead-I ECG signals: a physiological generator (potassium-dependent morphology, HRV, noise),
streaming filters, the one resampler, the one R-peak detector (`ecg_peaks`) and delineation, the one
signal-quality index (`signal_quality`), and loaders for recorded data. The live runtime and the
offline paths (training, export, replay) use the same functions.

All signals are float64 microvolts unless said otherwise.
"""

from ecgedge.signals.dataset import make_windows, record_window_starts
from ecgedge.signals.detect import ecg_delineate, ecg_peaks
from ecgedge.signals.filters import StreamingFilter, design_filters, ecg_clean
from ecgedge.signals.io import Record, load_record, save_record
from ecgedge.signals.physiology import SubjectParams, random_subject
from ecgedge.signals.quality import QualityThresholds, heart_rate_bpm, signal_quality
from ecgedge.signals.resample import StreamingResampler, resample
from ecgedge.signals.synth import EcgStream, ecg_simulate

__all__ = [
    "EcgStream", "QualityThresholds", "Record", "StreamingFilter", "StreamingResampler", "SubjectParams",
    "design_filters", "ecg_clean", "ecg_delineate", "ecg_peaks", "ecg_simulate", "heart_rate_bpm", "load_record",
    "make_windows", "random_subject", "record_window_starts", "resample", "save_record", "signal_quality",
]

"""Lead-I ECG signals: a physiological generator (potassium-dependent morphology, HRV, noise),
streaming filters, R-peak detection and delineation, and loaders for recorded data.

All signals are float64 microvolts unless said otherwise.
"""

from ecgedge.signals.dataset import make_windows, record_window_starts
from ecgedge.signals.detect import ecg_delineate, ecg_peaks
from ecgedge.signals.filters import StreamingFilter, design_filters, ecg_clean
from ecgedge.signals.io import Record, load_record, resample, save_record
from ecgedge.signals.physiology import SubjectParams, random_subject
from ecgedge.signals.synth import EcgStream, ecg_simulate

__all__ = [
    "EcgStream", "Record", "StreamingFilter", "SubjectParams", "design_filters", "ecg_clean", "ecg_delineate",
    "ecg_peaks", "ecg_simulate", "load_record", "make_windows", "random_subject", "record_window_starts", "resample",
    "save_record",
]

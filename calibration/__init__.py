"""ecgedge.calibration: INT8 range calibrators, calibration data readers, activation-range collection.

    from ecgedge.calibration import get_calibrator, WindowDataReader, collect_activation_ranges
    cal = get_calibrator("entropy")            # "minmax", "percentile", "entropy", "mse"
    ranges = collect_activation_ranges(model, WindowDataReader(x, "input", 32), cal)
"""

from ecgedge.calibration.activations import collect_activation_ranges
from ecgedge.calibration.calibrators import (CALIBRATORS, Calibrator, EntropyCalibrator, MinMaxCalibrator,
                                             MseCalibrator, PercentileCalibrator, calibrator_names,
                                             get_calibrator)
from ecgedge.calibration.readers import (CalibrationDataReader, RecordDataReader, WindowDataReader,
                                         synthetic_calibration_windows, windows_from_recordings)

__all__ = [
    "CALIBRATORS", "Calibrator", "MinMaxCalibrator", "PercentileCalibrator", "EntropyCalibrator",
    "MseCalibrator", "calibrator_names", "get_calibrator", "CalibrationDataReader", "WindowDataReader",
    "RecordDataReader", "windows_from_recordings", "synthetic_calibration_windows", "collect_activation_ranges",
]

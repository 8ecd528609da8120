"""Calibration data: readers with one method, `get_next() -> dict | None` (as in ONNX Runtime).

- `WindowDataReader(windows, input_name, batch_size)`: batches of an in-memory window array.
- `RecordDataReader(paths, contract, ...)`: a user's recordings (WFDB/EDF/CSV/.npy via
  `ecgedge.signals.load_record`), checked against the model's input contract, filtered the way the live
  runtime filters (causal `StreamingFilter`), cut into non-overlapping windows, scaled to model units.
- `windows_from_recordings(paths, contract)`: the model-unit windows [N, 1, W] of a user's recordings.
- `synthetic_calibration_windows(spec, n, seed)`: generated windows in model units, shaped [n, 1, W].
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, DataError


class CalibrationDataReader(abc.ABC):
    """Feeds calibration batches; `get_next()` returns {input_name: array} or None when exhausted."""

    @abc.abstractmethod
    def get_next(self) -> dict | None: ...


class WindowDataReader(CalibrationDataReader):
    """Batches along axis 0 of `windows` (any trailing shape), float32, in order; `rewind()` restarts."""

    def __init__(self, windows, input_name: str = "input", batch_size: int = 32):
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim < 2 or windows.shape[0] == 0:
            raise DataError(f"calibration windows: expected [N, ...] with N >= 1, got shape {windows.shape}")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: expected >= 1")
        self.windows = windows
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._pos = 0

    def __len__(self) -> int:
        """Number of batches in one pass."""
        return -(-self.windows.shape[0] // self.batch_size)

    def rewind(self) -> None:
        self._pos = 0

    def get_next(self) -> dict | None:
        if self._pos >= self.windows.shape[0]:
            return None
        batch = self.windows[self._pos:self._pos + self.batch_size]
        self._pos += batch.shape[0]
        return {self.input_name: batch}


def _contract_value(contract, key: str):
    if isinstance(contract, dict):
        if key not in contract:
            raise ConfigError(f"input contract lacks {key!r}; has {sorted(contract)}")
        return contract[key]
    return getattr(contract, key)


def windows_from_recordings(paths, contract, resample: bool = False) -> np.ndarray:
    """Model-unit windows [N, 1, W] from recordings; DataError names the file and the bad value.

    A record at another sampling rate is refused unless `resample` (then it is resampled to the contract).
    """
    from ecgedge.signals import StreamingFilter, load_record

    rate = float(_contract_value(contract, "sampling_rate_hz"))
    window = int(_contract_value(contract, "window_samples"))
    scale_uv = float(_contract_value(contract, "scale_uv"))
    preprocessing = _contract_value(contract, "preprocessing")
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise DataError("no calibration records given")
    out = []
    for path in paths:
        record = load_record(path, sampling_rate=rate) if resample else load_record(path)
        if abs(float(record.sampling_rate) - rate) > 1e-6:
            raise DataError(f"record {str(path)!r}: sampling rate {record.sampling_rate:g} Hz, "
                            f"the model expects {rate:g} Hz")
        signal = np.asarray(record.signal_uv, dtype=np.float64)
        if signal.ndim != 1:
            raise DataError(f"record {str(path)!r}: signal shape {signal.shape}, expected one lead [n]")
        if signal.shape[0] < window:
            raise DataError(f"record {str(path)!r}: {signal.shape[0]} samples, the model's window needs "
                            f"at least {window}")
        filtered = StreamingFilter(rate, preprocessing).process(signal) if preprocessing else signal
        n = filtered.shape[0] // window
        out.append((filtered[:n * window].reshape(n, 1, window) / scale_uv).astype(np.float32))
    return np.concatenate(out, axis=0)


class RecordDataReader(WindowDataReader):
    """Calibration batches from a user's records, checked against the model's input contract."""

    def __init__(self, paths, contract, input_name: str = "input", batch_size: int = 32, resample: bool = False):
        super().__init__(windows_from_recordings(paths, contract, resample=resample), input_name=input_name,
                         batch_size=batch_size)


def synthetic_calibration_windows(spec, n: int = 500, seed: int = 0, windows_per_subject: int = 5,
                           progress: bool = False) -> np.ndarray:
    """n generated windows [n, 1, W] in model units, filtered as the live runtime filters them."""
    from ecgedge.signals import make_windows

    if n < 1:
        raise ConfigError(f"n={n}: expected at least one calibration window")
    contract = spec.input
    rate = int(_contract_value(contract, "sampling_rate_hz"))
    window = int(_contract_value(contract, "window_samples"))
    n_subjects = -(-n // windows_per_subject)
    data = make_windows(n_subjects, windows_per_subject, seed=seed, sampling_rate=rate,
                        window_s=window / rate, filters=_contract_value(contract, "preprocessing"),
                        progress=progress)
    x = np.asarray(data["x"][:n], dtype=np.float32) / float(_contract_value(contract, "scale_uv"))
    return x[:, None, :]

"""Read and write single-lead ECG recordings (WFDB, EDF, CSV, .npy) in µV, and resample them.

wfdb and pyedflib are imported only when a record of their format is read or written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, DataError
from ecgedge.signals.resample import resample

FORMATS = ("wfdb", "edf", "csv", "npy")
EXTENSIONS = {".hea": "wfdb", ".dat": "wfdb", ".mat": "wfdb", ".edf": "edf", ".csv": "csv", ".txt": "csv",
              ".npy": "npy"}
# Physical units -> factor to µV.
UNIT_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "microvolt": 1.0, "microvolts": 1.0, "mv": 1000.0,
              "millivolt": 1000.0, "millivolts": 1000.0, "v": 1e6, "volt": 1e6, "volts": 1e6}
LEAD_I_NAMES = {"i", "lead i", "lead_i", "ecg i", "ecg_i", "ecg lead i", "lead1", "lead 1", "lead_1"}
TIME_COLUMN_NAMES = {"time", "t", "time_s", "seconds", "sec", "s", "time_ms", "ms", "timestamp"}


@dataclass
class Record:
    """One lead of a recording in µV at `sampling_rate` Hz."""

    signal_uv: np.ndarray
    sampling_rate: float
    lead: str | None
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.signal_uv.size / self.sampling_rate


def _unit_factor(unit: str | None, path: Path, channel: str) -> float:
    key = (unit or "").strip().lower()
    if key not in UNIT_TO_UV:
        raise DataError(f"{path}: channel {channel!r} has physical unit {unit!r}; expected one of mV, uV, V")
    return UNIT_TO_UV[key]


def _pick_lead(names: list[str]) -> int:
    for i, name in enumerate(names):
        if name.strip().lower() in LEAD_I_NAMES:
            return i
    return 0


def _fill_gaps(x: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    bad = ~np.isfinite(x)
    if bad.all():
        raise DataError(f"{path}: the signal has no finite samples")
    if bad.any():
        good = np.flatnonzero(~bad)
        x = x.copy()
        x[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return x, int(bad.sum())


# -- readers ------------------------------------------------------------------------------------
MAX_WFDB_SIGNALS = 1024
# A record's own sampling rate: below 10 Hz no ECG/PPG morphology is left, above 100 kHz it is not a body-surface
# recording; outside, a header or a CSV time column is wrong, and resampling it to a model's rate could ask for
# billions of samples (the loader fuzzer's out-of-memory: two CSV rows 300,009 s apart, read as 3.3e-6 Hz).
RECORD_RATE_RANGE_HZ = (10.0, 100_000.0)


def _check_wfdb_header(hea: Path) -> None:
    """Refuse a header whose record line declares more signals than it describes (or absurdly many): wfdb
    allocates for the declared count first (a 10-byte header claiming 11 million signals took 17 s)."""
    try:
        with open(hea, "rb") as f:
            text = f.read(1 << 20).decode("latin-1")
    except OSError as e:
        raise DataError(f"{hea}: cannot read the WFDB header ({e})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{hea}: empty WFDB header")
    fields = lines[0].split()
    if len(fields) < 2:
        return  # a record line without a signal count: wfdb decides
    head = fields[1].split("/")[0]
    if not re.fullmatch(r"[0-9]+", head):  # str.isdigit() also takes '¹'; int() does not
        raise DataError(f"{hea}: WFDB record line {lines[0][:80]!r}: the number of signals is not a number")
    n_sig = int(head)
    described = len(lines) - 1 if "/" not in fields[0] else n_sig  # a multi-segment record lists segments
    if n_sig > MAX_WFDB_SIGNALS or n_sig > described:
        raise DataError(f"{hea}: the record line declares {n_sig} signals, the header describes {len(lines) - 1} "
                        f"(at most {MAX_WFDB_SIGNALS})")


def _read_wfdb(path: Path) -> tuple[np.ndarray, float, str | None, dict]:
    import wfdb

    base = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat", ".mat") else path
    _check_wfdb_header(base.with_suffix(".hea"))
    try:
        # the header first, then only the picked lead's channel: the record's other signal files (a PTB
        # record's .xyz Frank leads, say) are never opened, so one that is absent does not matter
        hdr = wfdb.rdheader(str(base))
        names = list(hdr.sig_name or [f"ch{i}" for i in range(hdr.n_sig or 0)])
        if not names:
            raise DataError(f"{path}: WFDB record has no signal channels")
        i = _pick_lead(names)
        rec = wfdb.rdrecord(str(base), channels=[i])
    except DataError:
        raise
    except Exception as exc:  # wfdb raises plain ValueError/OSError for broken files
        raise DataError(f"{path}: not a readable WFDB record ({exc})") from exc
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[1] != 1:
        raise DataError(f"{path}: WFDB record has no samples for channel {names[i]!r}")
    unit = rec.units[0] if rec.units else None
    factor = _unit_factor(unit, path, names[i])
    meta = {"format": "wfdb", "channels": names, "units": unit, "comments": list(rec.comments or [])}
    return rec.p_signal[:, 0].astype(np.float64) * factor, float(rec.fs), names[i], meta


def _read_edf(path: Path) -> tuple[np.ndarray, float, str | None, dict]:
    import pyedflib

    try:
        reader = pyedflib.EdfReader(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable EDF file ({exc})") from exc
    try:
        names = list(reader.getSignalLabels())
        if not names:
            raise DataError(f"{path}: EDF file has no signals")
        i = _pick_lead(names)
        x = reader.readSignal(i).astype(np.float64)
        fs = float(reader.getSampleFrequency(i))
        unit = reader.getPhysicalDimension(i)
        # save_record pads to whole data records and notes the true length here.
        m = re.search(r"samples=(\d+)", reader.getPatientAdditional() or "")
        if m and int(m.group(1)) <= x.size:
            x = x[: int(m.group(1))]
    except DataError:
        raise
    except Exception as exc:  # pyedflib on a header it opened but cannot use (a 0 s data record: ZeroDivisionError)
        raise DataError(f"{path}: not a readable EDF file ({type(exc).__name__}: {exc})") from exc
    finally:
        reader.close()
    factor = _unit_factor(unit, path, names[i])
    return x * factor, fs, names[i], {"format": "edf", "channels": names, "units": unit}


_RATE_COMMENT = re.compile(r"sampling[_ ]?rate(?:_hz)?\s*[=:]\s*([0-9.eE+-]+)")


def _read_csv(path: Path) -> tuple[np.ndarray, float | None, str | None, dict]:
    rate = None
    comment_lead = None
    header: list[str] | None = None
    rows: list[list[float]] = []
    delimiter = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                m = _RATE_COMMENT.search(line.lower())
                if m:
                    try:
                        rate = float(m.group(1))
                    except ValueError:
                        raise DataError(f"{path}:{line_no}: sampling rate {m.group(1)!r} is not a number") from None
                m = re.search(r"lead\s*[=:]\s*(\S+)", line)
                if m:
                    comment_lead = m.group(1)
                continue
            if delimiter is None:
                delimiter = next((d for d in (",", ";", "\t") if d in line), None)
            cells = [c.strip() for c in (line.split(delimiter) if delimiter else line.split())]
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                if header is None and not rows:
                    header = [c.strip().strip('"') for c in cells]
                    continue
                raise DataError(f"{path}: line {line_no} is not numeric: {line[:60]!r}") from None
    if not rows:
        raise DataError(f"{path}: CSV has no numeric rows; expected one signal column or time + signal columns")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise DataError(f"{path}: CSV rows have different numbers of columns; expected {width} everywhere")
    data = np.asarray(rows, dtype=np.float64)
    names = header if header is not None and len(header) == width else [f"col{i}" for i in range(width)]
    lowered = [n.lower() for n in names]
    time_col = None
    if width >= 2:
        if lowered[0] in TIME_COLUMN_NAMES or lowered[0].startswith("time"):
            time_col = 0
        elif header is None and data.shape[0] > 2:
            steps = np.diff(data[:, 0])
            if np.all(steps > 0) and np.ptp(steps) <= 1e-3 * np.median(steps):
                time_col = 0
    signal_cols = [i for i in range(width) if i != time_col]
    preferred = [i for i in signal_cols if re.sub(r"[\s(\[].*", "", lowered[i]) in LEAD_I_NAMES]
    col = preferred[0] if preferred else signal_cols[0]
    if time_col is not None and rate is None:
        t = data[:, time_col]
        if t.size < 2:
            raise DataError(f"{path}: a time column needs at least two rows to give a sampling rate")
        step = float(np.median(np.diff(t)))
        if step <= 0:
            raise DataError(f"{path}: time column is not increasing")
        unit_scale = 1e-3 if ("ms" in lowered[time_col] and "s" != lowered[time_col]) else 1.0
        rate = 1.0 / (step * unit_scale)
    name = lowered[col]
    factor = 1.0  # µV unless the column says otherwise
    if re.search(r"(^|[^a-z])mv|_mv|\(mv\)|millivolt", name):
        factor = 1000.0
    elif re.search(r"(^|[^a-z])v$|\(v\)|_v$", name):
        factor = 1e6
    meta = {"format": "csv", "columns": names, "units": {1.0: "uV", 1000.0: "mV", 1e6: "V"}[factor]}
    lead = comment_lead or (names[col] if header is not None else None)
    return data[:, col] * factor, rate, lead, meta


def _read_npy(path: Path) -> tuple[np.ndarray, float | None, str | None, dict]:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: .npy array has shape {arr.shape} and dtype {arr.dtype}; expected a non-empty "
                        "1-D numeric signal (or [n, 1])")
    rate, lead, factor = None, None, 1.0
    meta: dict = {"format": "npy", "units": "uV"}
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{sidecar}: unreadable sidecar JSON ({exc})") from exc
        rate = info.get("sampling_rate", info.get("sampling_rate_hz"))
        rate = float(rate) if rate is not None else None
        lead = info.get("lead")
        if "units" in info:
            factor = _unit_factor(info["units"], sidecar, lead or "signal")
            meta["units"] = info["units"]
        meta["sidecar"] = str(sidecar)
    return arr.astype(np.float64) * factor, rate, lead, meta


_READERS = {"wfdb": _read_wfdb, "edf": _read_edf, "csv": _read_csv, "npy": _read_npy}


def _detect_format(path: Path) -> tuple[str, Path]:
    suffix = path.suffix.lower()
    if suffix in EXTENSIONS:
        fmt = EXTENSIONS[suffix]
        if fmt == "wfdb":
            header = path.with_suffix(".hea")
            if not header.exists():
                raise DataError(f"{path}: WFDB header {header.name} not found next to it")
            return fmt, header
        if not path.exists():
            raise DataError(f"{path}: file not found")
        return fmt, path
    if path.with_name(path.name + ".hea").exists():  # a WFDB record name without extension
        return "wfdb", path.with_name(path.name + ".hea")
    if not path.exists():
        raise DataError(f"{path}: no such file or WFDB record (looked for {path.name}.hea too)")
    raise DataError(f"{path}: unknown extension {path.suffix!r}; expected one of "
                    f"{sorted(EXTENSIONS)} or a WFDB record name")


def load_record(path, sampling_rate: float | None = None, source_rate: float | None = None) -> Record:
    """Read one lead (lead I if named, else the first channel) in µV.

    `sampling_rate`: resample to this rate. The file's own rate comes from its header (WFDB, EDF),
    a CSV time column or `# sampling_rate=` comment, a .npy's sidecar .json, or `source_rate`.
    Where none gives it, `sampling_rate` is taken as the file's rate (no resampling).
    """
    path = Path(path)
    fmt, path = _detect_format(path)
    signal_uv, native_rate, lead, meta = _READERS[fmt](path)
    if source_rate is not None:
        native_rate = float(source_rate)
    if native_rate is None:
        if sampling_rate is None:
            raise DataError(f"{path}: no sampling rate in the file; pass sampling_rate= (or source_rate=), add a "
                            "time column or '# sampling_rate=' line (CSV), or a sidecar .json (npy)")
        native_rate = float(sampling_rate)
        meta["sampling_rate_assumed"] = True
    if not (np.isfinite(native_rate) and native_rate > 0):
        raise DataError(f"{path}: sampling rate {native_rate!r} is not a positive number")
    lo, hi = RECORD_RATE_RANGE_HZ
    if not lo <= native_rate <= hi:
        raise DataError(f"{path}: sampling rate {native_rate:.6g} Hz is outside {lo:g}-{hi:g} Hz; expected an "
                        "ECG/PPG waveform's rate (check the header, the CSV time column and its unit)")
    signal_uv, filled = _fill_gaps(np.asarray(signal_uv, dtype=np.float64), path)
    if filled:
        meta["non_finite_samples_interpolated"] = filled
    meta["native_sampling_rate"] = float(native_rate)
    rate = float(native_rate)
    if sampling_rate is not None and float(sampling_rate) != rate:
        signal_uv = resample(signal_uv, rate, float(sampling_rate))
        rate = float(sampling_rate)
    return Record(signal_uv=signal_uv, sampling_rate=rate, lead=lead, source=str(path), meta=meta)


# -- writers ------------------------------------------------------------------------------------
def save_record(path, signal_uv, sampling_rate: float, fmt: str = "wfdb", lead: str = "I") -> Path:
    """Write a single-lead recording in µV; returns the path of the main file written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown record format {fmt!r}; expected one of {list(FORMATS)}")
    x = np.asarray(signal_uv, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise DataError(f"save_record expects a non-empty 1-D signal in µV, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("save_record got NaN or infinite samples")
    fs = float(sampling_rate)
    if not (np.isfinite(fs) and fs > 0):
        raise ConfigError(f"sampling_rate must be a positive number, got {sampling_rate!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "wfdb":
        import wfdb

        base = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat") else path
        # 16-bit samples; 200 ADC units per mV (5 µV per unit) would clip ±163 mV, so pick the gain
        # from the signal's range to keep the finest resolution that fits.
        peak_mv = max(float(np.max(np.abs(x))) / 1000.0, 1e-3)
        gain = float(min(1e6, np.floor(32000.0 / peak_mv)))
        wfdb.wrsamp(base.name, fs=fs, units=["mV"], sig_name=[lead], p_signal=(x / 1000.0)[:, None],
                    fmt=["16"], adc_gain=[gain], baseline=[0], write_dir=str(base.parent))
        return base.with_suffix(".hea")
    if fmt == "edf":
        import pyedflib

        if path.suffix.lower() != ".edf":
            path = path.with_suffix(".edf")
        record_s = next((d for d in (1, 2, 4, 5, 10, 20, 25, 50, 100) if abs(fs * d - round(fs * d)) < 1e-9), None)
        if record_s is None:
            raise DataError(f"EDF needs a whole number of samples per data record; {fs} Hz has none")
        per_record = int(round(fs * record_s))
        pad = (-x.size) % per_record
        lo, hi = float(np.floor(x.min())) - 1.0, float(np.ceil(x.max())) + 1.0
        writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            if record_s != 1:
                writer.setDatarecordDuration(record_s)
            writer.setSignalHeaders([{"label": lead, "dimension": "uV", "sample_frequency": fs,
                                      "physical_max": hi, "physical_min": lo, "digital_max": 32767,
                                      "digital_min": -32768, "transducer": "", "prefilter": ""}])
            writer.setPatientAdditional(f"samples={x.size}")
            writer.writeSamples([np.concatenate([x, np.full(pad, x[-1])])])
        finally:
            writer.close()
        return path
    if fmt == "csv":
        if path.suffix.lower() not in (".csv", ".txt"):
            path = path.with_suffix(".csv")
        t = np.arange(x.size) / fs
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"# sampling_rate_hz={fs!r}\n# lead={lead}\ntime_s,ecg_uv\n")
            np.savetxt(fh, np.column_stack([t, x]), fmt=["%.6f", "%.4f"], delimiter=",")
        return path
    if path.suffix.lower() != ".npy":
        path = path.with_suffix(".npy")
    np.save(path, x)
    path.with_suffix(".json").write_text(json.dumps({"sampling_rate": fs, "units": "uV", "lead": lead}))
    return path

"""af_lead1's data: the PhysioNet/CinC Challenge 2017 records as the model contract sees them.

Records are read once with the product's loader (`ecgedge.signals.load_record`, resampled to the
contract's rate), filtered causally from the record start with the runtime's StreamingFilter (exactly
what the HIL bench and the runtime feed the model), and cached as one .npz under ~/.cache/ecgedge (never
in the repository). Splits are by record: a seeded stratified split, the published record lists
(`SPLITS_DIR`: what the shipped weights used, so the card's figures can be reproduced from the full
public set) and stratified k-fold assignments for cross-validation inside the training records.
Batches: random 10 s crops (one per draw, or several of one record for record-level training), with
augmentation a handheld recording needs. Data: G. D. Clifford et al., Computing in Cardiology 44 (2017).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, DataError

CACHE_VERSION = 1
LABELS_FILE = "REFERENCE.csv"
# The record lists of the shipped weights' splits, one name a line (see docs/af_lead1.md).
SPLIT_NAMES = ("training", "validation", "calibration", "regression", "selection")
FOLDS_FILE = "folds.csv"


def default_cache_dir() -> Path:
    return Path(os.environ.get("ECGEDGE_CACHE", Path.home() / ".cache" / "ecgedge")) / "af_lead1"


def splits_dir() -> Path:
    """Where the shipped weights' record lists are (models/weights/af_lead1.splits)."""
    from importlib import resources
    return Path(str(resources.files("ecgedge.models").joinpath("weights", "af_lead1.splits")))


@dataclass
class RecordSet:
    """Filtered records in µV at the contract's rate, concatenated (record i is signal[offsets[i]:offsets[i+1]])."""

    names: list[str]
    labels: np.ndarray          # class index per record
    signal: np.ndarray          # float32, all records one after the other
    offsets: np.ndarray         # int64 [n + 1]
    sampling_rate: int

    def __len__(self) -> int:
        return len(self.names)

    def record(self, i: int) -> np.ndarray:
        return self.signal[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, idx) -> "RecordSet":
        idx = np.asarray(idx, dtype=np.int64)
        parts = [self.record(int(i)) for i in idx]
        offsets = np.zeros(len(idx) + 1, np.int64)
        offsets[1:] = np.cumsum([len(p) for p in parts])
        sig = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return RecordSet([self.names[int(i)] for i in idx], self.labels[idx], sig, offsets, self.sampling_rate)

    def select(self, names) -> "RecordSet":
        """The records called `names`, in that order."""
        row = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in row]
        if missing:
            raise DataError(f"{len(missing)} records are not in this set, e.g. {missing[:3]}")
        return self.subset([row[n] for n in names])


# ----------------------------------------------------------------------------------------------- reading

def read_labels(data_dir: Path, classes) -> dict[str, int]:
    path = Path(data_dir) / LABELS_FILE
    if not path.is_file():
        raise DataError(f"{data_dir}: no {LABELS_FILE} (record,label with labels {'/'.join(classes)}); "
                        "point --data at the PhysioNet/CinC 2017 folder (e.g. ../shared/data/cinc2017)")
    out = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[0].strip():
                continue
            name, label = row[0].strip(), row[1].strip()
            if label not in classes:
                raise DataError(f"{path}: record {name} has label {label!r}; expected one of {list(classes)}")
            out[name] = classes.index(label)
    if not out:
        raise DataError(f"{path}: no labelled records")
    return out


def preprocess_record(path: Path, spec) -> np.ndarray:
    """One record as the model contract sees it: loaded, resampled, filtered causally (float32 µV)."""
    from ecgedge.signals import StreamingFilter, load_record

    rate = spec.input.sampling_rate_hz
    rec = load_record(path, sampling_rate=rate)
    return StreamingFilter(rate, spec.input.preprocessing).process(rec.signal_uv).astype(np.float32)


def _cache_key(data_dir: Path, spec, names: list[str]) -> str:
    ref = data_dir / LABELS_FILE
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "rate": spec.input.sampling_rate_hz,
                                   "pre": spec.input.preprocessing, "dir": str(data_dir.resolve()),
                                   "ref_size": ref.stat().st_size, "names": names}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _check_names(data_dir: Path, labels: dict, names: list[str]) -> None:
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise DataError(f"records {unknown[:5]} have no label in {data_dir / LABELS_FILE}")
    missing = [n for n in names if not (data_dir / f"{n}.hea").is_file()]
    if missing:
        raise DataError(f"{data_dir}: {len(missing)} labelled records have no WFDB header, e.g. {missing[:3]}")


def load_records(data_dir, spec, names: list[str] | None = None, cache_dir: Path | None = None,
                 use_cache: bool = True, progress: bool = True) -> RecordSet:
    """Every labelled record of `data_dir` (or only `names`), preprocessed to the contract, cached once."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data {str(data_dir)!r} is not a folder; expected the PhysioNet/CinC 2017 records "
                        "(e.g. ../shared/data/cinc2017 with REFERENCE.csv and A0xxxx.hea/.mat)")
    from ecgedge.models.af_lead1 import CLASSES

    labels = read_labels(data_dir, CLASSES)
    names = sorted(labels) if names is None else list(names)
    _check_names(data_dir, labels, names)
    cache = None
    if use_cache:
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        cache = cache_dir / f"cinc2017-{spec.input.sampling_rate_hz}hz-{len(names)}-{_cache_key(data_dir, spec, names)}.npz"
        if cache.is_file():
            z = np.load(cache, allow_pickle=False)
            return RecordSet([str(n) for n in z["names"]], z["labels"].astype(np.int64), z["signal"],
                             z["offsets"].astype(np.int64), int(z["sampling_rate"]))
    it = names
    if progress:
        from rich.progress import track
        it = track(names, description=f"reading {len(names)} records", transient=False)
    parts = [preprocess_record(data_dir / f"{n}.hea", spec) for n in it]
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    rs = RecordSet(list(names), np.array([labels[n] for n in names], np.int64), np.concatenate(parts),
                   offsets, spec.input.sampling_rate_hz)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, names=np.array(rs.names), labels=rs.labels, signal=rs.signal, offsets=rs.offsets,
                 sampling_rate=rs.sampling_rate)
        os.replace(tmp, cache)
    return rs


# ----------------------------------------------------------------------------------------------- splits

def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) record indices: the same fraction of every class in validation, fixed seed."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_fraction))
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) per record: each class dealt round-robin over the folds in a seeded order,
    so every fold holds about 1/k of every class."""
    if k < 2:
        raise ConfigError(f"folds {k}: expected >= 2")
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        fold[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % k
    return fold


def read_record_list(path: Path) -> list[str]:
    """Record names, one a line (blank lines and '#' comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such record list")
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines() if ln.split("#")[0].strip()]


def write_record_list(path: Path, names, header: str) -> None:
    Path(path).write_text("".join(f"# {line}\n" for line in header.splitlines()) + "".join(f"{n}\n" for n in names))


def write_folds(path: Path, names: list[str], fold: np.ndarray, header: str) -> None:
    Path(path).write_text("".join(f"# {line}\n" for line in header.splitlines()) + "record,fold\n"
                          + "".join(f"{n},{int(f)}\n" for n, f in zip(names, fold)))


def read_folds(path: Path) -> dict[str, int]:
    rows = [ln.split(",") for ln in read_record_list(path)]
    return {r[0].strip(): int(r[1]) for r in rows if len(r) == 2 and r[1].strip().isdigit()}


def published_split(folder: Path | None = None) -> dict[str, list[str]]:
    """The shipped weights' record lists: {"training", "validation", "calibration", "regression"}."""
    folder = Path(folder) if folder else splits_dir()
    if not folder.is_dir():
        raise DataError(f"{folder}: no published record lists (expected {', '.join(SPLIT_NAMES)} .txt)")
    return {name: read_record_list(folder / f"{name}.txt") for name in SPLIT_NAMES
            if (folder / f"{name}.txt").is_file()}


# ----------------------------------------------------------------------------------------------- windows and batches

def record_windows(x: np.ndarray, window: int, hop: int | None = None) -> np.ndarray:
    """A record's windows [n, window] (`ecgedge.signals.record_window_starts`: non-overlapping when hop is
    None, else every `hop` samples plus one ending at the record's end); a record shorter than a window
    is zero-padded at the end (the HIL bench's and the export's rule)."""
    from ecgedge.signals import record_window_starts

    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    return np.stack([x[s:s + window] for s in record_window_starts(len(x), window, hop)])


def random_crops(rs: RecordSet, idx: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """One random `window`-sample crop of each record in idx (zero-padded at the end when shorter);
    a record drawn k times in a row of idx gets k independent crops."""
    out = np.zeros((len(idx), window), np.float32)
    lengths = rs.lengths()
    for j, i in enumerate(idx):
        n = int(lengths[i])
        start = int(rng.integers(0, n - window + 1)) if n > window else 0
        seg = rs.signal[rs.offsets[i] + start: rs.offsets[i] + start + min(n, window)]
        out[j, :len(seg)] = seg
    return out


def balanced_weights(labels: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    """Sampling probability per record: class share proportional to count**(1 - power)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = counts[labels] ** -power
    return w / w.sum()


@dataclass
class Augment:
    """Per-crop augmentation (model units, mV)."""

    scale: tuple[float, float] = (0.6, 1.6)      # log-uniform amplitude factor (electrode contact, gain)
    flip_p: float = 0.25                         # polarity (hands swapped on the handheld)
    noise_p: float = 0.5
    noise_mv: float = 0.03                       # Gaussian noise sd, up to
    wander_p: float = 0.3
    wander_mv: float = 0.15                      # residual baseline wander amplitude, up to
    wander_hz: tuple[float, float] = (0.05, 0.5)

    def apply(self, x: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
        n, w = x.shape
        lo, hi = np.log(self.scale[0]), np.log(self.scale[1])
        gain = np.exp(rng.uniform(lo, hi, n)) * np.where(rng.random(n) < self.flip_p, -1.0, 1.0)
        x = x * gain[:, None].astype(np.float32)
        noisy = rng.random(n) < self.noise_p
        if noisy.any():
            sd = rng.uniform(0.0, self.noise_mv, int(noisy.sum()))[:, None]
            x[noisy] += (rng.standard_normal((int(noisy.sum()), w)) * sd).astype(np.float32)
        wander = rng.random(n) < self.wander_p
        if wander.any():
            k = int(wander.sum())
            t = np.arange(w) / rate
            f = rng.uniform(*self.wander_hz, k)[:, None]
            a = rng.uniform(0.0, self.wander_mv, k)[:, None]
            ph = rng.uniform(0, 2 * np.pi, k)[:, None]
            x[wander] += (a * np.sin(2 * np.pi * f * t[None, :] + ph)).astype(np.float32)
        return x

    def text(self) -> str:
        return (f"amplitude x log-uniform {self.scale}, polarity flip p={self.flip_p}, Gaussian noise "
                f"(p={self.noise_p}, sd up to {self.noise_mv} mV), baseline wander (p={self.wander_p}, up to "
                f"{self.wander_mv} mV, {self.wander_hz[0]}-{self.wander_hz[1]} Hz)")

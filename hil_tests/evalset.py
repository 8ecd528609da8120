"""Evaluation windows for the bench: held-out synthetic subjects, or recorded data with labels."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgedge.errors import DataError

# Training draws subjects from small seeds; the bench's subjects come from a disjoint seed range.
HELD_OUT_SEED_BASE = 1_000_003
WINDOWS_PER_SUBJECT = 4
_THRESHOLD_NAME = re.compile(r"^p_k_(gt|ge)_(\d+)_(\d+)$")
LABEL_FILES = ("labels.csv", "REFERENCE.csv")
RECORD_SUFFIXES = (".hea", ".edf", ".csv", ".npy")


@dataclass
class EvalSet:
    x_uv: np.ndarray                      # float32 [N, W] filtered microvolts (what the model contract sees)
    ids: list[str]                        # window names
    groups: np.ndarray                    # record / subject of each window
    k_true: np.ndarray | None = None      # serum K+ (synthetic windows)
    binary_labels: dict = field(default_factory=dict)    # output name -> bool [N]
    class_true: np.ndarray | None = None  # class index per window (multi-class models)
    classes: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.x_uv.shape[0])

    def take(self, n: int) -> "EvalSet":
        sl = slice(0, n)
        return EvalSet(self.x_uv[sl], self.ids[sl], self.groups[sl],
                       None if self.k_true is None else self.k_true[sl],
                       {k: v[sl] for k, v in self.binary_labels.items()},
                       None if self.class_true is None else self.class_true[sl], self.classes, self.source)


def potassium_label(output_name: str, k: np.ndarray) -> np.ndarray | None:
    """Binary truth for outputs named p_k_gt_5_5 (K+ > 5.5) or p_k_ge_6_0 (K+ >= 6.0); None otherwise."""
    m = _THRESHOLD_NAME.match(output_name)
    if not m:
        return None
    level = float(f"{m.group(2)}.{m.group(3)}")
    return (k > level) if m.group(1) == "gt" else (k >= level)


def class_names(outputs: list[dict]) -> list[str]:
    """Class names of a multi-class model from its output names (p_N / logit_N / N -> N)."""
    return [re.sub(r"^(p_|logit_|class_)", "", o["name"]) for o in outputs]


def synthetic_eval_set(manifest: dict, n_windows: int, seed: int = 0, progress: bool = False) -> EvalSet:
    from ecgedge.signals import make_windows

    inp = manifest["input"]
    rate = float(inp["sampling_rate_hz"])
    window_s = int(inp["window_samples"]) / rate
    n_subjects = max(1, math.ceil(n_windows / WINDOWS_PER_SUBJECT))
    d = make_windows(n_subjects, WINDOWS_PER_SUBJECT, seed=HELD_OUT_SEED_BASE + int(seed), sampling_rate=rate,
                     window_s=window_s, filters=inp.get("preprocessing"), progress=progress)
    x = np.asarray(d["x"], np.float32)[:n_windows]
    k = np.asarray(d["k"], np.float32)[:n_windows]
    subj = np.asarray(d["subject"])[:n_windows]
    if x.shape[1] != int(inp["window_samples"]):
        raise DataError(f"generated windows of {x.shape[1]} samples, the contract wants {inp['window_samples']}")
    labels = {}
    for o in manifest["outputs"]:
        lab = potassium_label(o["name"], k)
        if lab is not None:
            labels[o["name"]] = lab
    ids = [f"subject{int(s)}/w{i}" for i, s in enumerate(subj)]
    return EvalSet(x, ids, subj, k_true=k, binary_labels=labels,
                   source=f"synthetic held-out subjects (ecgedge.signals.make_windows seed "
                          f"{HELD_OUT_SEED_BASE + int(seed)}, {n_subjects} subjects)")


def labels_file_in(root: Path) -> Path:
    """The folder's labels file: labels.csv, else REFERENCE.csv."""
    cands = [root / n for n in LABEL_FILES if (root / n).is_file()]
    if not cands:
        raise DataError(f"no labels in {root}: expected one of {LABEL_FILES} (record,label)")
    return cands[0]


def read_labels(path: Path) -> dict[str, str]:
    """{record: label} of a `record,label` CSV (a header row is skipped)."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[0].strip() or row[0].strip().lower() in ("record", "name", "id"):
                continue
            out[row[0].strip()] = row[1].strip()
    return out


def _find_records(data_dir: Path, names: list[str] | None) -> dict[str, Path]:
    found = {}
    for p in sorted(data_dir.iterdir()):
        if p.suffix.lower() in RECORD_SUFFIXES and p.name not in LABEL_FILES:
            found.setdefault(p.stem, p)
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise DataError(f"records {missing[:5]} not found in {data_dir}")
        return {n: found[n] for n in names}
    return found


def data_eval_set(data_dir: str | Path, manifest: dict, n_windows: int | None, seed: int = 0,
                  labels_file: str | Path | None = None, records: list[str] | None = None,
                  progress=None) -> EvalSet:
    """Windows from recorded data: each record is resampled to the contract, filtered causally
    (the runtime's StreamingFilter), cut into windows (non-overlapping, or every `record_hop_samples` of
    the contract plus one ending at the record's end; a short record is zero-padded).
    Labels: a CSV `record,label` (labels.csv or REFERENCE.csv in DIR, or `labels_file`); a label is a class
    name for multi-class models, or serum K+ in mmol/L for potassium models. Records are taken in a
    seeded order until `n_windows` windows are reached (whole records only)."""
    from ecgedge.signals import StreamingFilter, load_record, record_window_starts

    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data {str(root)!r} is not a folder")
    if labels_file is None:
        labels_file = labels_file_in(root)
    labels = read_labels(Path(labels_file))
    recs = _find_records(root, records)
    names = [n for n in recs if n in labels]
    if not names:
        raise DataError(f"no record in {root} has a label in {labels_file}")
    if records is None:
        rng = np.random.default_rng(HELD_OUT_SEED_BASE + int(seed))
        names = [names[i] for i in rng.permutation(len(names))]
    inp = manifest["input"]
    rate = float(inp["sampling_rate_hz"])
    win = int(inp["window_samples"])
    outputs = manifest["outputs"]
    task = manifest.get("task")
    if not task:  # packages name the model; the zoo knows its task
        try:
            from ecgedge.models.specs import get_spec
            task = get_spec(manifest["model"]).task
        except Exception:
            task = None
    multiclass = all(o.get("kind") == "logit" for o in outputs) and task == "multiclass"
    # the label each output stands for in the records' label file: the contract's [labels] classes (kept in
    # the manifest as class_labels), else the output names
    classes = (manifest.get("class_labels") or class_names(outputs)) if multiclass else None
    xs, ids, groups, ks, cls = [], [], [], [], []
    for name in names:
        if n_windows is not None and len(xs) >= n_windows:
            break
        rec = load_record(recs[name], sampling_rate=rate)
        filt = StreamingFilter(rate, inp.get("preprocessing"))
        y = filt.process(np.asarray(rec.signal_uv, np.float64)).astype(np.float32)
        starts = record_window_starts(len(y), win, inp.get("record_hop_samples"))
        if len(y) < win:
            y = np.pad(y, (0, win - len(y)))
        label = labels[name]
        for j, start in enumerate(starts):
            xs.append(y[start:start + win])
            ids.append(f"{name}/w{j}")
            groups.append(name)
            if classes is not None:
                if label not in classes:
                    raise DataError(f"record {name}: label {label!r} is not one of the model's classes {classes}")
                cls.append(classes.index(label))
            else:
                try:
                    ks.append(float(label))
                except ValueError:
                    raise DataError(f"record {name}: label {label!r} is not a number (K+ in mmol/L)") from None
        if progress is not None:
            progress()
    x = np.stack(xs).astype(np.float32)
    es = EvalSet(x, ids, np.array(groups), classes=classes, source=f"records from {root} (labels {labels_file})")
    if classes is not None:
        es.class_true = np.array(cls, np.int64)
    else:
        es.k_true = np.array(ks, np.float32)
        for o in outputs:
            lab = potassium_label(o["name"], es.k_true)
            if lab is not None:
                es.binary_labels[o["name"]] = lab
    return es

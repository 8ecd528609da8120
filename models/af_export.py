"""Real windows for edge-export of af_lead1: from the records (`--data`), or the ones shipped with the weights.

A model trained on real records is calibrated and fine-tuned on real ECG, never on generated ECG:
- with `--data DIR` (the PhysioNet/CinC 2017 folder), `export_datasets` draws calibration, selection and
  fine-tuning windows from training records and validates on the model card's validation records;
- without it, `shipped_datasets` reads the calibration windows that ship next to the checkpoint
  (<checkpoint stem>.calibration.npz: int16 µV windows of training records, the data's licence and
  citation inside and in <stem>.calibration.README.md); `write_calibration_windows` makes that file
  when the model is trained. A real-data checkpoint with neither is refused.
Data: G. D. Clifford et al., Computing in Cardiology 44 (2017); PhysioNet (Goldberger et al., 2000).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ecgedge.errors import DataError

# Models whose export calibrates and validates on labelled real records (edge-export --data), or on the
# real windows shipped with their weights.
REAL_DATA_MODELS = ("af_lead1",)
CALIBRATION_SUFFIX = ".calibration.npz"
SHIPPED_WINDOWS = 500          # one window of each of this many training records
SHIPPED_SELECTION = 100        # ... of which the last ones judge the calibrators and the fine-tuning
EXPORT_CALIB_WINDOWS = 500     # edge-export --data's defaults (quantize.pipeline: --calib-windows, SELECT_WINDOWS),
EXPORT_SELECT_WINDOWS = 300    # for the published selection list
DATA_LICENCE = ("Open Data Commons Attribution License v1.0 (ODC-By 1.0), "
                "https://opendatacommons.org/licenses/by/1-0/")
PHYSIONET_CITATION = ("A. L. Goldberger, L. A. N. Amaral, L. Glass, J. M. Hausdorff, P. Ch. Ivanov, R. G. Mark, "
                      "J. E. Mietus, G. B. Moody, C.-K. Peng, H. E. Stanley, \"PhysioBank, PhysioToolkit, and "
                      "PhysioNet: Components of a New Research Resource for Complex Physiologic Signals\", "
                      "Circulation 101(23):e215-e220 (2000)")


def validation_records(card: dict | None = None) -> list[str]:
    """The validation record names of the shipped af_lead1 weights (its card), in the card's order."""
    if card is None or "validation_records" not in card:
        from ecgedge.models.specs import get_spec
        path = get_spec("af_lead1").weights_path()
        if path is None:
            raise DataError("af_lead1 has no shipped weights: no validation record list to evaluate on")
        card = json.loads(path.with_name("af_lead1.card.json").read_text())
    names = card.get("validation_records")
    if not names:
        raise DataError("the af_lead1 model card lists no validation_records")
    return list(names)


# ----------------------------------------------------------------------------------------------- --data

def export_record_split(train_names: list[str], seed: int, calib: int, select: int) -> dict[str, list[str]]:
    """Which training records the export draws from: a seeded order of `train_names`, the first `calib`
    for calibration (one window each), the next `select` for selection, the rest (with the calibration
    records) for fine-tuning."""
    rng = np.random.default_rng(seed + 4242)
    order = [train_names[i] for i in rng.permutation(len(train_names))]
    n_cal = min(calib, len(order))
    return {"order": order, "calibration": order[:n_cal], "selection": order[n_cal:n_cal + select]}


def selection_records(training: list[str], shipped: list[str], seed: int = 0) -> list[str]:
    """Training records whose windows choose the calibrator and judge the fine-tuning epochs: the last
    shipped windows' records (edge-export without --data) and those edge-export --data draws with its
    defaults (`export_record_split` of the training records, seed `seed`)."""
    n_sel = min(SHIPPED_SELECTION, len(shipped) // 5)
    drawn = export_record_split(sorted(training), seed, EXPORT_CALIB_WINDOWS, EXPORT_SELECT_WINDOWS)["selection"]
    return sorted(set(shipped[len(shipped) - n_sel:]) | set(drawn))


def _one_window_each(data_dir, spec, names, rng, progress) -> tuple[np.ndarray, np.ndarray]:
    from ecgedge.models.af_data import load_records, record_windows
    rs = load_records(data_dir, spec, names=names, use_cache=False, progress=progress)
    x = np.zeros((len(rs), spec.input.window_samples), np.float32)
    for i in range(len(rs)):
        w = record_windows(rs.record(i), spec.input.window_samples)
        x[i] = w[int(rng.integers(0, len(w)))]
    return x / float(spec.input.scale_uv), rs.labels


def _finetune_windows(data_dir, spec, split: dict, x_cal, y_cal, extra: int, seed: int, progress) -> dict:
    """The calibration windows plus `extra` windows at seeded positions of the other training records
    (selection records excluded), cycling over the records in seeded order, with labels."""
    from ecgedge.models.af_data import load_records, random_crops
    from ecgedge.models.af_lead1 import CLASSES
    sel_set = set(split["selection"])
    pool = [n for n in split["order"] if n not in sel_set]
    ft_rng = np.random.default_rng(seed + 4343)
    picks = np.resize(ft_rng.permutation(len(pool)), extra)      # every record before any twice
    needed = sorted({pool[i] for i in picks})                    # read only the records drawn
    ft_rs = load_records(data_dir, spec, names=needed, progress=progress)
    row = {n: i for i, n in enumerate(ft_rs.names)}
    idx = np.array([row[pool[i]] for i in picks])
    x_ft = random_crops(ft_rs, idx, spec.input.window_samples, ft_rng) / float(spec.input.scale_uv)
    cal_set = set(split["calibration"])
    return {"finetune": {"x": np.concatenate([x_cal, x_ft]).astype(np.float32),
                         "y": np.eye(len(CLASSES), dtype=np.float32)[np.concatenate([y_cal, ft_rs.labels[idx]])]},
            "finetune_records": list(split["calibration"]) + [n for n in needed if n not in cal_set],
            "finetune_source": f"the {len(x_cal)} calibration windows + {extra} windows at seeded positions of "
                               f"{len(np.unique(idx))} training records (seed {seed}; no validation or "
                               "selection record)"}


def _validation_windows(data_dir, spec, val_names: list[str], val_windows: int, progress) -> dict:
    """Whole validation records in order until >= `val_windows` windows (every record_hop_samples)."""
    from ecgedge.models.af_data import load_records, record_windows
    xs, groups, cls, used = [], [], [], []
    for start in range(0, len(val_names), 200):  # read in chunks: stop as soon as enough whole records are in
        rs = load_records(data_dir, spec, names=val_names[start:start + 200], use_cache=False, progress=progress)
        for i, name in enumerate(rs.names):
            if sum(len(x) for x in xs) >= val_windows:
                break
            w = record_windows(rs.record(i), spec.input.window_samples, spec.input.record_hop_samples)
            xs.append(w)
            groups.extend([name] * len(w))
            cls.extend([int(rs.labels[i])] * len(w))
            used.append(name)
        if sum(len(x) for x in xs) >= val_windows:
            break
    return {"x": np.concatenate(xs).astype(np.float32) / float(spec.input.scale_uv), "groups": np.array(groups),
            "class": np.array(cls, np.int64), "records": used}


def export_datasets(spec, data_dir, calib_windows: int, val_windows: int, seed: int = 0,
                    card: dict | None = None, select_windows: int = 300, progress: bool = False,
                    finetune_windows: int = 0) -> dict:
    """Real labelled windows for edge-export (model units, [N, W]):

    - "calibration": one window (seeded position) from each of `calib_windows` seeded training records —
      never a validation record — plus one-hot labels "y" (distillation may use them);
    - "selection": `select_windows` windows of other training records with labels (calibrator choice,
      distillation early stopping);
    - "validation": whole validation records of the card, in its order, until >= `val_windows` windows
      (windows every record_hop_samples of the contract), with "groups" (record of each window) and
      "class" (class index);
    - "finetune" (when `finetune_windows` exceeds the calibration windows): the calibration windows plus
      windows at seeded positions of the other training records (selection records excluded: they judge
      the fine-tuning epochs), cycling over the records in seeded order, with labels;
    and "truth": {output name: bool per validation window} (one vs rest), "record_metrics": raw logits ->
    record-level Challenge metrics. Sources are described for the report."""
    from ecgedge.models.af_data import read_labels
    from ecgedge.models.af_eval import aggregate_windows, record_metrics
    from ecgedge.models.af_lead1 import CLASSES

    data_dir = Path(data_dir)
    labels = read_labels(data_dir, CLASSES)
    val_names = [n for n in validation_records(card) if n in labels]
    if not val_names:
        raise DataError(f"{data_dir}: none of the model card's validation records is there")
    val_set = set(val_names)
    # the card's own training records when it lists them (a folder with more records draws the same ones)
    pool = sorted((card or {}).get("training_records") or labels)
    split = export_record_split([n for n in pool if n in labels and n not in val_set], seed, calib_windows,
                                select_windows)
    rng = np.random.default_rng(seed + 4242)
    rng.permutation(len(split["order"]))          # the draw export_record_split made: window positions follow it
    x_cal, y_cal = _one_window_each(data_dir, spec, split["calibration"], rng, progress)
    x_sel, y_sel = (_one_window_each(data_dir, spec, split["selection"], rng, progress) if split["selection"]
                    else (x_cal[:0], y_cal[:0]))
    val = _validation_windows(data_dir, spec, val_names, val_windows, progress)
    used = val["records"]
    eye = np.eye(len(CLASSES), dtype=np.float32)
    record_of = {n: i for i, n in enumerate(used)}
    owner = np.array([record_of[g] for g in val["groups"]])
    rec_labels = np.array([labels[n] for n in used], np.int64)

    def metrics(raw: np.ndarray) -> dict:
        raw = np.asarray(raw, np.float64)
        return record_metrics(aggregate_windows(raw, owner[:len(raw)], len(used)), rec_labels)

    out = {
        "calibration": {"x": x_cal, "y": eye[y_cal]},
        "calibration_records": list(split["calibration"]), "selection_records": list(split["selection"]),
        "calibration_source": f"{len(x_cal)} real training records of {data_dir} (one window each, seed {seed}; "
                              "no validation record)",
        "selection": {"x": x_sel, "y": eye[y_sel]},
        "selection_truth": {f"logit_{c}": y_sel == i for i, c in enumerate(CLASSES)},
        "validation": {"x": val["x"], "groups": val["groups"], "class": val["class"], "y": eye[val["class"]]},
        "validation_records": used,
        "validation_source": f"{len(used)} validation records of the af_lead1 card ({len(val['x'])} windows, hop "
                             f"{spec.input.record_hop_samples or spec.input.window_samples}) from {data_dir}; "
                             "PhysioNet/CinC 2017 (Clifford et al. 2017)",
        "truth": {f"logit_{c}": val["class"] == i for i, c in enumerate(CLASSES)},
        "record_metrics": metrics,
    }
    extra = finetune_windows - len(x_cal)
    if extra > 0:
        out.update(_finetune_windows(data_dir, spec, split, x_cal, y_cal, extra, seed, progress))
    return out


# ----------------------------------------------------------------------------------------------- shipped windows

def calibration_path(checkpoint: Path) -> Path:
    """The calibration windows that belong to a checkpoint: <stem>.calibration.npz beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + CALIBRATION_SUFFIX)


def pick_calibration_windows(rs, spec, n: int = SHIPPED_WINDOWS, seed: int = 0) -> dict:
    """One window (a seeded one of the record's non-overlapping windows) of each of `n` training records
    drawn in a seeded order (the class mix of the training records), as int16 µV."""
    from ecgedge.models.af_data import record_windows
    from ecgedge.signals import record_window_starts

    rng = np.random.default_rng(seed + 5151)
    pick = np.sort(rng.permutation(len(rs))[:min(n, len(rs))])
    pick = pick[rng.permutation(len(pick))]            # seeded order: selection windows are the last ones
    window = spec.input.window_samples
    xs, starts = [], []
    for i in pick:
        rec = rs.record(int(i))
        j = int(rng.integers(0, len(record_windows(rec, window))))
        xs.append(record_windows(rec, window)[j])
        starts.append(record_window_starts(max(len(rec), window), window)[j])
    x = np.clip(np.round(np.stack(xs)), -32768, 32767).astype(np.int16)
    return {"x_uv": x, "records": [rs.names[int(i)] for i in pick], "starts": np.array(starts, np.int64),
            "labels": rs.labels[pick].astype(np.int64)}


def write_calibration_windows(path: Path, picked: dict, spec, seed: int) -> Path:
    """<stem>.calibration.npz (compressed) and <stem>.calibration.README.md with the data's licence."""
    from ecgedge.models.af_lead1 import CLASSES, DATA_CITATION

    path = Path(path)
    meta = {"contract": {"sampling_rate_hz": spec.input.sampling_rate_hz, "window_samples": spec.input.window_samples,
                         "preprocessing": dict(spec.input.preprocessing), "units": "uV (int16, filtered)"},
            "classes": list(CLASSES), "selection_windows": min(SHIPPED_SELECTION, len(picked["records"]) // 5),
            "seed": seed, "licence": DATA_LICENCE, "citations": [DATA_CITATION, PHYSIONET_CITATION],
            "source": "PhysioNet/CinC Challenge 2017 training set (challenge-2017 1.0.0, training2017/), training "
                      "records of the checkpoint's split only"}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, x_uv=picked["x_uv"], records=np.array(picked["records"]), starts=picked["starts"],
                        labels=picked["labels"], meta=np.array(json.dumps(meta)))
    tmp.replace(path)
    path.with_name(path.name.removesuffix(".npz") + ".README.md").write_text(_readme(path.name, picked, meta))
    return path


def _readme(name: str, picked: dict, meta: dict) -> str:
    counts = np.bincount(picked["labels"], minlength=len(meta["classes"]))
    mix = ", ".join(f"{c} {int(k)}" for c, k in zip(meta["classes"], counts))
    return f"""# {name}: real calibration windows of af_lead1

{len(picked['records'])} windows of {meta['contract']['window_samples']} samples ({meta['contract']['sampling_rate_hz']} Hz,
filtered causally as the model contract says: {meta['contract']['preprocessing']}), int16 µV, one window of each
of {len(picked['records'])} training records of the checkpoint's split (classes: {mix}; seed {meta['seed']}).
`edge-export af_lead1` without `--data` calibrates and fine-tunes on the first
{len(picked['records']) - meta['selection_windows']} and judges calibrators and fine-tuning epochs on the last
{meta['selection_windows']}. No validation record is among them. Keys: x_uv [N, W] int16, records (names),
starts (first sample of each window in the filtered record), labels (class index), meta (JSON).

Source: {meta['source']}.
Licence: {meta['licence']}. Attribution:
- {meta['citations'][0]}
- {meta['citations'][1]}
"""


def shipped_datasets(spec, checkpoint: Path | None) -> dict:
    """The export's windows from <checkpoint>.calibration.npz: "calibration" (and the same windows as
    "finetune"), "selection" with labels; DataError (one line) when the checkpoint has none."""
    from ecgedge.models.af_lead1 import CLASSES

    path = calibration_path(checkpoint) if checkpoint else None
    if path is None or not path.is_file():
        raise DataError(f"{spec.name} is trained on real records and ships no calibration windows "
                        f"({path.name if path else 'no checkpoint'}): give --data with the PhysioNet/CinC 2017 "
                        "folder (e.g. --data ../shared/data/cinc2017)")
    z = np.load(path, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    if int(meta["contract"]["window_samples"]) != spec.input.window_samples or z["x_uv"].ndim != 2:
        raise DataError(f"{path}: windows of {z['x_uv'].shape}, the contract wants {spec.input.window_samples} samples")
    x = z["x_uv"].astype(np.float32) / float(spec.input.scale_uv)
    eye = np.eye(len(CLASSES), dtype=np.float32)
    y = eye[z["labels"]]
    n_sel = int(meta["selection_windows"])
    cal = {"x": x[:len(x) - n_sel], "y": y[:len(x) - n_sel]}
    sel = {"x": x[len(x) - n_sel:], "y": y[len(x) - n_sel:]}
    sel_labels = z["labels"][len(x) - n_sel:]
    source = f"{len(x)} real windows shipped with the weights ({path.name}: {len(x) - n_sel} calibration, {n_sel} selection)"
    return {"calibration": cal, "finetune": cal, "selection": sel,
            "selection_truth": {f"logit_{c}": sel_labels == i for i, c in enumerate(CLASSES)},
            "calibration_records": [str(r) for r in z["records"][:len(x) - n_sel]],
            "selection_records": [str(r) for r in z["records"][len(x) - n_sel:]],
            "calibration_source": source, "finetune_source": f"the same {len(x) - n_sel} shipped calibration windows",
            # no records given: the INT8 model is checked against float on all shipped windows (windows of
            # training records, most of them calibrated on: agreement only, not an accuracy figure)
            "validation": {"x": x, "y": y, "class": z["labels"].astype(np.int64)},
            "truth": {f"logit_{c}": z["labels"] == i for i, c in enumerate(CLASSES)},
            "validation_source": f"the {len(x)} shipped windows of training records ({path.name}): agreement "
                                 "with the float model only; no accuracy is claimed on them (give --data for the "
                                 "card's validation records)",
            "licence": meta["licence"]}

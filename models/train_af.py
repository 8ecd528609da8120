"""Train af_lead1 on real single-lead ECG: the PhysioNet/CinC Challenge 2017 records.

    edge-train af_lead1 --data ../shared/data/cinc2017

Data: G. D. Clifford et al., Computing in Cardiology 44 (2017) — see ecgedge.models.af_lead1.DATA_CITATION.
Records are read once with the product's loader (`ecgedge.signals.load_record`, resampled to the
contract's rate), filtered causally from the record start with the runtime's StreamingFilter (exactly
what the HIL bench and the runtime feed the model), and cached as one .npz under ~/.cache/ecgedge (never
in the repository). Split by record, stratified by class, fixed seed; the validation record names go
into the model card so every later stage evaluates on exactly those.

Training: random 10 s crops, class-balanced record sampling, augmentation (amplitude scale, polarity,
Gaussian noise, baseline wander), AdamW with warm-up and cosine decay, an exponential moving average of
the weights (that averaged model is what ships), CPU only. Evaluation: records cut into non-overlapping
windows, softmax of the mean window log-softmax per record (as `ecgedge.contract.metrics.classification_metrics`
aggregates).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError, DataError

CACHE_VERSION = 1
# Models whose export calibrates and validates on labelled real records (edge-export --data).
REAL_DATA_MODELS = ("af_lead1",)
LABELS_FILE = "REFERENCE.csv"


def default_cache_dir() -> Path:
    return Path(os.environ.get("ECGEDGE_CACHE", Path.home() / ".cache" / "ecgedge")) / "af_lead1"


# ----------------------------------------------------------------------------------------------- data

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


def read_labels(data_dir: Path, classes) -> dict[str, int]:
    path = data_dir / LABELS_FILE
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


def load_records(data_dir, spec, names: list[str] | None = None, cache_dir: Path | None = None,
                 use_cache: bool = True, progress: bool = True) -> RecordSet:
    """Every labelled record of `data_dir` (or only `names`), preprocessed to the contract, cached once."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data {str(data_dir)!r} is not a folder; expected the PhysioNet/CinC 2017 records "
                        "(e.g. ../shared/data/cinc2017 with REFERENCE.csv and A0xxxx.hea/.mat)")
    from ecgedge.models.af_lead1 import CLASSES

    labels = read_labels(data_dir, CLASSES)
    if names is None:
        names = sorted(labels)
    else:
        unknown = [n for n in names if n not in labels]
        if unknown:
            raise DataError(f"records {unknown[:5]} have no label in {data_dir / LABELS_FILE}")
    missing = [n for n in names if not (data_dir / f"{n}.hea").is_file()]
    if missing:
        raise DataError(f"{data_dir}: {len(missing)} labelled records have no WFDB header, e.g. {missing[:3]}")
    cache = None
    if use_cache:
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        cache = cache_dir / f"cinc2017-{spec.input.sampling_rate_hz}hz-{len(names)}-{_cache_key(data_dir, spec, names)}.npz"
        if cache.is_file():
            z = np.load(cache, allow_pickle=False)
            return RecordSet([str(n) for n in z["names"]], z["labels"].astype(np.int64), z["signal"],
                             z["offsets"].astype(np.int64), int(z["sampling_rate"]))
    parts = []
    it = names
    if progress:
        from rich.progress import track
        it = track(names, description=f"reading {len(names)} records", transient=False)
    for n in it:
        parts.append(preprocess_record(data_dir / f"{n}.hea", spec))
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


def record_windows(x: np.ndarray, window: int, hop: int | None = None) -> np.ndarray:
    """A record's windows [n, window] (`ecgedge.signals.record_window_starts`: non-overlapping when hop is
    None, else every `hop` samples plus one ending at the record's end); a record shorter than a window
    is zero-padded at the end (the HIL bench's and the export's rule)."""
    from ecgedge.signals import record_window_starts

    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    return np.stack([x[s:s + window] for s in record_window_starts(len(x), window, hop)])


# ----------------------------------------------------------------------------------------------- batches

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


def random_crops(rs: RecordSet, idx: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """One random `window`-sample crop of each record in idx (zero-padded at the end when shorter)."""
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


# ----------------------------------------------------------------------------------------------- evaluation

def aggregate_windows(window_logits: np.ndarray, owner: np.ndarray, n_records: int) -> np.ndarray:
    """Record-level class probabilities from window logits: the softmax of the mean window log-softmax
    (a normalised geometric mean of the window probabilities, i.e. the windows' evidence multiplied;
    `RECORD_AGGREGATION`). On the validation records it scored higher than the plain mean of
    probabilities (0.825 vs 0.812 f1_challenge with the session-1 weights)."""
    z = np.asarray(window_logits, np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    owner = np.asarray(owner)
    mean = np.zeros((n_records, z.shape[1]))
    np.add.at(mean, owner, logp)
    mean /= np.maximum(1, np.bincount(owner, minlength=n_records))[:, None]
    e = np.exp(mean - mean.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def predict_records(model, rs: RecordSet, spec, batch_size: int = 256) -> np.ndarray:
    """Record-level class probabilities [n_records, n_classes] over the record's windows (the contract's
    record_hop_samples; `aggregate_windows`)."""
    import torch

    window, hop = spec.input.window_samples, spec.input.record_hop_samples
    scale = float(spec.input.scale_uv)
    wins, owner = [], []
    for i in range(len(rs)):
        w = record_windows(rs.record(i), window, hop)
        wins.append(w)
        owner.extend([i] * len(w))
    x = np.concatenate(wins).astype(np.float32) / scale
    model.eval()
    logits = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            logits.append(model(torch.from_numpy(x[s:s + batch_size, None, :])).double().numpy())
    return aggregate_windows(np.concatenate(logits), np.asarray(owner), len(rs))


def record_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Challenge metrics at record level: F1 per class, f1_challenge (mean F1 of N, A, O), AUROC A vs rest."""
    from ecgedge.contract.metrics import auroc, challenge_f1, confusion, f1_per_class
    from ecgedge.models.af_lead1 import CLASSES

    pred = probs.argmax(1)
    f1 = f1_per_class(labels, pred, CLASSES)
    return {"f1_challenge": challenge_f1(f1), "f1_N": f1["N"], "f1_A": f1["A"],
            "f1_O": f1["O"], "f1_noise": f1["~"], "accuracy": float(np.mean(pred == labels)),
            "auroc_A": auroc(labels == CLASSES.index("A"), probs[:, CLASSES.index("A")]),
            "confusion": confusion(labels, pred, len(CLASSES)), "classes": list(CLASSES),
            "records": int(len(labels))}


# ----------------------------------------------------------------------------------------------- decision offsets

OFFSET_GRID = np.round(np.arange(-1.0, 1.0001, 0.1), 2)


def tune_class_offsets(probs: np.ndarray, labels: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class log-probability offsets (N fixed at 0) that maximise the record-level f1_challenge,
    found by coordinate search on the given (training) records. Added to the dense bias they shift the
    window logits; the record decision (argmax of the mean softmax) moves with them approximately."""
    logp = np.log(np.clip(probs, 1e-9, 1.0))
    offsets = np.zeros(probs.shape[1])

    def score(off):
        return record_metrics(np.exp(logp + off), labels)["f1_challenge"]

    best = score(offsets)
    for _ in range(rounds):
        for c in range(1, probs.shape[1]):
            for v in OFFSET_GRID:
                trial = offsets.copy()
                trial[c] = v
                f = score(trial)
                if f > best + 1e-9:
                    best, offsets = f, trial
    return offsets


def apply_class_offsets(model, offsets: np.ndarray) -> None:
    """Fold logit offsets into the dense head's bias (the exported graph carries them)."""
    import torch
    with torch.no_grad():
        model.dense.bias += torch.as_tensor(offsets, dtype=model.dense.bias.dtype)


# ----------------------------------------------------------------------------------------------- training

def _lr_at(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, p)))


def train_af(data: str | Path, preset: str | None = None, epochs: int = 30, seed: int = 0, out: str | Path = "runs/af_lead1",
             threads: int = 2, batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.05,
             val_fraction: float = 0.2, ema_decay: float = 0.995, label_smoothing: float = 0.05,
             balance_power: float = 0.5, max_records: int | None = None, crops_per_record: float = 1.0,
             cache_dir: Path | None = None, progress: bool = True, log=print, eval_every: int = 5,
             regression_records: int = 100, max_minutes: float | None = None, init: str | Path | None = None,
             warmup_epochs: float = 1.0, tune_offsets: bool = False) -> dict:
    """Train af_lead1 on the CinC 2017 records in `data`; writes <out>/af_lead1.{pt,card.json,card.md,confusion.png}."""
    import torch
    from torch import nn
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from ecgedge.models.af_lead1 import CLASSES
    from ecgedge.models.specs import get_spec
    from ecgedge.models.zoo import build_model, count_macs, count_params

    t0 = time.time()
    cpu0 = time.process_time()
    spec = get_spec("af_lead1")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    names = None
    if max_records is not None:  # a small stratified subset (smoke runs), chosen before anything is read
        labels = read_labels(Path(data), CLASSES)
        all_names = sorted(labels)
        _, keep = stratified_split(np.array([labels[n] for n in all_names]),
                                   min(0.999, max_records / len(all_names)), seed + 1)
        names = [all_names[i] for i in keep[:max_records]]
    rs = load_records(data, spec, names=names, cache_dir=cache_dir, use_cache=names is None, progress=progress)
    train_idx, val_idx = stratified_split(rs.labels, val_fraction, seed)
    train_rs, val_rs = rs.subset(train_idx), rs.subset(val_idx)
    log(f"{len(rs)} records: {len(train_rs)} train / {len(val_rs)} validation (stratified, seed {seed}); "
        f"loaded in {time.time() - t0:.0f} s")

    model = build_model("af_lead1", preset)
    preset = model.ecgedge_preset
    init_card = None
    if init is not None:  # continue from a checkpoint (a warm restart of the schedule)
        from ecgedge.models.zoo import load_model
        start, _, meta = load_model("af_lead1", init)
        if start.ecgedge_arch != model.ecgedge_arch:
            model = start
        model.load_state_dict(start.state_dict())
        init_card = {k: meta["card"].get(k) for k in ("f1_challenge", "trained_minutes", "cpu_minutes", "training")}
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    window = spec.input.window_samples
    scale = float(spec.input.scale_uv)
    rate = float(spec.input.sampling_rate_hz)
    aug = Augment()
    probs_w = balanced_weights(train_rs.labels, len(CLASSES), balance_power)
    per_epoch = max(1, int(round(len(train_rs) * crops_per_record)))
    steps_per_epoch = math.ceil(per_epoch / batch_size)
    total = epochs * steps_per_epoch
    warmup = max(1, int(steps_per_epoch * warmup_epochs))
    history = []

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    bar = Progress(TextColumn("[bold]af_lead1[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress)
    step = 0
    with bar:
        task = bar.add_task("training", total=total)
        t_train = time.time()
        epoch = 0
        while epoch < epochs:
            model.train()
            idx = rng.choice(len(train_rs), size=per_epoch, replace=True, p=probs_w)
            run_loss = 0.0
            for b in range(steps_per_epoch):
                sel = idx[b * batch_size:(b + 1) * batch_size]
                x = aug.apply(random_crops(train_rs, sel, window, rng) / scale, rng, rate)
                y = torch.from_numpy(train_rs.labels[sel])
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total, warmup, lr, lr * 0.01)
                loss = loss_fn(model(torch.from_numpy(x[:, None, :])), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update_parameters(model)
                run_loss += loss.item()
                step += 1
                bar.update(task, advance=1, description=f"epoch {epoch + 1}/{epochs} loss {run_loss / (b + 1):.3f}")
                if not progress and step % 25 == 0:
                    log(f"step {step}/{total} (epoch {epoch + 1}/{epochs}), loss {run_loss / (b + 1):.3f}, "
                        f"{time.time() - t0:.0f} s")
            row = {"epoch": epoch + 1, "loss": run_loss / steps_per_epoch, "seconds": round(time.time() - t0, 1)}
            if epoch == 0 and max_minutes is not None:
                # Fit the run into the time budget: the warm-up epoch measured the speed, and the cosine
                # schedule has not begun, so shortening it here changes no step taken so far.
                epoch_s = time.time() - t_train
                fit = int((max_minutes * 60 - (t_train - t0)) * 0.9 // epoch_s)
                if fit < epochs:
                    epochs = max(2, fit)
                    total = epochs * steps_per_epoch
                    bar.update(task, total=total)
                    log(f"time budget {max_minutes} min: {epoch_s:.0f} s per epoch -> {epochs} epochs")
            if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
                m = record_metrics(predict_records(ema.module, val_rs, spec), val_rs.labels)
                row.update({k: m[k] for k in ("f1_challenge", "f1_N", "f1_A", "f1_O", "f1_noise", "auroc_A")})
                log(f"epoch {epoch + 1}: loss {row['loss']:.4f}, validation (EMA) f1_challenge {m['f1_challenge']:.4f} "
                    f"(N {m['f1_N']:.3f} A {m['f1_A']:.3f} O {m['f1_O']:.3f} ~ {m['f1_noise']:.3f}), "
                    f"AUROC A {m['auroc_A']:.4f}, {row['seconds']:.0f} s")
            history.append(row)
            epoch += 1

    final = ema.module.eval()
    offsets = None
    if tune_offsets:  # on training records only: validation stays untouched
        offsets = tune_class_offsets(predict_records(final, train_rs, spec), train_rs.labels)
        apply_class_offsets(final, offsets)
        log(f"class logit offsets (tuned on training records): {dict(zip(CLASSES, np.round(offsets, 2).tolist()))}")
    probs = predict_records(final, val_rs, spec)
    metrics = record_metrics(probs, val_rs.labels)
    trained_s = time.time() - t0
    # Fixed regression subset: the first records of a seeded permutation of the validation set.
    reg_order = np.random.default_rng(seed + 7).permutation(len(val_rs))[:regression_records]
    reg_names = sorted(val_rs.names[i] for i in reg_order)
    reg_idx = [val_rs.names.index(n) for n in reg_names]
    reg_metrics = record_metrics(probs[reg_idx], val_rs.labels[reg_idx])
    arch = dict(final.ecgedge_arch) if hasattr(final, "ecgedge_arch") else dict(model.ecgedge_arch)
    card = {
        "model": "af_lead1", "demo": False, "label": "research", "dataset": _dataset(),
        "notice": _notice(), "data_citation": _citation(),
        "data": {"folder": str(Path(data)), "records": len(rs), "train_records": len(train_rs),
                 "validation_records": len(val_rs), "split": f"by record, stratified by class, "
                 f"{1 - val_fraction:.0%}/{val_fraction:.0%}", "class_counts_train":
                 {c: int(np.sum(train_rs.labels == i)) for i, c in enumerate(CLASSES)},
                 "class_counts_validation": {c: int(np.sum(val_rs.labels == i)) for i, c in enumerate(CLASSES)}},
        "split_seed": seed, "seed": seed, "validation_records": list(val_rs.names),
        "input": {"sampling_rate_hz": spec.input.sampling_rate_hz, "window_samples": window,
                  "scale_uv": scale, "preprocessing": dict(spec.input.preprocessing),
                  "record_aggregation": _aggregation()},
        "classes": list(CLASSES), "preset": preset, "arch": arch,
        "params": count_params(final), "macs": count_macs(final, window),
        **{k: metrics[k] for k in ("f1_challenge", "f1_N", "f1_A", "f1_O", "f1_noise", "accuracy", "auroc_A")},
        "confusion": metrics["confusion"], "records": metrics["records"],
        "regression": {"records": reg_names, "f1_challenge": reg_metrics["f1_challenge"],
                       "min_f1_challenge": round(reg_metrics["f1_challenge"] - 0.03, 4),
                       "rule": "the shipped model's record-level f1_challenge on these records must not fall "
                               "below min_f1_challenge (measured minus 0.03)"},
        "training": {"optimizer": "AdamW", "lr": lr, "weight_decay": weight_decay,
                     "schedule": "linear warm-up 1 epoch, cosine to 1% of peak", "batch_size": batch_size,
                     "epochs": epochs, "steps": total, "max_minutes": max_minutes, "loss": f"cross-entropy, label smoothing {label_smoothing}",
                     "sampling": f"records drawn with class share proportional to count**{1 - balance_power:g}",
                     "crops": f"one random {window}-sample crop per draw, {per_epoch} draws per epoch",
                     "augmentation": _aug_text(aug), "weight_averaging": f"EMA of weights and BN statistics, "
                     f"decay {ema_decay} per step (the averaged model ships)", "threads": threads,
                     "torch": str(torch.__version__)},
        "class_offsets": None if offsets is None else {"values": dict(zip(CLASSES, offsets.tolist())),
                                                        "tuned_on": "training records (coordinate search, "
                                                                    "record-level f1_challenge), folded into dense.bias"},
        "trained_seconds": round(trained_s, 1), "trained_minutes": round(trained_s / 60, 1),
        "cpu_minutes": round((time.process_time() - cpu0) / 60, 1), "init": None if init is None else
        {"checkpoint": str(init), "card": init_card},
        "history": history,
    }
    write_outputs(out, spec, final, card)
    return card


def _notice() -> str:
    from ecgedge.models.af_lead1 import NOTICE
    return NOTICE


def _dataset() -> str:
    from ecgedge.models.af_lead1 import DATASET
    return DATASET


def _citation() -> str:
    from ecgedge.models.af_lead1 import DATA_CITATION
    return DATA_CITATION


def _aggregation() -> str:
    from ecgedge.models.af_lead1 import RECORD_AGGREGATION
    return RECORD_AGGREGATION


def _rule_note() -> str:
    from ecgedge.models.af_lead1 import RECORD_RULE_NOTE
    return RECORD_RULE_NOTE


def _aug_text(a: Augment) -> str:
    return (f"amplitude x log-uniform {a.scale}, polarity flip p={a.flip_p}, Gaussian noise (p={a.noise_p}, "
            f"sd up to {a.noise_mv} mV), baseline wander (p={a.wander_p}, up to {a.wander_mv} mV, "
            f"{a.wander_hz[0]}-{a.wander_hz[1]} Hz)")


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, str):
        return str(obj)  # plain str: torch.__version__ is a subclass that weights-only loading refuses
    return obj


def write_outputs(out, spec, model, card: dict) -> Path:
    """<out>/af_lead1.pt (float checkpoint in ecgedge's layout), .card.json, .card.md, .confusion.png."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    card = _json_safe(card)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = {"model": spec.name, "preset": card["preset"], "arch": card["arch"], "state_dict": state,
            "demo": False, "card": {k: v for k, v in card.items() if k != "history"}}
    tmp = out / f"{spec.name}.pt.tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, out / f"{spec.name}.pt")
    (out / f"{spec.name}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    plot_confusion(out / f"{spec.name}.confusion.png", card)
    (out / f"{spec.name}.card.md").write_text(card_markdown(card, f"{spec.name}.confusion.png"))
    return out / f"{spec.name}.pt"


def plot_confusion(path: Path, card: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(card["confusion"])
    classes = card["classes"]
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    rows = conf / np.maximum(1, conf.sum(1, keepdims=True))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{conf[i, j]}\n{rows[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted (record level)")
    ax.set_ylabel("reference label")
    ax.set_title(f"af_lead1, {card['records']} validation records\nf1_challenge {card['f1_challenge']:.3f} "
                 "(PhysioNet/CinC 2017)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _groups_text(arch: dict) -> str:
    if arch["groups_width"] >= max(arch["filter_list"]):
        return "ungrouped convolutions"
    return f"grouped convolutions of width {arch['groups_width']}"


def card_markdown(card: dict, confusion_png: str) -> str:
    d, t, a = card["data"], card["training"], card["arch"]
    rows = "\n".join(f"| {c} | " + " | ".join(str(v) for v in r) + " |"
                     for c, r in zip(card["classes"], card["confusion"]))
    return f"""# af_lead1 model card

> **{card['notice']}.**

Rhythm classes of the PhysioNet/CinC Challenge 2017 (N normal, A atrial fibrillation, O other rhythm,
~ too noisy) from one handheld lead-I-like ECG. Data: {card['data_citation']}.

## Validation (record level, {card['records']} records never trained on)

| metric | value |
|---|---|
| f1_challenge (mean F1 of N, A, O) | {card['f1_challenge']:.4f} |
| F1 N / A / O / ~ | {card['f1_N']:.4f} / {card['f1_A']:.4f} / {card['f1_O']:.4f} / {card['f1_noise']:.4f} |
| AUROC, A vs rest | {card['auroc_A']:.4f} |
| accuracy | {card['accuracy']:.4f} |

Confusion matrix (rows: reference, columns: predicted; {' / '.join(card['classes'])}):

| | {' | '.join(card['classes'])} |
|---|{'---|' * len(card['classes'])}
{rows}

![confusion matrix]({confusion_png})

These figures are on our own validation split of the Challenge's public training records, not on the
Challenge's hidden test set; they are not comparable to clinical performance. {_rule_note()}

## Data and split

{d['records']} records from `{d['folder']}`: {d['train_records']} train / {d['validation_records']} validation,
{d['split']}, seed {card['split_seed']}. Train classes {d['class_counts_train']}; validation
{d['class_counts_validation']}. The validation record names are in `af_lead1.card.json`
("validation_records"); a fixed subset of {len(card['regression']['records'])} of them is the CI regression check
(f1_challenge {card['regression']['f1_challenge']:.4f} when trained, floor {card['regression']['min_f1_challenge']}).

## Input contract

{card['input']['sampling_rate_hz']} Hz, windows of {card['input']['window_samples']} samples, filters
{card['input']['preprocessing']} applied causally from the start of the record, µV / {card['input']['scale_uv']:g}
(mV). A record's class: {card['input']['record_aggregation']}.

## Model and training

Net1D (ECGFounder layout), preset `{card['preset']}`: filters {a['filter_list']}, blocks {a['m_blocks_list']},
kernel {a['kernel_size']}, {_groups_text(a)}; {card['params']:,} parameters, {card['macs']:,} MACs
per window. {t['optimizer']} (lr {t['lr']}, weight decay {t['weight_decay']}, {t['schedule']}), batch
{t['batch_size']}, {t['epochs']} epochs ({t['steps']} steps); {t['loss']}; {t['sampling']}; {t['crops']};
augmentation: {t['augmentation']}; {t['weight_averaging']}. {card['trained_minutes']} minutes on
{t['threads']} CPU thread(s), torch {t['torch']}.
"""


# ----------------------------------------------------------------------------------------------- export data

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
    from ecgedge.models.af_lead1 import CLASSES

    data_dir = Path(data_dir)
    window = int(spec.input.window_samples)
    scale = float(spec.input.scale_uv)
    labels = read_labels(data_dir, CLASSES)
    val_names = [n for n in validation_records(card) if n in labels]
    if not val_names:
        raise DataError(f"{data_dir}: none of the model card's validation records is there")
    val_set = set(val_names)
    train_names = [n for n in sorted(labels) if n not in val_set]
    rng = np.random.default_rng(seed + 4242)
    order = [train_names[i] for i in rng.permutation(len(train_names))]
    n_cal = min(calib_windows, len(order))
    cal_names, sel_names = order[:n_cal], order[n_cal:n_cal + select_windows]

    def one_window_each(names):
        rs = load_records(data_dir, spec, names=names, use_cache=False, progress=progress)
        x = np.zeros((len(rs), window), np.float32)
        for i in range(len(rs)):
            w = record_windows(rs.record(i), window)
            x[i] = w[int(rng.integers(0, len(w)))]
        return x / scale, rs.labels

    x_cal, y_cal = one_window_each(cal_names)
    x_sel, y_sel = one_window_each(sel_names) if sel_names else (x_cal[:0], y_cal[:0])
    finetune = None
    extra = finetune_windows - len(x_cal)
    if extra > 0:
        sel_set = set(sel_names)
        pool = [n for n in order if n not in sel_set]
        ft_rng = np.random.default_rng(seed + 4343)
        picks = np.resize(ft_rng.permutation(len(pool)), extra)      # every record before any twice
        needed = sorted({pool[i] for i in picks})                    # read only the records drawn
        ft_rs = load_records(data_dir, spec, names=needed, progress=progress)
        row = {n: i for i, n in enumerate(ft_rs.names)}
        idx = np.array([row[pool[i]] for i in picks])
        x_ft = random_crops(ft_rs, idx, window, ft_rng) / scale
        finetune = {"x": np.concatenate([x_cal, x_ft]).astype(np.float32),
                    "y": np.eye(len(CLASSES), dtype=np.float32)[np.concatenate([y_cal, ft_rs.labels[idx]])]}
    xs, groups, cls, used = [], [], [], []
    # read in chunks: stop as soon as enough whole records are in
    for start in range(0, len(val_names), 200):
        chunk = val_names[start:start + 200]
        rs = load_records(data_dir, spec, names=chunk, use_cache=False, progress=progress)
        for i, name in enumerate(rs.names):
            if sum(len(x) for x in xs) >= val_windows:
                break
            w = record_windows(rs.record(i), window, spec.input.record_hop_samples)
            xs.append(w)
            groups.extend([name] * len(w))
            cls.extend([int(rs.labels[i])] * len(w))
            used.append(name)
        if sum(len(x) for x in xs) >= val_windows:
            break
    x_val = np.concatenate(xs).astype(np.float32) / scale
    groups_a, cls_a = np.array(groups), np.array(cls, np.int64)
    eye = np.eye(len(CLASSES), dtype=np.float32)
    record_of = {n: i for i, n in enumerate(used)}
    owner = np.array([record_of[g] for g in groups])
    rec_labels = np.array([labels[n] for n in used], np.int64)

    def metrics(raw: np.ndarray) -> dict:
        raw = np.asarray(raw, np.float64)
        return record_metrics(aggregate_windows(raw, owner[:len(raw)], len(used)), rec_labels)

    out = {
        "calibration": {"x": x_cal, "y": eye[y_cal]},
        "calibration_records": list(cal_names), "selection_records": list(sel_names),
        "calibration_source": f"{len(x_cal)} real training records of {data_dir} (one window each, seed {seed}; "
                              "no validation record)",
        "selection": {"x": x_sel, "y": eye[y_sel]},
        "selection_truth": {f"logit_{c}": y_sel == i for i, c in enumerate(CLASSES)},
        "validation": {"x": x_val, "groups": groups_a, "class": cls_a, "y": eye[cls_a]},
        "validation_records": used,
        "validation_source": f"{len(used)} validation records of the af_lead1 card ({len(x_val)} windows, hop "
                             f"{spec.input.record_hop_samples or window}) from {data_dir}; PhysioNet/CinC 2017 "
                             "(Clifford et al. 2017)",
        "truth": {f"logit_{c}": cls_a == i for i, c in enumerate(CLASSES)},
        "record_metrics": metrics,
    }
    if finetune is not None:
        out["finetune"] = finetune
        cal_set = set(cal_names)
        out["finetune_records"] = list(cal_names) + [n for n in needed if n not in cal_set]
        out["finetune_source"] = (f"the {len(x_cal)} calibration windows + {extra} windows at seeded positions of "
                                  f"{len(np.unique(idx))} training records (seed {seed}; no validation or "
                                  "selection record)")
    return out


# ----------------------------------------------------------------------------------------------- CLI

DEFAULT_EPOCHS = 60


def run_cli(ns, console) -> int:
    """`edge-train af_lead1 --data DIR [--epochs E] [--seed S] [--out DIR] [--threads T] [--max-minutes M]`,
    or `--evaluate CKPT` (record-level validation metrics of a checkpoint as JSON)."""
    if not getattr(ns, "data", None):
        raise ConfigError("af_lead1 trains on real records: give --data with the PhysioNet/CinC 2017 folder "
                          "(e.g. --data ../shared/data/cinc2017: REFERENCE.csv and A0xxxx.hea/.mat)")
    if ns.epochs is not None and ns.epochs < 1:
        raise ConfigError(f"--epochs {ns.epochs}: expected >= 1")
    if ns.evaluate:
        import torch

        from ecgedge.models.specs import get_spec
        from ecgedge.models.zoo import load_model
        torch.set_num_threads(ns.threads)
        model, spec, meta = load_model("af_lead1", ns.evaluate)
        names = validation_records(meta.get("card") or None)
        rs = load_records(ns.data, spec, names=names, use_cache=False, progress=not ns.no_progress)
        m = record_metrics(predict_records(model, rs, get_spec("af_lead1")), rs.labels)
        print(json.dumps({"model": "af_lead1", "checkpoint": ns.evaluate, **m}, indent=1))
        return 0
    out = ns.out or "runs/af_lead1"
    card = train_af(ns.data, preset=ns.preset, epochs=ns.epochs or DEFAULT_EPOCHS, seed=ns.seed, out=out,
                    threads=ns.threads, max_minutes=getattr(ns, "max_minutes", None), progress=not ns.no_progress,
                    log=console.print)
    console.print(f"[bold]{card['notice']}[/bold]")
    console.print(f"wrote {out}/af_lead1.pt, .card.json, .card.md, .confusion.png: validation f1_challenge "
                  f"{card['f1_challenge']:.4f} (N {card['f1_N']:.3f}, A {card['f1_A']:.3f}, O {card['f1_O']:.3f}, "
                  f"~ {card['f1_noise']:.3f}), AUROC A {card['auroc_A']:.4f}, {card['trained_minutes']} min. "
                  f"Data: PhysioNet/CinC 2017 (Clifford et al. 2017)")
    return 0

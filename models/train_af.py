"""Train af_lead1 on real single-lead ECG: the PhysioNet/CinC Challenge 2017 records.

    edge-train af_lead1 --data ../shared/data/cinc2017 [--split-lists models/weights/af_lead1.splits]

Data: G. D. Clifford et al., Computing in Cardiology 44 (2017) — see ecgedge.models.af_lead1.DATA_CITATION.
The run is a few stages over one `TrainState`, each a function a test can call alone:

    load_data -> build -> fit (train_epoch per epoch, evaluate every few) -> finish -> make_card -> write

- data (`af_data`): records read once with the product's loader, filtered causally from the record start
  with the runtime's StreamingFilter, cached; split by record (seeded and stratified, or the published
  record lists); the validation record names go into the model card so every later stage evaluates on
  exactly those.
- training loop: class-balanced record draws; each draw is `record_crops` random 10 s crops of one record
  whose window log-probabilities are averaged before the loss (the record rule of inference, trained
  end to end), or plain one-crop windows; augmentation; optional distillation towards a teacher's
  record-level probabilities; AdamW with warm-up and cosine decay; an exponential moving average of the
  weights (that averaged model is what ships). CPU only.
- card (`af_card`, `af_eval`): record-level metrics with a bootstrap interval, the regression subset,
  the checkpoint, the card, and real calibration windows of training records for the export (`af_export`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ecgedge.errors import ConfigError
# The homes of what this module orchestrates; named here too for callers of the single-module layout.
from ecgedge.models.af_data import (Augment, RecordSet, balanced_weights, load_records, published_split,  # noqa: F401
                                    random_crops, read_labels, record_windows, stratified_split)
from ecgedge.models.af_eval import (aggregate_windows, apply_class_offsets, bootstrap_f1, predict_records,  # noqa: F401
                                    record_metrics, tune_class_offsets)
from ecgedge.models.af_export import REAL_DATA_MODELS, export_datasets, validation_records  # noqa: F401

DEFAULT_EPOCHS = 60
METRIC_KEYS = ("f1_challenge", "f1_N", "f1_A", "f1_O", "f1_noise", "auroc_A")


@dataclass
class Recipe:
    """How the weights are trained (the card's "training" section says it back)."""

    preset: str | None = None
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 64             # windows per step
    lr: float = 3e-3
    weight_decay: float = 0.05
    ema_decay: float = 0.995
    label_smoothing: float = 0.05
    balance_power: float = 0.5
    crops_per_record: float = 1.0    # windows drawn per epoch, per training record
    warmup_epochs: float = 1.0
    record_crops: int = 1            # crops of one record per draw, scored together by the record rule
    teacher: tuple = ()              # checkpoints whose record-level probabilities are soft targets
    teacher_weight: float = 0.5      # share of the teacher in the target (the rest: smoothed labels)
    tune_offsets: bool = False
    augment: Augment = field(default_factory=Augment)


@dataclass
class TrainState:
    data: Path
    out: Path
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0
    threads: int = 2
    val_fraction: float = 0.2
    split_lists: Path | None = None  # published record lists instead of the seeded split
    max_records: int | None = None   # a small stratified subset (smoke runs)
    max_minutes: float | None = None
    eval_every: int = 5
    regression_records: int = 100
    calibration_windows: int | None = None   # None: af_export.SHIPPED_WINDOWS
    init: Path | None = None
    cache_dir: Path | None = None
    progress: bool = True
    log: Callable = print
    # filled by the stages
    spec: object = None
    rs: RecordSet | None = None
    train_rs: RecordSet | None = None
    val_rs: RecordSet | None = None
    split_note: str = ""
    model: object = None
    ema: object = None
    opt: object = None
    teacher_probs: np.ndarray | None = None
    init_card: dict | None = None
    rng: np.random.Generator | None = None
    steps_per_epoch: int = 0
    total_steps: int = 0
    warmup_steps: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    final: object = None
    offsets: np.ndarray | None = None
    metrics: dict | None = None
    card: dict | None = None
    t0: float = field(default_factory=time.time)
    cpu0: float = field(default_factory=time.process_time)


# ----------------------------------------------------------------------------------------------- data

def load_data(state: TrainState) -> TrainState:
    """Records (all labelled ones, a smoke subset, or those of the published lists) and their split."""
    from ecgedge.models.af_lead1 import CLASSES
    from ecgedge.models.specs import get_spec

    state.spec = get_spec("af_lead1")
    names, lists = None, None
    if state.split_lists is not None:
        lists = published_split(state.split_lists)
        names = sorted(set(lists["training"]) | set(lists["validation"]))
    elif state.max_records is not None:  # chosen before anything is read
        labels = read_labels(Path(state.data), CLASSES)
        all_names = sorted(labels)
        _, keep = stratified_split(np.array([labels[n] for n in all_names]),
                                   min(0.999, state.max_records / len(all_names)), state.seed + 1)
        names = [all_names[i] for i in keep[:state.max_records]]
    state.rs = load_records(state.data, state.spec, names=names, cache_dir=state.cache_dir,
                            use_cache=state.max_records is None, progress=state.progress)
    if lists is not None:
        state.train_rs, state.val_rs = state.rs.select(lists["training"]), state.rs.select(lists["validation"])
        state.split_note = f"the published record lists of {state.split_lists}"
    else:
        train_idx, val_idx = stratified_split(state.rs.labels, state.val_fraction, state.seed)
        state.train_rs, state.val_rs = state.rs.subset(train_idx), state.rs.subset(val_idx)
        state.split_note = f"stratified, seed {state.seed}"
    state.log(f"{len(state.rs)} records: {len(state.train_rs)} train / {len(state.val_rs)} validation "
              f"({state.split_note}); loaded in {time.time() - state.t0:.0f} s")
    return state


def teacher_probabilities(checkpoints, rs: RecordSet, spec) -> np.ndarray:
    """Record-level probabilities of one teacher, or the normalised geometric mean of several."""
    from ecgedge.models.zoo import load_model
    logp = np.zeros((len(rs), len(spec.outputs)))
    for ckpt in checkpoints:
        model, _, _ = load_model(spec.name, ckpt)
        logp += np.log(np.clip(predict_records(model, rs, spec), 1e-9, 1.0))
    e = np.exp(logp / len(checkpoints) - (logp / len(checkpoints)).max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# ----------------------------------------------------------------------------------------------- model

def build(state: TrainState) -> TrainState:
    """The model (fresh, or continued from `init`), its weight average, the optimiser and the schedule."""
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from ecgedge.models.zoo import build_model, load_model

    r = state.recipe
    if r.record_crops < 1 or r.batch_size % r.record_crops:
        raise ConfigError(f"record_crops {r.record_crops}: expected >= 1 and a divisor of the batch "
                          f"size {r.batch_size}")
    torch.set_num_threads(state.threads)
    torch.manual_seed(state.seed)
    state.rng = np.random.default_rng(state.seed)
    model = build_model("af_lead1", r.preset)
    if state.init is not None:  # continue from a checkpoint (a warm restart of the schedule)
        start, _, meta = load_model("af_lead1", state.init)
        if start.ecgedge_arch != model.ecgedge_arch:
            model = start
        model.load_state_dict(start.state_dict())
        state.init_card = {k: meta["card"].get(k) for k in ("f1_challenge", "trained_minutes", "cpu_minutes", "training")}
    state.model = model
    state.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(r.ema_decay), use_buffers=True)
    state.opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    per_epoch = max(1, int(round(len(state.train_rs) * r.crops_per_record)))
    state.steps_per_epoch = math.ceil(per_epoch / r.batch_size)
    state.total_steps = r.epochs * state.steps_per_epoch
    state.warmup_steps = max(1, int(state.steps_per_epoch * r.warmup_epochs))
    if r.teacher:
        state.teacher_probs = teacher_probabilities(r.teacher, state.train_rs, state.spec)
    return state


# ----------------------------------------------------------------------------------------------- training loop

def lr_at(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, p)))


def batch(state: TrainState) -> tuple[np.ndarray, np.ndarray]:
    """One step's windows [B, W] (model units, augmented) and the records drawn [B / record_crops]."""
    from ecgedge.models.af_lead1 import CLASSES
    r, rs = state.recipe, state.train_rs
    p = balanced_weights(rs.labels, len(CLASSES), r.balance_power)
    sel = state.rng.choice(len(rs), size=r.batch_size // r.record_crops, replace=True, p=p)
    x = random_crops(rs, np.repeat(sel, r.record_crops), state.spec.input.window_samples, state.rng)
    x = r.augment.apply(x / float(state.spec.input.scale_uv), state.rng, float(state.spec.input.sampling_rate_hz))
    return x, sel


def loss_of(state: TrainState, logits, sel: np.ndarray):
    """Cross-entropy of each draw's record-rule log-probabilities (mean window log-softmax, normalised)
    against its smoothed label, mixed with the teacher's record probabilities when there is a teacher."""
    import torch
    import torch.nn.functional as F
    r = state.recipe
    n_classes = logits.shape[1]
    logp = F.log_softmax(F.log_softmax(logits, 1).view(len(sel), r.record_crops, n_classes).mean(1), 1)
    y = torch.from_numpy(state.train_rs.labels[sel])
    target = F.one_hot(y, n_classes).float() * (1 - r.label_smoothing) + r.label_smoothing / n_classes
    if state.teacher_probs is not None:
        target = (1 - r.teacher_weight) * target + r.teacher_weight * torch.from_numpy(state.teacher_probs[sel]).float()
    return -(target * logp).sum(1).mean()


def train_epoch(state: TrainState, on_step: Callable | None = None) -> float:
    """One epoch of steps; the mean loss."""
    import torch
    r = state.recipe
    state.model.train()
    run = 0.0
    for b in range(state.steps_per_epoch):
        x, sel = batch(state)
        for g in state.opt.param_groups:
            g["lr"] = lr_at(state.step, state.total_steps, state.warmup_steps, r.lr, r.lr * 0.01)
        loss = loss_of(state, state.model(torch.from_numpy(x[:, None, :])), sel)
        state.opt.zero_grad(set_to_none=True)
        loss.backward()
        state.opt.step()
        state.ema.update_parameters(state.model)
        run += loss.item()
        state.step += 1
        if on_step is not None:
            on_step(b, run / (b + 1))
    return run / state.steps_per_epoch


def fit_time_budget(state: TrainState, epoch_s: float, spent_s: float) -> None:
    """After the warm-up epoch: shorten the run to fit `max_minutes` (the cosine schedule has not begun,
    so no step taken so far changes)."""
    fit = int((state.max_minutes * 60 - spent_s) * 0.9 // epoch_s)
    if fit < state.recipe.epochs:
        state.recipe.epochs = max(2, fit)
        state.total_steps = state.recipe.epochs * state.steps_per_epoch
        state.log(f"time budget {state.max_minutes} min: {epoch_s:.0f} s per epoch -> {state.recipe.epochs} epochs")


def evaluate(state: TrainState, model=None) -> dict:
    """Record-level validation metrics of `model` (default: the weight average)."""
    model = state.ema.module if model is None else model
    return record_metrics(predict_records(model, state.val_rs, state.spec), state.val_rs.labels)


def fit(state: TrainState) -> TrainState:
    """Every epoch, the validation metrics of the weight average every `eval_every` epochs and at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    bar = Progress(TextColumn("[bold]af_lead1[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), disable=not state.progress)
    with bar:
        task = bar.add_task("training", total=state.total_steps)
        t_train, epoch = time.time(), 0
        while epoch < state.recipe.epochs:
            def on_step(b, loss):
                bar.update(task, advance=1, description=f"epoch {epoch + 1}/{state.recipe.epochs} loss {loss:.3f}")
                if not state.progress and state.step % 25 == 0:
                    state.log(f"step {state.step}/{state.total_steps} (epoch {epoch + 1}/{state.recipe.epochs}), "
                              f"loss {loss:.3f}, {time.time() - state.t0:.0f} s")
            row = {"epoch": epoch + 1, "loss": train_epoch(state, on_step), "seconds": round(time.time() - state.t0, 1)}
            if epoch == 0 and state.max_minutes is not None:
                fit_time_budget(state, time.time() - t_train, t_train - state.t0)
                bar.update(task, total=state.total_steps)
            if (epoch + 1) % state.eval_every == 0 or epoch + 1 == state.recipe.epochs:
                m = evaluate(state)
                row.update({k: m[k] for k in METRIC_KEYS})
                state.log(f"epoch {epoch + 1}: loss {row['loss']:.4f}, validation (EMA) f1_challenge "
                          f"{m['f1_challenge']:.4f} (N {m['f1_N']:.3f} A {m['f1_A']:.3f} O {m['f1_O']:.3f} "
                          f"~ {m['f1_noise']:.3f}), AUROC A {m['auroc_A']:.4f}, {row['seconds']:.0f} s")
            state.history.append(row)
            epoch += 1
    return state


# ----------------------------------------------------------------------------------------------- card

def finish(state: TrainState) -> TrainState:
    """The shipped model (the weight average, class offsets folded in when tuned on training records)
    and its validation metrics with a bootstrap interval."""
    from ecgedge.models.af_lead1 import CLASSES
    state.final = state.ema.module.eval()
    if state.recipe.tune_offsets:  # on training records only: validation stays untouched
        state.offsets = tune_class_offsets(predict_records(state.final, state.train_rs, state.spec),
                                           state.train_rs.labels)
        apply_class_offsets(state.final, state.offsets)
        state.log(f"class logit offsets (tuned on training records): "
                  f"{dict(zip(CLASSES, np.round(state.offsets, 2).tolist()))}")
    probs = predict_records(state.final, state.val_rs, state.spec)
    state.metrics = record_metrics(probs, state.val_rs.labels)
    state.metrics["interval"] = bootstrap_f1(state.val_rs.labels, probs, seed=state.seed)["a"]
    state.metrics["probs"] = probs
    return state


def regression_subset(state: TrainState) -> dict:
    """The CI regression records: the first of a seeded permutation of the validation records."""
    order = np.random.default_rng(state.seed + 7).permutation(len(state.val_rs))[:state.regression_records]
    names = sorted(state.val_rs.names[i] for i in order)
    idx = [state.val_rs.names.index(n) for n in names]
    f1 = record_metrics(state.metrics["probs"][idx], state.val_rs.labels[idx])["f1_challenge"]
    return {"records": names, "f1_challenge": f1, "min_f1_challenge": round(f1 - 0.03, 4),
            "rule": "the shipped model's record-level f1_challenge on these records must not fall below "
                    "min_f1_challenge (measured minus 0.03)"}


def training_section(state: TrainState) -> dict:
    import torch
    r, window = state.recipe, state.spec.input.window_samples
    per_epoch = state.steps_per_epoch * r.batch_size
    out = {"optimizer": "AdamW", "lr": r.lr, "weight_decay": r.weight_decay,
           "schedule": "linear warm-up 1 epoch, cosine to 1% of peak", "batch_size": r.batch_size,
           "epochs": r.epochs, "steps": state.total_steps, "max_minutes": state.max_minutes,
           "loss": f"cross-entropy, label smoothing {r.label_smoothing}",
           "sampling": f"records drawn with class share proportional to count**{1 - r.balance_power:g}",
           "crops": f"one random {window}-sample crop per draw, {per_epoch} draws per epoch",
           "augmentation": r.augment.text(), "weight_averaging": f"EMA of weights and BN statistics, decay "
           f"{r.ema_decay} per step (the averaged model ships)", "threads": state.threads, "torch": str(torch.__version__),
           "recipe": {k: v for k, v in asdict(r).items() if k != "augment"}}
    if r.record_crops > 1:
        out["crops"] = (f"{r.record_crops} random {window}-sample crops of one record per draw, {per_epoch // r.record_crops} "
                        f"draws ({per_epoch} windows) per epoch")
        out["record_windows"] = (f"the loss scores each draw's {r.record_crops} crops together: the softmax of their "
                                 "mean log-softmax (the record rule of inference)")
    if r.teacher:
        out["teacher"] = (f"targets mix {r.teacher_weight:g} of the record-level probabilities of {len(r.teacher)} teacher "
                          f"checkpoint(s) ({', '.join(Path(t).name for t in r.teacher)}) with the smoothed label")
    return out


def make_card(state: TrainState) -> TrainState:
    """The model card (the keys every consumer reads: metrics, split, contract, arch, training)."""
    from ecgedge.models.af_lead1 import CLASSES, DATA_CITATION, DATASET, NOTICE, RECORD_AGGREGATION
    from ecgedge.models.zoo import count_macs, count_params
    spec, tr, va, m = state.spec, state.train_rs, state.val_rs, state.metrics
    counts = {"class_counts_train": {c: int(np.sum(tr.labels == i)) for i, c in enumerate(CLASSES)},
              "class_counts_validation": {c: int(np.sum(va.labels == i)) for i, c in enumerate(CLASSES)}}
    split = (f"by record, stratified by class, {1 - state.val_fraction:.0%}/{state.val_fraction:.0%}"
             if state.split_lists is None else state.split_note)
    state.card = {
        "model": "af_lead1", "demo": False, "label": "research", "dataset": DATASET,
        "notice": NOTICE, "data_citation": DATA_CITATION,
        "data": {"folder": str(Path(state.data)), "records": len(state.rs), "train_records": len(tr),
                 "validation_records": len(va), "split": split, **counts},
        "split_seed": state.seed, "seed": state.seed, "validation_records": list(va.names),
        "training_records": sorted(tr.names),
        "input": {"sampling_rate_hz": spec.input.sampling_rate_hz, "window_samples": spec.input.window_samples,
                  "scale_uv": float(spec.input.scale_uv), "preprocessing": dict(spec.input.preprocessing),
                  "record_aggregation": RECORD_AGGREGATION},
        "classes": list(CLASSES), "preset": state.final.ecgedge_preset if hasattr(state.final, "ecgedge_preset")
        else state.model.ecgedge_preset, "arch": dict(getattr(state.final, "ecgedge_arch", state.model.ecgedge_arch)),
        "params": count_params(state.final), "macs": count_macs(state.final, spec.input.window_samples),
        **{k: m[k] for k in ("f1_challenge", "f1_N", "f1_A", "f1_O", "f1_noise", "accuracy", "auroc_A")},
        "f1_challenge_interval": m["interval"], "confusion": m["confusion"], "records": m["records"],
        "regression": regression_subset(state), "training": training_section(state),
        "class_offsets": None if state.offsets is None else {
            "values": dict(zip(CLASSES, state.offsets.tolist())),
            "tuned_on": "training records (coordinate search, record-level f1_challenge), folded into dense.bias"},
        "trained_seconds": round(time.time() - state.t0, 1), "trained_minutes": round((time.time() - state.t0) / 60, 1),
        "cpu_minutes": round((time.process_time() - state.cpu0) / 60, 1),
        "init": None if state.init is None else {"checkpoint": str(state.init), "card": state.init_card},
        "history": state.history,
    }
    return state


def write(state: TrainState) -> Path:
    """<out>/af_lead1.{pt,card.json,card.md,confusion.png} and the real calibration windows of training
    records beside the checkpoint (<out>/af_lead1.calibration.npz + README with the data's licence)."""
    from ecgedge.models.af_card import write_outputs
    from ecgedge.models.af_export import SHIPPED_WINDOWS, calibration_path, pick_calibration_windows, write_calibration_windows
    n = SHIPPED_WINDOWS if state.calibration_windows is None else state.calibration_windows
    picked = pick_calibration_windows(state.train_rs, state.spec, n, state.seed)
    state.card["calibration_windows"] = {"file": calibration_path(Path("af_lead1.pt")).name,
                                         "windows": len(picked["records"]), "records": picked["records"]}
    ckpt = write_outputs(state.out, state.spec, state.final, state.card)
    write_calibration_windows(calibration_path(ckpt), picked, state.spec, state.seed)
    write_split_lists(Path(state.out) / "af_lead1.splits", state, picked["records"])
    return ckpt


def write_split_lists(folder: Path, state: TrainState, calibration: list[str], folds: int = 5) -> Path:
    """The record lists of the run (training, validation, calibration windows, CI regression subset) and
    the k-fold assignment of the training records that cross-validation uses, one file each."""
    from ecgedge.models.af_data import stratified_folds, write_folds, write_record_list
    from ecgedge.models.af_export import selection_records
    folder.mkdir(parents=True, exist_ok=True)
    src = f"PhysioNet/CinC Challenge 2017 training set (Clifford et al. 2017); split: {state.split_note}"
    lists = {"training": sorted(state.train_rs.names), "validation": sorted(state.val_rs.names),
             "calibration": sorted(calibration), "regression": state.card["regression"]["records"],
             "selection": selection_records(list(state.train_rs.names), list(calibration), state.seed)}
    what = {"training": "records the weights were trained on (and cross-validated over: folds.csv)",
            "validation": "held-out records: never trained on, never used to choose anything but the record rule",
            "calibration": "training records whose windows ship in af_lead1.calibration.npz",
            "regression": "the CI regression subset of the validation records",
            "selection": "training records whose windows choose the calibrator and judge fine-tuning epochs: "
                         "the last shipped windows' (edge-export without --data) and those edge-export --data "
                         "draws with its defaults (af_export.selection_records)"}
    for name, names in lists.items():
        write_record_list(folder / f"{name}.txt", names, f"af_lead1 {name} records ({len(names)}): {what[name]}\n{src}")
    label = dict(zip(state.train_rs.names, state.train_rs.labels))
    order = sorted(label)
    write_folds(folder / "folds.csv", order, stratified_folds(np.array([label[n] for n in order]), folds, state.seed),
                f"af_lead1: {folds}-fold assignment of the training records (stratified, seed {state.seed})\n{src}")
    return folder


def train_af(data: str | Path, preset: str | None = None, epochs: int = 30, seed: int = 0, out: str | Path = "runs/af_lead1",
             threads: int = 2, batch_size: int = 64, progress: bool = True, log=print, **options) -> dict:
    """Train af_lead1 on the CinC 2017 records in `data`; writes <out>/af_lead1.{pt,card.json,card.md,
    confusion.png,calibration.npz}. `options`: the other fields of `Recipe` and `TrainState`."""
    recipe_keys = {f for f in Recipe.__dataclass_fields__}
    unknown = sorted(set(options) - recipe_keys - set(TrainState.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown training options {unknown}")
    recipe = Recipe(preset=preset, epochs=epochs, batch_size=batch_size,
                    **{k: v for k, v in options.items() if k in recipe_keys})
    state = TrainState(data=Path(data), out=Path(out), recipe=recipe, seed=seed, threads=threads, progress=progress,
                       log=log, **{k: v for k, v in options.items() if k not in recipe_keys})
    for stage in (load_data, build, fit, finish, make_card):
        state = stage(state)
    write(state)
    return state.card


# ----------------------------------------------------------------------------------------------- CLI

def run_cli(ns, console) -> int:
    """`edge-train af_lead1 --data DIR [--epochs E] [--seed S] [--out DIR] [--threads T] [--max-minutes M]
    [--split-lists DIR] [--teacher CKPT ...] [--teacher-weight W] [--record-crops K] [--init CKPT] [--lr LR]`,
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
        probs = predict_records(model, rs, get_spec("af_lead1"))
        m = {**record_metrics(probs, rs.labels), "interval": bootstrap_f1(rs.labels, probs)["a"]}
        print(json.dumps({"model": "af_lead1", "checkpoint": ns.evaluate, **m}, indent=1))
        return 0
    out = ns.out or "runs/af_lead1"
    split_lists = getattr(ns, "split_lists", None)
    teacher = tuple(getattr(ns, "teacher", None) or ())
    for t in teacher:
        if not Path(t).is_file():
            raise ConfigError(f"--teacher {t!r}: no such checkpoint")
    weight = getattr(ns, "teacher_weight", 0.5)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"--teacher-weight {weight}: expected a share in [0, 1]")
    card = train_af(ns.data, preset=ns.preset, epochs=ns.epochs or DEFAULT_EPOCHS, seed=ns.seed, out=out,
                    threads=ns.threads, max_minutes=getattr(ns, "max_minutes", None), progress=not ns.no_progress,
                    log=console.print, split_lists=Path(split_lists) if split_lists else None, teacher=teacher,
                    teacher_weight=weight, record_crops=getattr(ns, "record_crops", 1), lr=ns.lr,
                    init=Path(ns.init) if getattr(ns, "init", None) else None)
    console.print(f"[bold]{card['notice']}[/bold]")
    console.print(f"wrote {out}/af_lead1.pt, .card.json, .card.md, .confusion.png, .calibration.npz: validation "
                  f"f1_challenge {card['f1_challenge']:.4f} (N {card['f1_N']:.3f}, A {card['f1_A']:.3f}, O "
                  f"{card['f1_O']:.3f}, ~ {card['f1_noise']:.3f}), AUROC A {card['auroc_A']:.4f}, "
                  f"{card['trained_minutes']} min. Data: PhysioNet/CinC 2017 (Clifford et al. 2017)")
    return 0

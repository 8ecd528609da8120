"""Train demo weights on generated subjects (the `edge-train` command).

Only `pocket_k` has a training recipe: the signal generator (`ecgedge.signals`) knows serum K+, so
windows come labelled. Subjects are split train/validation/test BY SUBJECT; the best epoch on the
validation subjects is kept and evaluated once on the test subjects. Outputs: `<name>.pt` (ecgedge
checkpoint dict), `<name>.card.json`, `<name>.card.md` and `<name>.roc.png`.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ecgedge
from ecgedge.errors import ConfigError, DataError
from ecgedge.contract.metrics import auroc, roc_curve
from ecgedge.models.specs import ModelSpec, get_spec, list_specs
from ecgedge.models.zoo import build_model, count_macs, count_params, load_model

TRAINABLE = ("pocket_k",)
K_LABEL_THRESHOLDS = {"p_k_gt_5_5": (5.5, False), "p_k_ge_6_0": (6.0, True)}  # (mmol/L, inclusive)
K_RANGE = (2.5, 8.0)
K_LOSS_SCALE = 1.0       # regression error is taken in units of 1 mmol/L
K_LOSS_WEIGHT = 0.5
GOLDEN_SEED = 20240611   # the golden check's input: numpy default_rng(GOLDEN_SEED) normal * GOLDEN_STD (mV)
GOLDEN_STD = 0.3


def golden_input(window_samples: int) -> np.ndarray:
    """Fixed model-unit input [1, 1, W] for the shipped checkpoint's golden output (PCG64 is stable)."""
    x = np.random.default_rng(GOLDEN_SEED).standard_normal(window_samples) * GOLDEN_STD
    return x.astype(np.float32).reshape(1, 1, window_samples)


def pocket_k_targets(k_mmol) -> np.ndarray:
    """[N, 3] float32 targets in output order: K+ > 5.5, K+ >= 6.0 (0/1), K+ (mmol/L)."""
    k = np.asarray(k_mmol, dtype=np.float32).ravel()
    return np.stack([(k > 5.5), (k >= 6.0), k], axis=1).astype(np.float32)


@dataclass
class Split:
    x: np.ndarray        # float32 [N, 1, W], model units (filtered µV / scale_uv)
    k: np.ndarray        # float32 [N]
    subject: np.ndarray  # int32 [N]

    @property
    def n_subjects(self) -> int:
        return int(np.unique(self.subject).size)


def make_dataset(spec: ModelSpec, subjects: int, windows_per_subject: int, seed: int = 0,
                 fractions=(0.7, 0.15, 0.15), progress: bool = False) -> dict[str, Split]:
    """Generated, filtered windows in model units, split train/val/test by subject."""
    from ecgedge.signals import make_windows

    if subjects < 3:
        raise ConfigError(f"--subjects {subjects}: need at least 3 (train, validation and test subjects)")
    if windows_per_subject < 1:
        raise ConfigError(f"windows per subject {windows_per_subject}: expected >= 1")
    contract = spec.input
    data = make_windows(subjects, windows_per_subject, seed=seed, sampling_rate=contract.sampling_rate_hz,
                        window_s=contract.window_s, k_range=K_RANGE, filters=dict(contract.preprocessing),
                        progress=progress)
    x = np.asarray(data["x"], dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != contract.window_samples:
        raise DataError(f"generator gave windows of shape {x.shape}; expected [N, {contract.window_samples}]")
    x = (x / np.float32(contract.scale_uv))[:, None, :]
    k = np.asarray(data["k"], dtype=np.float32)
    subj = np.asarray(data["subject"], dtype=np.int32)

    ids = np.unique(subj)
    rng = np.random.default_rng(seed + 1)
    ids = ids[rng.permutation(ids.size)]
    n_val = max(1, int(round(ids.size * fractions[1])))
    n_test = max(1, int(round(ids.size * fractions[2])))
    parts = {"test": ids[:n_test], "val": ids[n_test:n_test + n_val], "train": ids[n_test + n_val:]}
    if parts["train"].size == 0:
        raise ConfigError(f"--subjects {subjects}: too few subjects to split into train/validation/test")
    out = {}
    for name, members in parts.items():
        mask = np.isin(subj, members)
        out[name] = Split(x=x[mask], k=k[mask], subject=subj[mask])
    return out


def _loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits(outputs[:, :2], targets[:, :2])
    reg = nn.functional.smooth_l1_loss((outputs[:, 2] - targets[:, 2]) / K_LOSS_SCALE,
                                       torch.zeros_like(targets[:, 2]))
    return bce + K_LOSS_WEIGHT * reg


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0) if outs else np.zeros((0, 3), np.float32)


def evaluate(outputs: np.ndarray, k: np.ndarray) -> dict:
    targets = pocket_k_targets(k)
    return {"auroc_k55": auroc(targets[:, 0], outputs[:, 0]),
            "auroc_k60": auroc(targets[:, 1], outputs[:, 1]),
            "mae_k": float(np.mean(np.abs(outputs[:, 2] - k))),
            "prevalence_k55": float(targets[:, 0].mean()), "prevalence_k60": float(targets[:, 1].mean())}


def _progress(enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=False)


def train(name: str = "pocket_k", preset: str | None = None, subjects: int = 320, windows_per_subject: int = 5,
          epochs: int = 4, seed: int = 0, out: str | Path = "runs/pocket_k", threads: int = 2,
          batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 1e-2, init: str | Path | None = None,
          crop_s: float | None = 4.0,
          progress: bool = True, log=print) -> dict:
    """Train, pick the best validation epoch, test, write checkpoint + cards. Returns the card dict."""
    spec = get_spec(name)
    if name not in TRAINABLE:
        raise ConfigError(f"model {name!r} has no training recipe (no labelled generator); "
                          f"trainable: {', '.join(TRAINABLE)}; all models: {', '.join(list_specs())}")
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs}: expected >= 1")
    if threads < 1:
        raise ConfigError(f"--threads {threads}: expected >= 1")
    t_start = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)

    if init is not None:
        model, _, init_meta = load_model(name, init, preset=preset)
        preset = init_meta.get("preset") or preset
        arch = init_meta["arch"]
    else:
        model = build_model(name, preset)
        preset, arch = model.ecgedge_preset, model.ecgedge_arch

    log(f"generating {subjects} subjects x {windows_per_subject} windows (seed {seed}) ...")
    data = make_dataset(spec, subjects, windows_per_subject, seed=seed, progress=progress)
    train_set, val_set, test_set = data["train"], data["val"], data["test"]
    t_data = time.perf_counter() - t_start
    log(f"windows: train {len(train_set.k)} ({train_set.n_subjects} subjects), val {len(val_set.k)} "
        f"({val_set.n_subjects}), test {len(test_set.k)} ({test_set.n_subjects}); generated in {t_data:.0f} s")

    y_train = torch.from_numpy(pocket_k_targets(train_set.k))
    x_train = torch.from_numpy(train_set.x)
    if init is None:  # start the heads at the training prevalence / mean K+
        with torch.no_grad():
            p = y_train[:, :2].mean(0).clamp(0.02, 0.98)
            model.dense.bias[:2] = torch.log(p / (1 - p))
            model.dense.bias[2] = y_train[:, 2].mean()

    window = spec.input.window_samples
    crop = window if not crop_s else min(window, int(round(crop_s * spec.input.sampling_rate_hz)))
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.2)
    shuffle = torch.Generator().manual_seed(seed)
    best = {"score": -math.inf, "epoch": 0, "state": None, "val": None}
    history = []
    with _progress(progress) as bar:
        task_epochs = bar.add_task("epochs", total=epochs, info="")
        task_batches = bar.add_task("batches", total=steps_per_epoch, info="")
        for epoch in range(1, epochs + 1):
            model.train()
            bar.reset(task_batches, total=steps_per_epoch)
            order = torch.randperm(len(x_train), generator=shuffle)
            running = 0.0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size:(step + 1) * batch_size]
                xb = x_train[idx]
                if crop < xb.shape[-1]:  # one random crop per batch: the net is convolutional + mean pool
                    start = int(torch.randint(0, xb.shape[-1] - crop + 1, (1,), generator=shuffle))
                    xb = xb[..., start:start + crop]
                loss = _loss(model(xb), y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += float(loss.detach())
                bar.update(task_batches, advance=1, info=f"loss {running / (step + 1):.3f}")
            val = evaluate(predict(model, val_set.x), val_set.k)
            # an AUROC a one-class validation set cannot give (None) counts as chance
            score = sum(0.5 if a is None else a for a in (val["auroc_k55"], val["auroc_k60"])) - 0.1 * val["mae_k"]
            history.append({"epoch": epoch, "train_loss": running / steps_per_epoch, **val})
            if score > best["score"]:
                best = {"score": score, "epoch": epoch, "val": val,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            bar.update(task_epochs, advance=1, info=f"val AUROC>5.5 {_fmt(val['auroc_k55'], '.3f')} "
                                                    f">=6.0 {_fmt(val['auroc_k60'], '.3f')} MAE {val['mae_k']:.2f}")
            log(f"epoch {epoch}/{epochs}: train loss {running / steps_per_epoch:.4f}, val AUROC(K>5.5) "
                f"{_fmt(val['auroc_k55'], '.4f')}, AUROC(K>=6.0) {_fmt(val['auroc_k60'], '.4f')}, "
                f"MAE {val['mae_k']:.3f} mmol/L")

    model.load_state_dict(best["state"])
    model.eval()
    test_out = predict(model, test_set.x)
    test = evaluate(test_out, test_set.k)
    trained_seconds = time.perf_counter() - t_start
    log(f"best epoch {best['epoch']}; test AUROC(K>5.5) {_fmt(test['auroc_k55'], '.4f')}, AUROC(K>=6.0) "
        f"{_fmt(test['auroc_k60'], '.4f')}, MAE {test['mae_k']:.3f} mmol/L; {trained_seconds:.0f} s")

    with torch.no_grad():
        golden = model(torch.from_numpy(golden_input(spec.input.window_samples))).numpy()[0]
    n_windows = len(train_set.k) + len(val_set.k) + len(test_set.k)
    card = {
        "model": name, "demo": True, "label": "demo", "notice": ecgedge.DEMO_NOTICE, "preset": preset, "arch": arch,
        "data": {
            "generator": "ecgedge.signals.make_windows: synthetic lead-I ECG whose morphology follows serum K+ "
                         "(T peaking/narrowing, PR lengthening, P flattening, QRS widening; flat T and U waves "
                         "when low), with per-subject variation, HRV, baseline wander, powerline, EMG, motion "
                         "artefacts and ADC quantisation",
            "k_range_mmol": list(K_RANGE), "windows_per_subject": windows_per_subject,
            "preprocessing": dict(spec.input.preprocessing), "scale_uv": spec.input.scale_uv,
            "split": "by subject, 70/15/15 % train/validation/test (no subject in two parts)",
            "train": {"subjects": train_set.n_subjects, "windows": int(len(train_set.k))},
            "val": {"subjects": val_set.n_subjects, "windows": int(len(val_set.k))},
            "test": {"subjects": test_set.n_subjects, "windows": int(len(test_set.k))},
        },
        "init": None if init is None else {"checkpoint": Path(init).name,
                                           "auroc_k55": init_meta.get("card", {}).get("auroc_k55")},
        "seed": seed, "subjects": subjects, "windows": n_windows, "epochs": epochs, "best_epoch": best["epoch"],
        "auroc_k55": test["auroc_k55"], "auroc_k60": test["auroc_k60"], "mae_k": test["mae_k"],
        "test_prevalence_k55": test["prevalence_k55"], "test_prevalence_k60": test["prevalence_k60"],
        "val": best["val"], "history": history,
        "params": count_params(model), "macs": count_macs(model, spec.input.window_samples),
        "trained_seconds": round(trained_seconds, 1), "data_seconds": round(t_data, 1),
        "optimizer": {"name": "AdamW", "lr": lr, "weight_decay": weight_decay, "schedule": "OneCycleLR",
                      "batch_size": batch_size,
                      "train_crop_samples": crop, "loss": f"BCE(K+>5.5) + BCE(K+>=6.0) + {K_LOSS_WEIGHT} * "
                                                        f"SmoothL1(K+ error / {K_LOSS_SCALE} mmol/L)"},
        "threads": threads, "torch": str(torch.__version__), "numpy": str(np.__version__),
        "ecgedge": ecgedge.__version__,
        "python": platform.python_version(),
        "golden": {"input": f"numpy.random.default_rng({GOLDEN_SEED}).standard_normal"
                            f"({spec.input.window_samples}) * {GOLDEN_STD}, float32, shape [1, 1, "
                            f"{spec.input.window_samples}]",
                   "output": [float(v) for v in golden]},
    }
    card = _json_safe(card)
    write_outputs(out, spec, model, card, test_set.k, test_out)
    return card


def _json_safe(obj):
    """Plain Python types only (loadable with weights_only=True); NaN (a class absent) becomes None."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj if not isinstance(obj, str) else str(obj)
    value = float(obj)
    return None if math.isnan(value) else value


def write_outputs(out: str | Path, spec: ModelSpec, model: nn.Module, card: dict, k_test: np.ndarray,
                  test_outputs: np.ndarray) -> dict[str, Path]:
    """Checkpoint, card.json, card.md and ROC plot into `out`, each written to a temp name then renamed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": out / f"{spec.name}.pt", "card_json": out / f"{spec.name}.card.json",
             "card_md": out / f"{spec.name}.card.md", "roc_png": out / f"{spec.name}.roc.png"}

    tmp = paths["roc_png"].with_suffix(".png.tmp")
    _plot_roc(tmp, spec, card, k_test, test_outputs)
    tmp.replace(paths["roc_png"])

    checkpoint = {"model": spec.name, "preset": card["preset"], "arch": card["arch"],
                  "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  "demo": True, "card": card}
    tmp = paths["checkpoint"].with_suffix(".pt.tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(paths["checkpoint"])

    tmp = paths["card_json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(paths["card_json"])

    tmp = paths["card_md"].with_suffix(".md.tmp")
    tmp.write_text(_card_markdown(spec, card, paths["roc_png"].name))
    tmp.replace(paths["card_md"])
    return paths


def _plot_roc(path: Path, spec: ModelSpec, card: dict, k_test: np.ndarray, outputs: np.ndarray) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = pocket_k_targets(k_test)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=100)
    for col, label in ((0, "K+ > 5.5"), (1, "K+ >= 6.0")):
        fpr, tpr, _ = roc_curve(targets[:, col], outputs[:, col])
        ax.plot(fpr, tpr, lw=1.6, label=f"{label}: AUROC {_fmt(auroc(targets[:, col], outputs[:, col]), '.3f')}")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"{spec.name}: held-out synthetic subjects\nDEMO weights, not for clinical use", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _fmt(value, spec: str) -> str:
    return "n/a (one class absent)" if value is None else format(value, spec)


def _card_markdown(spec: ModelSpec, card: dict, roc_name: str) -> str:
    d = card["data"]
    arch = card["arch"]
    init = card.get("init")
    init_line = (f" Fine-tuned from `{init['checkpoint']}` (same recipe and data, seed {card['seed']})."
                 if init else "")
    return f"""# Model card: {spec.name} (demo weights, synthetic data, not for clinical use)

> **{card['notice']}.** These weights were trained only on generated ECG. They show that the toolchain
> works end to end; they say nothing about how a model behaves on patients.

{spec.description}

## Metrics on held-out synthetic subjects ({d['test']['subjects']} subjects, {d['test']['windows']} windows)

| metric | value |
|---|---|
| AUROC, K+ > 5.5 mmol/L | {_fmt(card['auroc_k55'], '.4f')} |
| AUROC, K+ >= 6.0 mmol/L | {_fmt(card['auroc_k60'], '.4f')} |
| K+ mean absolute error | {_fmt(card['mae_k'], '.3f')} mmol/L |
| prevalence K+ > 5.5 / >= 6.0 | {_fmt(card['test_prevalence_k55'], '.3f')} / {_fmt(card['test_prevalence_k60'], '.3f')} |

![ROC curves]({roc_name})

## Input contract

Lead {spec.input.lead}, {spec.input.sampling_rate_hz} Hz, {spec.input.window_samples} samples
({spec.input.window_s:g} s); filtered causally ({spec.input.preprocessing}); model input = µV / {spec.input.scale_uv:g}.
Outputs: {', '.join(f"`{o.name}` ({o.kind})" for o in spec.outputs)}.

## Data

{d['generator']}. K+ uniform in {d['k_range_mmol'][0]}–{d['k_range_mmol'][1]} mmol/L,
{d['windows_per_subject']} windows per subject, {card['subjects']} subjects, {card['windows']} windows; split {d['split']}:
train {d['train']['subjects']} subjects / {d['train']['windows']} windows, validation {d['val']['subjects']} / {d['val']['windows']},
test {d['test']['subjects']} / {d['test']['windows']}. Seed {card['seed']}.

## Training

Net1D (ECGFounder layout), preset `{card['preset']}`: filters {arch['filter_list']}, blocks {arch['m_blocks_list']},
kernel {arch['kernel_size']}, groups width {arch['groups_width']}; {card['params']:,} parameters,
{card['macs']:,} MACs per window. {card['optimizer']['name']} (lr {card['optimizer']['lr']}, weight decay
{card['optimizer']['weight_decay']}, {card['optimizer']['schedule']}), batch {card['optimizer']['batch_size']} random crops of
{card['optimizer']['train_crop_samples']} samples (evaluated on whole windows),
loss {card['optimizer']['loss']}; {card['epochs']} epochs, best validation epoch {card['best_epoch']};
{card['trained_seconds']:.0f} s on {card['threads']} CPU threads (torch {card['torch']}).{init_line}

## Limitations

Synthetic morphology only; real hyperkalaemia ECGs vary far more, and many other conditions change T waves.
Not validated on any patient data. Not a medical device.
"""

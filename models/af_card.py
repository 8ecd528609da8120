"""af_lead1's model card: the checkpoint, card.json, card.md and the confusion-matrix plot.

`write_outputs` writes <out>/af_lead1.pt (float checkpoint in ecgedge's layout, the card inside),
.card.json, .card.md and .confusion.png. Data: G. D. Clifford et al., Computing in Cardiology 44 (2017).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def json_safe(obj):
    """A card made of plain JSON types (numpy scalars -> Python, non-finite floats -> None)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
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
    card = json_safe(card)
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


def _interval_text(card: dict) -> str:
    ci = card.get("f1_challenge_interval")
    if not ci:
        return ""
    return f" (95 % bootstrap interval over records {ci['low']:.4f}-{ci['high']:.4f})"


def _extra_training_text(t: dict) -> str:
    parts = []
    if t.get("record_windows"):
        parts.append(t["record_windows"])
    if t.get("teacher"):
        parts.append(f"distillation: {t['teacher']}")
    return "".join(f" {p};" for p in parts)


def card_markdown(card: dict, confusion_png: str) -> str:
    from ecgedge.models.af_lead1 import RECORD_RULE_NOTE

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
| f1_challenge (mean F1 of N, A, O) | {card['f1_challenge']:.4f}{_interval_text(card)} |
| F1 N / A / O / ~ | {card['f1_N']:.4f} / {card['f1_A']:.4f} / {card['f1_O']:.4f} / {card['f1_noise']:.4f} |
| AUROC, A vs rest | {card['auroc_A']:.4f} |
| accuracy | {card['accuracy']:.4f} |

Confusion matrix (rows: reference, columns: predicted; {' / '.join(card['classes'])}):

| | {' | '.join(card['classes'])} |
|---|{'---|' * len(card['classes'])}
{rows}

![confusion matrix]({confusion_png})

These figures are on our own validation split of the Challenge's public training records, not on the
Challenge's hidden test set; they are not comparable to clinical performance. {RECORD_RULE_NOTE}

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
{t['batch_size']}, {t['epochs']} epochs ({t['steps']} steps); {t['loss']}; {t['sampling']}; {t['crops']};{_extra_training_text(t)}
augmentation: {t['augmentation']}; {t['weight_averaging']}. {card['trained_minutes']} minutes on
{t['threads']} CPU thread(s), torch {t['torch']}.
"""

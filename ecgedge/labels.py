"""What a model's weights are, said the same way everywhere: one table of label kinds.

CLI output (edge-train --list, edge-export, edge-run, edge-hil), reports (report.json/html, hil_report.json),
manifests (`label` and `notice`) and the live screen all take their words from `KINDS`:

- untrained: random weights (a zoo spec with nothing trained): outputs are meaningless, profiling only;
- demo: trained on synthetic data (ecgedge's own generator);
- research: trained on real data, the dataset named: research use;
- user: the user's own model (bring your own model): ecgedge neither trained nor validated it.

None of them is for clinical use, and every notice says so. Imports nothing of ecgedge but the root (the
runtime reads it; import-linter keeps edge_runtime away from models).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ecgedge import DEMO_NOTICE


@dataclass(frozen=True)
class LabelKind:
    kind: str
    tag: str            # short, for tables
    notice: str         # a template: {dataset}, {source}
    demo: bool          # the manifest's "demo" flag (True: not trained on real data)


KINDS: dict[str, LabelKind] = {k.kind: k for k in (
    LabelKind("untrained", "UNTRAINED",
              "UNTRAINED WEIGHTS: random, outputs are meaningless (size and speed profiling only), "
              "not for clinical use", demo=True),
    LabelKind("demo", "DEMO", DEMO_NOTICE, demo=True),
    LabelKind("research", "RESEARCH", "RESEARCH USE, not for clinical use: trained on real data ({dataset})",
              demo=False),
    LabelKind("user", "USER",
              "USER MODEL ({source}): weights ecgedge did not train; its INT8 model is measured against the "
              "given model (fidelity), no clinical accuracy is claimed, not for clinical use",
              demo=False),
)}


@dataclass(frozen=True)
class Label:
    kind: str
    notice: str
    dataset: str | None = None

    @property
    def tag(self) -> str:
        return KINDS[self.kind].tag

    @property
    def demo(self) -> bool:
        return KINDS[self.kind].demo

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tag": self.tag, "notice": self.notice, "dataset": self.dataset}


def label(kind: str, dataset: str | None = None, source: str | None = None) -> Label:
    """The label of one kind; research needs the dataset's name, user the model's source (a file name)."""
    if kind not in KINDS:
        raise ValueError(f"label kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "research" and not dataset:
        raise ValueError("a research label names its dataset")
    text = KINDS[kind].notice.format(dataset=dataset or "", source=source or "your checkpoint")
    return Label(kind, text, dataset if kind == "research" else None)


_PAREN = re.compile(r"\(([^()]+)\)")


def _dataset_of(card: dict) -> str | None:
    """The training set's short name from a model card: "dataset", else the parenthesis of its notice
    ("real data (PhysioNet/CinC 2017), research use, ...")."""
    if card.get("dataset"):
        return str(card["dataset"])
    m = _PAREN.search(str(card.get("notice") or ""))
    return m.group(1) if m else None


def from_card(card: dict | None) -> Label:
    """Label of weights described by an ecgedge model card ({"demo": ..., "notice": ..., "dataset": ...})."""
    card = card or {}
    kind = card.get("label")
    if kind in ("untrained", "user"):
        return label(kind, source=card.get("source"))
    if kind == "research" or card.get("demo", True) is False:  # no flag: demo, never real-data weights
        return label("research", dataset=_dataset_of(card) or "a real dataset its card does not name")
    return label("demo")


def from_meta(meta: dict) -> Label:
    """Label of a model loaded by `ecgedge.models.zoo.load_model` (its `meta`)."""
    if meta.get("untrained"):
        return label("untrained")
    if meta.get("user"):  # bring your own model (quantize.byom.load_user_model): its file's name
        return label("user", source=Path(str(meta.get("source") or "")).name or None)
    if meta.get("layout") not in (None, "ecgedge"):  # a bare or wrapped state dict: someone else's weights
        return label("user", source=Path(str(meta.get("checkpoint") or "")).name or None)
    card = dict(meta.get("card") or {})
    card.setdefault("demo", bool(meta.get("demo")))
    return from_card(card)


def card_path(weights: Path) -> Path:
    """models/weights/X.pt -> models/weights/X.card.json (the card written next to shipped weights)."""
    return weights.with_name(weights.stem + ".card.json")


def for_weights(weights: Path | None) -> Label | None:
    """Label of a shipped weights file, read from its card (JSON, no torch): untrained when there are no
    weights, None when the card is missing (the caller may read the checkpoint's own card)."""
    if weights is None:
        return label("untrained")
    try:
        card = json.loads(card_path(weights).read_text())
    except (OSError, ValueError):
        return None
    return from_card(card)


def from_checkpoint(ckpt: dict) -> Label:
    """Label from a checkpoint dict as `ecgedge.models.zoo.read_checkpoint` returns it."""
    card = dict(ckpt.get("card") or {})
    card["demo"] = ckpt.get("demo", True)
    return from_card(card)


def from_manifest(manifest: dict) -> Label | None:
    """Label of a package: its manifest's "label" and "notice"; older manifests: "demo" alone (None when
    the manifest says nothing)."""
    kind = manifest.get("label")
    if isinstance(kind, dict):
        kind = kind.get("kind")
    if kind in KINDS:
        notice = manifest.get("notice") or label(kind, dataset=manifest.get("dataset") or "unnamed real data").notice
        return Label(kind, notice, manifest.get("dataset"))
    if manifest.get("notice"):
        return Label("demo" if manifest.get("demo") else "research", manifest["notice"])
    if manifest.get("demo"):
        return label("demo")
    return None


def notice_of(manifest: dict) -> str | None:
    lab = from_manifest(manifest)
    return lab.notice if lab else None

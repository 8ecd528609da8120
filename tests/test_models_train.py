"""edge-train really trains: a short run writes a loadable checkpoint and complete model cards."""

import json

import pytest

import ecgedge
from ecgedge.models.zoo import is_demo, load_model

CARD_KEYS = {"model", "demo", "notice", "data", "seed", "subjects", "windows", "epochs", "auroc_k55", "auroc_k60",
             "mae_k", "params", "macs", "trained_seconds", "torch"}


@pytest.mark.backend
def test_short_training_run_writes_checkpoint_and_cards(tmp_path):
    from ecgedge.tools.edge_train import main

    out = tmp_path / "run"
    rc = main(["pocket_k", "--preset", "tiny", "--subjects", "12", "--windows-per-subject", "4", "--epochs", "1",
               "--seed", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    card = json.loads((out / "pocket_k.card.json").read_text())
    assert CARD_KEYS <= set(card)
    assert card["demo"] is True and card["notice"] == ecgedge.DEMO_NOTICE
    assert card["subjects"] == 12 and card["windows"] == 48 and card["epochs"] == 1 and card["seed"] == 3
    assert card["data"]["test"]["subjects"] == 2 and card["data"]["val"]["subjects"] == 2
    assert card["auroc_k55"] is None or 0.0 <= card["auroc_k55"] <= 1.0   # None: one class in the test split
    assert card["params"] == 11931
    md = (out / "pocket_k.card.md").read_text()
    assert "demo weights, synthetic data, not for clinical use" in md.splitlines()[0]
    png = out / "pocket_k.roc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000
    model, spec, meta = load_model("pocket_k", out / "pocket_k.pt")
    assert is_demo(meta) and meta["preset"] == "tiny" and meta["card"]["seed"] == 3
    assert not list(out.glob("*.tmp"))

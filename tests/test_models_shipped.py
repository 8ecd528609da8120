"""The shipped pocket_k demo weights: card metrics, size, and a golden output."""

import json
import warnings

import numpy as np
import torch

import ecgedge
from ecgedge.models.specs import get_spec
from ecgedge.models.train import golden_input
from ecgedge.models.zoo import count_macs, count_params, is_demo, load_model


def test_shipped_card_meets_the_bar():
    path = get_spec("pocket_k").weights_path()
    assert path is not None, "models/weights/pocket_k.pt is missing"
    assert path.stat().st_size <= 5 * 1024 * 1024
    card = json.loads(path.with_name("pocket_k.card.json").read_text())
    assert card["auroc_k55"] >= 0.90
    assert card["demo"] is True and card["notice"] == ecgedge.DEMO_NOTICE
    md = path.with_name("pocket_k.card.md").read_text()
    assert "not for clinical use" in md.splitlines()[0] and f"{card['auroc_k55']:.4f}" in md
    assert path.with_name("pocket_k.roc.png").stat().st_size < 200_000


def test_shipped_checkpoint_loads_and_reproduces_golden_output():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped weights are trained: no UNTRAINED warning
        model, spec, meta = load_model("pocket_k")
    assert is_demo(meta) and meta["preset"] == "reference"
    assert count_params(model) == meta["card"]["params"]
    assert count_macs(model, spec.input.window_samples) == meta["card"]["macs"]
    with torch.no_grad():
        out = model(torch.from_numpy(golden_input(spec.input.window_samples))).numpy()[0]
    np.testing.assert_allclose(out, meta["card"]["golden"]["output"], rtol=1e-4, atol=1e-4)

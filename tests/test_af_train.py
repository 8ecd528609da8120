"""af_lead1 training on real records (PhysioNet/CinC 2017, Clifford et al. 2017): a short smoke run of the
real recipe, and the shipped weights' card."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgedge.models.af_lead1 import CLASSES, NOTICE

sys.path.insert(0, str(Path(__file__).parent))
from af_helpers import CINC, SPEC, needs_data  # noqa: E402


@pytest.mark.backend
@needs_data
def test_short_training_run_writes_a_loadable_model_and_card(tmp_path):
    import torch

    from ecgedge.models.train_af import train_af
    from ecgedge.models.zoo import load_model

    out = tmp_path / "run"
    card = train_af(CINC, epochs=1, max_records=40, threads=1, batch_size=16, out=out, progress=False,
                    regression_records=5, log=lambda *_: None, cache_dir=tmp_path / "cache")
    for suffix in (".pt", ".card.json", ".card.md", ".confusion.png"):
        assert (out / f"af_lead1{suffix}").is_file()
    written = json.loads((out / "af_lead1.card.json").read_text())
    n_val = written["data"]["validation_records"]
    assert 36 <= written["data"]["records"] <= 40 and written["records"] == len(written["validation_records"]) == n_val
    for key in ("f1_challenge", "f1_N", "f1_A", "f1_O", "f1_noise", "auroc_A", "confusion", "split_seed",
                "data_citation", "notice"):
        assert key in written
    assert written["notice"] == NOTICE and "Clifford" in written["data_citation"] and written["demo"] is False
    assert np.sum(written["confusion"]) == n_val >= 6
    assert set(written["regression"]["records"]) <= set(written["validation_records"])
    model, spec, meta = load_model("af_lead1", out / "af_lead1.pt")
    assert meta["demo"] is False and meta["card"]["f1_challenge"] == pytest.approx(card["f1_challenge"])
    with torch.no_grad():
        y = model(torch.zeros(2, 1, SPEC.input.window_samples))
    assert y.shape == (2, len(CLASSES))
    assert (out / "af_lead1.pt").stat().st_size <= 5 * 1024 * 1024


def test_cli_needs_real_data(tmp_path, capsys):
    from ecgedge.tools.edge_train import main

    def code(args):  # bad flags are refused by the parser (SystemExit 2), the rest by main's return code
        try:
            return main(args)
        except SystemExit as e:
            return e.code

    assert code(["af_lead1", "--no-progress"]) == 2
    assert "--data" in capsys.readouterr().err
    assert code(["af_lead1", "--data", str(tmp_path / "absent"), "--no-progress", "--out", str(tmp_path)]) == 2
    assert "--data" in (err := capsys.readouterr().err) and "an existing folder" in err
    assert code(["af_lead1", "--data", str(tmp_path), "--no-progress", "--out", str(tmp_path)]) == 2
    assert "REFERENCE.csv" in capsys.readouterr().err
    assert code(["af_lead1", "--data", str(tmp_path), "--epochs", "0"]) == 2
    assert "--epochs" in (err := capsys.readouterr().err) and "'0'" in err
    assert code(["af_lead1", "--data", str(tmp_path), "--teacher", str(tmp_path / "none.pt"), "--no-progress"]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert code(["af_lead1", "--data", str(tmp_path), "--teacher-weight", "1.5", "--no-progress"]) == 2
    assert "--teacher-weight" in (err := capsys.readouterr().err) and "'1.5'" in err

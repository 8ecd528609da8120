"""CI regression check of the shipped af_lead1 weights on a fixed subset of its validation records
(PhysioNet/CinC 2017, Clifford et al. 2017): record-level F1 must stay above the floor in its card."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgedge.models.af_lead1 import CLASSES

sys.path.insert(0, str(Path(__file__).parent))
from af_helpers import CINC, SPEC, needs_data  # noqa: E402


def _card() -> dict:
    path = SPEC.weights_path()
    assert path is not None, "af_lead1 ships weights (models/weights/af_lead1.pt)"
    return json.loads(path.with_name("af_lead1.card.json").read_text())


def test_shipped_card_reports_the_challenge_metrics():
    card = _card()
    assert card["f1_challenge"] >= 0.83  # the acceptance for the float model on its validation records
    for key in ("f1_N", "f1_A", "f1_O", "f1_noise", "auroc_A", "confusion", "records", "split_seed"):
        assert key in card
    assert card["records"] == len(card["validation_records"]) == int(np.sum(card["confusion"]))
    assert "not for clinical use" in card["notice"] and "Clifford" in card["data_citation"]
    assert SPEC.weights_path().stat().st_size <= 5 * 1024 * 1024
    assert "every 500 samples" in card["input"]["record_aggregation"]  # the record rule the figures use


@needs_data
def test_validation_records_are_the_seeded_split():
    """The card's validation list is what the split gives: no record the model trained on is evaluated."""
    from ecgedge.models.train_af import read_labels, stratified_split

    card = _card()
    labels = read_labels(CINC, CLASSES)
    names = sorted(labels)
    _, val = stratified_split(np.array([labels[n] for n in names]), 0.2, card["split_seed"])
    assert sorted(names[i] for i in val) == sorted(card["validation_records"])


@needs_data
def test_shipped_model_does_not_regress_on_fixed_validation_records():
    from ecgedge.models.train_af import load_records, predict_records, record_metrics
    from ecgedge.models.zoo import load_model

    card = _card()
    reg = card["regression"]
    assert len(reg["records"]) == 100 and set(reg["records"]) <= set(card["validation_records"])
    model, _, _ = load_model("af_lead1")
    rs = load_records(CINC, SPEC, names=reg["records"], use_cache=False, progress=False)
    m = record_metrics(predict_records(model, rs, SPEC), rs.labels)
    assert m["f1_challenge"] >= reg["min_f1_challenge"], m
    assert m["f1_challenge"] == pytest.approx(reg["f1_challenge"], abs=1e-6)  # same records, same weights


def test_published_record_lists_are_the_cards():
    """models/weights/af_lead1.splits: what the shipped weights trained on, were validated on, calibrate
    with and regress on, so the card's figures can be reproduced from the full public set."""
    from ecgedge.models.af_data import published_split, read_folds, splits_dir

    card = _card()
    lists = published_split()
    assert set(lists) == {"training", "validation", "calibration", "regression", "selection"}
    assert lists["validation"] == sorted(card["validation_records"]) and len(lists["validation"]) == card["records"]
    assert not set(lists["training"]) & set(lists["validation"])
    assert len(lists["training"]) == card["data"]["train_records"]
    assert lists["regression"] == card["regression"]["records"] and set(lists["regression"]) <= set(lists["validation"])
    assert set(lists["calibration"]) <= set(lists["training"])
    assert card["training_records"] == lists["training"]     # the --data export draws from these, in any folder
    folds = read_folds(splits_dir() / "folds.csv")
    assert set(folds) == set(lists["training"]) and set(folds.values()) == {0, 1, 2, 3, 4}


def test_published_selection_records_are_the_exports():
    """selection.txt: the records whose windows choose the calibrator and judge the fine-tuning, for both
    exports (the last shipped windows, and the --data export's draw with edge-export's defaults)."""
    from ecgedge.models import af_export
    from ecgedge.models.af_data import published_split
    from ecgedge.quantize import pipeline

    assert (af_export.EXPORT_CALIB_WINDOWS, af_export.EXPORT_SELECT_WINDOWS) == \
        (pipeline.ExportOptions.calib_windows, pipeline.SELECT_WINDOWS)
    lists = published_split()
    shipped = [str(r) for r in np.load(af_export.calibration_path(SPEC.weights_path()))["records"]]
    drawn = af_export.export_record_split(lists["training"], 0, pipeline.ExportOptions.calib_windows,
                                          pipeline.SELECT_WINDOWS)["selection"]
    assert lists["selection"] == af_export.selection_records(lists["training"], shipped, 0)
    assert set(shipped[-af_export.SHIPPED_SELECTION:]) | set(drawn) == set(lists["selection"])
    assert set(lists["selection"]) <= set(lists["training"]) and not set(lists["selection"]) & set(lists["validation"])

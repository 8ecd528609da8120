"""af_lead1 around the road: footprint caps of the spec, the record aggregation shared by training and the
bench, the zoo listing's weight labels, and the export report with a class absent from the validation set."""

import numpy as np
import pytest

from ecgedge.models.af_lead1 import CLASSES, NOTICE
from ecgedge.models.specs import get_spec


def test_model_cap_lowers_the_target_budget_only_where_set():
    from ecgedge.quantize.footprint import budgets
    from ecgedge.targets import get_target

    spec = get_spec("af_lead1")
    m7, m4 = get_target("cortex-m7"), get_target("cortex-m4")
    b = budgets(m7, model_caps=spec.target_caps)
    assert b["flash_bytes"] == 256 * 1024 < m7.model_flash_budget and b["ram_bytes"] == 128 * 1024
    assert budgets(m7, flash_budget=100_000, model_caps=spec.target_caps)["flash_bytes"] == 100_000
    b4 = budgets(m4, model_caps=spec.target_caps)                          # the smaller variant's caps
    assert b4["macs"] == 4_350_000 < budgets(m4)["macs"] and b4["flash_bytes"] == 160 * 1024 < b["flash_bytes"]
    assert budgets(get_target("rpi4"), model_caps=spec.target_caps) == budgets(get_target("rpi4"))  # none named
    assert budgets(m7, model_caps=get_spec("pocket_k").target_caps) == budgets(m7)


def test_bench_aggregates_records_as_training_does():
    from ecgedge.contract.metrics import classification_metrics, softmax
    from ecgedge.models.train_af import aggregate_windows, record_metrics

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), rng.integers(1, 6, 40))
    logits = rng.normal(size=(len(groups), 4)) * 3
    true = rng.permutation(np.arange(40) % 4)
    bench = classification_metrics(softmax(logits, 1), true[groups], list(CLASSES), groups=groups)
    train = record_metrics(aggregate_windows(logits, groups, 40), true)
    for key in ("f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A"):
        assert bench[key] == pytest.approx(train[key]), key
    assert bench["confusion"] == train["confusion"]
    # the normalised geometric mean of the window probabilities (product of per-window evidence)
    p = softmax(logits[groups == 0], 1)
    g = np.exp(np.log(p).mean(0))
    np.testing.assert_allclose(aggregate_windows(logits[groups == 0], np.zeros(int(np.sum(groups == 0)), int), 1)[0],
                               g / g.sum(), rtol=1e-12)


def test_zoo_listing_labels_weights_by_their_checkpoint(capsys):
    from ecgedge import DEMO_NOTICE
    from ecgedge.tools.edge_train import _weights_label

    assert _weights_label(get_spec("af_lead1").weights_path()) == NOTICE
    assert _weights_label(get_spec("pocket_k").weights_path()) == DEMO_NOTICE


def test_export_roc_plot_with_a_class_absent_from_validation():
    from ecgedge.quantize.report import _roc_plot

    spec = get_spec("af_lead1")
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(30, 4))
    truth = {f"logit_{c}": np.arange(30) % 3 == i for i, c in enumerate(CLASSES)}   # no "~" window
    assert not truth["logit_~"].any()
    png = _roc_plot(spec, truth, raw, raw + 0.01)
    assert isinstance(png, str) and len(png) > 1000


def test_export_agreement_of_a_multiclass_model_is_its_argmax():
    """The export report's agreement (and the calibrator choice it keys) is one decision per window for
    a softmax model: the same argmax, not four independent sigmoid thresholds."""
    from ecgedge.contract.quantization import decisions, probabilities
    from ecgedge.quantize.validate import compare

    spec = get_spec("af_lead1")
    ref = np.array([[2.0, 1.0, -1.0, -3.0], [-2.0, -1.0, -1.5, -3.0], [0.0, 0.1, 0.0, 0.0]])
    test = np.array([[2.2, 0.8, -1.0, -3.0], [-2.0, -1.3, -1.2, -3.0], [0.0, 0.2, 0.0, 0.0]])
    np.testing.assert_array_equal(decisions(spec.outputs, ref, spec.task), np.eye(4, dtype=bool)[[0, 1, 1]])
    # window 1: sigmoid decisions (all logits < 0) would agree; its argmax moved from A to O
    assert compare(spec, ref, test)["agreement"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(probabilities(spec.outputs, ref, spec.task).sum(axis=1), 1.0)

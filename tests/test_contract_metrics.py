"""The contract's metrics, defined once: AUROC / ROC with ties, (labels, scores) order, None for one
class, the F1 family and the CinC 2017 score, Bland-Altman, record aggregation."""

import itertools

import numpy as np
import pytest

from ecgedge.contract import metrics as M
from ecgedge.errors import DataError


def test_auroc_equals_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.4
    s = np.round(rng.normal(size=60) + y, 1)  # rounding makes ties
    pos, neg = s[y], s[~y]
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p, q in itertools.product(pos, neg)]
    assert M.auroc(y, s) == pytest.approx(np.mean(pairs))
    assert M.auroc(np.ones(5), np.arange(5)) is None
    fpr, tpr, _ = M.roc_curve(y, s)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.auroc(y, s))


def test_bland_altman_bias_and_limits():
    truth = np.array([4.0, 5.0, 6.0, 7.0])
    est = truth + np.array([0.1, 0.3, 0.1, 0.3])
    ba = M.bland_altman(est, truth)
    assert ba["bias"] == pytest.approx(0.2)
    sd = np.std([0.1, 0.3, 0.1, 0.3], ddof=1)
    assert ba["loa_low"] == pytest.approx(0.2 - 1.96 * sd) and ba["loa_high"] == pytest.approx(0.2 + 1.96 * sd)


def test_classification_metrics_aggregate_windows_per_record():
    classes = ["N", "A", "O", "~"]
    # two records, two windows each; record r2's windows disagree but their mean says A
    probs = np.array([[0.9, 0.05, 0.03, 0.02], [0.8, 0.1, 0.05, 0.05],
                      [0.6, 0.3, 0.05, 0.05], [0.0, 0.9, 0.05, 0.05]])
    true = np.array([0, 0, 1, 1])
    m = M.classification_metrics(probs, true, classes, groups=np.array(["r1", "r1", "r2", "r2"]))
    assert m["records"] == 2 and m["f1_N"] == 1.0 and m["f1_A"] == 1.0 and m["f1_O"] == 0.0
    assert m["f1_challenge"] == pytest.approx(2 / 3)
    assert m["auroc_A"] == 1.0 and m["confusion"][1][1] == 1


def test_auroc_argument_order_and_one_class_answer():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert M.auroc(y, s) == pytest.approx(0.75)          # (labels, scores)
    assert M.auroc(y, -s) == pytest.approx(0.25)
    assert M.auroc([1, 1], [0.1, 0.2]) is None and M.auroc([0, 0, 0], [1, 2, 3]) is None
    with pytest.raises(DataError, match="differ in shape"):
        M.auroc([0, 1, 1], [0.5, 0.2])
    fpr, tpr, thr = M.roc_curve([1, 1, 1], [0.2, 0.5, 0.9])  # one class: the missing rate stays at 0
    assert fpr.tolist() == [0, 0, 0, 0] and tpr.tolist()[-1] == 1.0 and thr[0] == np.inf


def test_average_ranks_match_midranks():
    ranks = M.average_ranks([3.0, 1.0, 3.0, 2.0, 3.0])
    assert ranks.tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_f1_family_and_challenge_score():
    true = np.array([0, 0, 1, 1, 2, 3])
    pred = np.array([0, 1, 1, 1, 0, 3])
    f1 = M.f1_per_class(true, pred, ["N", "A", "O", "~"])
    assert f1 == pytest.approx({"N": 0.5, "A": 0.8, "O": 0.0, "~": 1.0})
    assert M.challenge_f1(f1) == pytest.approx((0.5 + 0.8 + 0.0) / 3)      # N, A, O only: not the noise class
    assert M.challenge_f1({"x": 0.2, "y": 0.4}) == pytest.approx(0.3)        # no Challenge class: all of them
    assert M.confusion(true, pred, 4)[0] == [1, 1, 0, 0]
    assert M.sqnr_db(np.ones(10), np.ones(10) * 1.1) == pytest.approx(20.0)


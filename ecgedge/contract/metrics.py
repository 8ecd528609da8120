"""Metrics, once: numpy only (the bench must run where the runtime runs, without scikit-learn).

Argument order is (labels, scores) / (true, predicted) everywhere. A metric that cannot be computed
on the data (AUROC with one class present) returns None, never NaN: None becomes JSON null in every
report, and a caller that formats it has to decide what to print.
"""

from __future__ import annotations

import math

import numpy as np

from ecgedge.errors import DataError

# Classes the PhysioNet/CinC 2017 score averages over (mean F1 of normal, AF, other rhythm).
CHALLENGE_CLASSES = ("N", "A", "O")


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise DataError(f"labels {y.shape} and scores {s.shape} differ in shape")
    return y, s


def average_ranks(values) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the mean of their ranks (as scipy.stats.rankdata)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return ((last - counts + 1 + last) / 2.0)[inverse]


def auroc(labels, scores) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties at mid-rank); None when only one class is present."""
    y, s = _labels_scores(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds) over every distinct score, thresholds
    descending, from (0, 0) (threshold +inf) to (1, 1). With one class present the missing rate stays 0."""
    y, s = _labels_scores(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.zeros(0, int)
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / max(1, int(y.sum()))]
    fpr = np.r_[0.0, fps / max(1, int((~y).sum()))]
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


def f1_per_class(true, pred, classes) -> dict[str, float]:
    """F1 of each class (one vs rest) from class indices; 0 when a class is neither true nor predicted."""
    true, pred = np.asarray(true), np.asarray(pred)
    out = {}
    for c, name in enumerate(classes):
        tp = int(np.sum((pred == c) & (true == c)))
        denom = int(np.sum(pred == c)) + int(np.sum(true == c))
        out[name] = 2.0 * tp / denom if denom else 0.0
    return out


def challenge_f1(f1: dict[str, float]) -> float:
    """The CinC 2017 score: mean F1 over N, A and O (over every class when none of them is present)."""
    scored = [c for c in CHALLENGE_CLASSES if c in f1] or list(f1)
    return float(np.mean([f1[c] for c in scored]))


def confusion(true, pred, n: int) -> list[list[int]]:
    """Counts [true class][predicted class]."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return m.tolist()


def record_probabilities(window_probs) -> np.ndarray:
    """One record's class probabilities from its windows': the normalised geometric mean (softmax of
    the mean log-probability), the aggregation af_lead1 is trained and validated with
    (ecgedge.models.train_af.aggregate_windows)."""
    logp = np.log(np.clip(np.asarray(window_probs, np.float64), 1e-300, None)).mean(axis=0)
    e = np.exp(logp - logp.max())
    return e / e.sum()


def classification_metrics(probs, true, classes, groups=None) -> dict:
    """Task metrics of a multi-class model.

    probs: [n_windows, n_classes] probabilities; true: [n_windows] class index; groups: record of each
    window — windows are then aggregated per record as the record-level task is (`record_probabilities`).
    """
    probs = np.asarray(probs, dtype=np.float64)
    true = np.asarray(true)
    if groups is not None:
        groups = np.asarray(groups)
        keys = list(dict.fromkeys(groups.tolist()))
        probs = np.stack([record_probabilities(probs[groups == g]) for g in keys])
        true = np.array([true[groups == g][0] for g in keys])
    pred = probs.argmax(axis=1)
    f1 = f1_per_class(true, pred, classes)
    out: dict = {"records": int(len(true)), "accuracy": float(np.mean(pred == true))}
    for c, v in f1.items():
        out[f"f1_{c}"] = v
    out["f1_challenge"] = challenge_f1(f1)
    for i, c in enumerate(classes):
        out[f"auroc_{c}"] = auroc(true == i, probs[:, i])
    out["confusion"] = confusion(true, pred, len(classes))
    out["classes"] = list(classes)
    return out


def bit_exact(device_q, reference_q) -> np.ndarray:
    """Per-window bool: every INT8 output equals the reference's."""
    a, b = np.asarray(device_q), np.asarray(reference_q)
    if a.shape != b.shape:
        raise DataError(f"device outputs {a.shape} vs reference {b.shape}")
    return np.all(a.astype(np.int16) == b.astype(np.int16), axis=1)


def bland_altman(estimate, truth) -> dict:
    """Bias and 95% limits of agreement of estimate - truth (Bland & Altman 1986)."""
    e = np.asarray(estimate, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    d = e - t
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
            "mae": float(np.abs(d).mean()), "n": int(len(d))}


def sqnr_db(reference, test) -> float:
    """10 log10(signal power / error power); inf when identical."""
    ref = np.asarray(reference, np.float64).ravel()
    err = ref - np.asarray(test, np.float64).ravel()
    noise = float(np.mean(err ** 2))
    signal = float(np.mean(ref ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def percentiles(values, qs=(50, 95, 99)) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": float(np.percentile(v, q)) for q in qs}


def finite_or_none(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None

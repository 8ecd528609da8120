"""Metrics the bench computes: numpy only, no sklearn (the bench must run where the runtime runs)."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None if one class only."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):  # average rank over runs of equal scores
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over every distinct threshold, from (0,0) to (1,1)."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def bit_exact(device_q: np.ndarray, reference_q: np.ndarray) -> np.ndarray:
    """Per-window bool: every INT8 output equals the reference's."""
    a, b = np.asarray(device_q), np.asarray(reference_q)
    if a.shape != b.shape:
        raise ValueError(f"device outputs {a.shape} vs reference {b.shape}")
    return np.all(a.astype(np.int16) == b.astype(np.int16), axis=1)


def bland_altman(estimate: np.ndarray, truth: np.ndarray) -> dict:
    """Bias and 95% limits of agreement of estimate - truth (Bland & Altman 1986)."""
    e = np.asarray(estimate, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    d = e - t
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
            "mae": float(np.abs(d).mean()), "n": int(len(d))}


def percentiles(values, qs=(50, 95, 99)) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": float(np.percentile(v, q)) for q in qs}


def f1_per_class(true: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, float]:
    """F1 of each class (one vs rest), 0 when a class is neither true nor predicted."""
    true, pred = np.asarray(true), np.asarray(pred)
    out = {}
    for c in range(len(classes)):
        tp = int(np.sum((pred == c) & (true == c)))
        denom = int(np.sum(pred == c)) + int(np.sum(true == c))
        out[classes[c]] = 2.0 * tp / denom if denom else 0.0
    return out


def confusion(true: np.ndarray, pred: np.ndarray, n: int) -> list[list[int]]:
    m = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(np.asarray(true), np.asarray(pred)):
        m[int(t), int(p)] += 1
    return m.tolist()


# Classes the PhysioNet/CinC 2017 score averages over (mean F1 of normal, AF, other rhythm).
CHALLENGE_CLASSES = ("N", "A", "O")


def record_probabilities(window_probs: np.ndarray) -> np.ndarray:
    """One record's class probabilities from its windows': the normalised geometric mean (softmax of
    the mean log-probability), the aggregation af_lead1 is trained and validated with
    (ecgedge.models.train_af.aggregate_windows)."""
    logp = np.log(np.clip(np.asarray(window_probs, np.float64), 1e-300, None)).mean(axis=0)
    e = np.exp(logp - logp.max())
    return e / e.sum()


def classification_metrics(probs: np.ndarray, true: np.ndarray, classes: list[str],
                           groups: np.ndarray | None = None) -> dict:
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
    scored = [c for c in CHALLENGE_CLASSES if c in classes] or list(classes)
    out["f1_challenge"] = float(np.mean([f1[c] for c in scored]))
    for i, c in enumerate(classes):
        a = auroc(true == i, probs[:, i])
        out[f"auroc_{c}"] = a
    out["confusion"] = confusion(true, pred, len(classes))
    out["classes"] = list(classes)
    return out


def finite_or_none(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None

"""Confident learning: which given labels are probably wrong, from out-of-sample probabilities.

Our own numpy implementation of the confident-joint / ``prune_by_noise_rate`` method of
Northcutt et al. (JAIR 2021), following ``cleanlab.filter.find_label_issues`` step by step so
that the two agree (``tests/test_label_issues.py`` checks it on the same probabilities):

1. per-class threshold t_j = mean predicted probability of class j over faces labelled j;
2. confident joint C[i, j] = faces labelled i whose probability for j clears t_j (argmax among
   the classes that clear), calibrated so rows sum to the label counts;
3. for each given class i and other class j, flag the C[i, j] faces labelled i with the largest
   margin p_j − p_i;
4. unflag faces whose predicted class is their given label.

Pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EPS = 1e-6


def _check(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must be 2-D (N x K), got shape {pred_probs.shape}")
    if len(labels) != len(pred_probs):
        raise ValueError(f"{len(labels)} labels but {len(pred_probs)} rows of pred_probs")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be integer class indices")
    k = pred_probs.shape[1]
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be in 0..{k - 1}")
    return labels.astype(np.int64), pred_probs


def confident_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Per-class mean self-confidence; 0.5 for a class nobody is labelled with (never used)."""
    labels, pred_probs = _check(labels, pred_probs)
    k = pred_probs.shape[1]
    out = np.full(k, 0.5)
    for j in range(k):
        mask = labels == j
        if mask.any():
            out[j] = pred_probs[mask, j].mean()
    return out


def confident_joint(
    labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True
) -> np.ndarray:
    """K x K counts: rows are given labels, columns the confidently predicted true labels."""
    labels, pred_probs = _check(labels, pred_probs)
    k = pred_probs.shape[1]
    above = pred_probs >= confident_thresholds(labels, pred_probs) - _EPS
    n_above = above.sum(axis=1)
    guess = np.where(n_above > 1, pred_probs.argmax(axis=1), above.argmax(axis=1))
    confident = n_above > 0
    cj = np.zeros((k, k), dtype=np.int64)
    np.add.at(cj, (labels[confident], guess[confident]), 1)
    np.fill_diagonal(cj, np.maximum(cj.diagonal(), 1))
    if not calibrate:
        return cj
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    cal = cj / np.clip(cj.sum(axis=1, keepdims=True), 1e-6, None) * counts[:, None]
    cal = cal / max(cal.sum(), 1e-6) * counts.sum()
    return np.array([_round_preserving_sum(row) for row in cal], dtype=np.int64)


def find_label_issues(
    labels: np.ndarray, pred_probs: np.ndarray, *, min_examples_per_class: int = 1
) -> np.ndarray:
    """Boolean mask of samples whose given label is probably wrong (prune by noise rate).

    Args:
        labels: N given labels, integers in ``0..K-1``.
        pred_probs: N x K out-of-sample probabilities (from cross-validation).
        min_examples_per_class: never flag so many that a class keeps fewer than this.
    """
    labels, pred_probs = _check(labels, pred_probs)
    k = pred_probs.shape[1]
    mask = np.zeros(len(labels), dtype=bool)
    if len(labels) == 0:
        return mask
    prune = _keep_at_least(confident_joint(labels, pred_probs).T, min_examples_per_class)
    for i in range(k):  # i: given label
        idx = np.flatnonzero(labels == i)
        if len(idx) <= min_examples_per_class:
            continue
        for j in range(k):  # j: suspected true label
            n = int(prune[j, i])
            if j == i or n <= 0:
                continue
            margin = pred_probs[idx, j] - pred_probs[idx, i]
            mask[idx[np.argsort(-margin, kind="stable")[:n]]] = True
    # A face the model itself assigns to its given label is not an issue.
    nudged = pred_probs.copy()
    nudged[np.arange(len(labels)), labels] += _EPS
    mask &= nudged.argmax(axis=1) != labels
    return mask


def _keep_at_least(prune: np.ndarray, n: int) -> np.ndarray:
    """cleanlab's ``_keep_at_least_n_per_class`` (frac_noise = 1): raise diagonals to ``n``."""
    prune = prune.astype(np.float64)
    diag = prune.diagonal().copy()
    new_diag = np.maximum(diag, n)
    per_col = np.maximum(np.count_nonzero(prune, axis=0) - 1.0, 1.0)
    out = prune - (new_diag - diag) / per_col
    out[out < 0] = 0
    np.fill_diagonal(out, new_diag)
    return out.astype(np.int64)  # truncation, as cleanlab's _reduce_prune_counts does


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Round to integers keeping the (rounded) total, adjusting the largest remainders."""
    floats = np.asarray(values, dtype=np.float64)
    ints = floats.round()
    diff = int(round(floats.sum()) - ints.sum())
    if diff:
        step = 1 if diff > 0 else -1
        order = np.argsort(floats - ints)[::-step][: abs(diff)]
        ints[order] += step
    return ints.astype(np.int64)


def issue_scores(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Probability that the given label is wrong: 1 − p(given label)."""
    labels, pred_probs = _check(labels, pred_probs)
    return 1.0 - pred_probs[np.arange(len(labels)), labels]


def decide_actions(
    flagged: np.ndarray,
    suggested_confidence: np.ndarray,
    action: str,
    relabel_threshold: float,
) -> np.ndarray:
    """Per flagged sample: ``flag``, ``exclude`` or ``relabel``.

    With ``relabel``, only samples whose suggested class has probability ≥ ``relabel_threshold``
    are relabelled; the other suspects are excluded rather than trained on with a label we
    already doubt.
    """
    if action not in ("flag", "exclude", "relabel"):
        raise ValueError(f"unknown label action {action!r}")
    out = np.full(len(flagged), "", dtype=object)
    if action == "relabel":
        sure = suggested_confidence >= relabel_threshold
        out[flagged & sure] = "relabel"
        out[flagged & ~sure] = "exclude"
    else:
        out[flagged] = action
    return out


def auditor_quality(labels: np.ndarray, pred_probs: np.ndarray, bins: int = 10) -> dict:
    """How far the auditor's out-of-sample probabilities can be trusted, against given labels.

    ``accuracy`` (argmax vs the given label, which is itself noisy: a floor, not the truth),
    ``majority`` (the accuracy of always answering the most common label), and ``ece``
    (expected calibration error of the top probability over ``bins`` equal-width bins).
    """
    labels, pred_probs = _check(labels, pred_probs)
    if len(labels) == 0:
        return {"n": 0, "accuracy": 0.0, "majority": 0.0, "ece": 1.0}
    top = pred_probs.max(axis=1)
    hit = (pred_probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1]), 0, bins - 1)
    ece = sum(
        abs(hit[which == b].mean() - top[which == b].mean()) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    )
    return {
        "n": len(labels),
        "accuracy": round(float(hit.mean()), 4),
        "majority": round(float(np.bincount(labels).max() / len(labels)), 4),
        "ece": round(float(ece), 4),
    }


def distrust_reason(quality: dict, *, min_accuracy: float, max_ece: float) -> str:
    """Why the auditor is too weak to drop data on its word ("" when it is trusted)."""
    if quality["accuracy"] < min_accuracy:
        return (
            f"auditor accuracy {quality['accuracy']:.3f} < validate.min_auditor_accuracy "
            f"{min_accuracy:g}"
        )
    if quality["accuracy"] <= quality["majority"]:
        return (
            f"auditor accuracy {quality['accuracy']:.3f} is no better than always answering "
            f"the most common label ({quality['majority']:.3f})"
        )
    if quality["ece"] > max_ece:
        ece = quality["ece"]
        return f"auditor calibration error {ece:.3f} > validate.max_auditor_ece {max_ece:g}"
    return ""


def cap_actions(actions: np.ndarray, scores: np.ndarray, max_count: int) -> tuple[np.ndarray, int]:
    """Keep at most ``max_count`` samples dropped or relabelled: those with the highest scores.

    The others are only flagged. Returns the new actions and how many were downgraded.
    """
    out = np.asarray(actions, dtype=object).copy()
    acting = np.flatnonzero(np.isin(out, ["exclude", "relabel"]))
    if len(acting) <= max_count:
        return out, 0
    order = acting[np.argsort(-np.asarray(scores)[acting], kind="stable")]
    out[order[max_count:]] = "flag"
    return out, int(len(acting) - max_count)


def precision_recall_f1(predicted: Sequence[bool], truth: Sequence[bool]) -> dict[str, float]:
    """Precision, recall and F1 of a boolean detection against truth (0 when undefined)."""
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "support": int(t.sum()),
    }

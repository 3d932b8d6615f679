"""Localization scores: image-level and box-level precision / recall / F1.

The original project's formulas: precision = TP / predicted positive, recall = TP / actual
positive, F1 = 2PR / (P + R). Any ratio whose denominator is zero is defined as 0.0 (nothing
predicted → precision 0; nothing to find → recall 0; P + R = 0 → F1 0), like scikit-learn's
``zero_division=0``, so the scores are always plain floats that JSON and DVC accept.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = Sequence[float]  # x, y, w, h


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def image_level_prf(
    truth_has_face: Sequence[bool], pred_has_face: Sequence[bool]
) -> dict[str, float | int]:
    """Scores of "this image has a face" (positive) over paired per-image flags."""
    if len(truth_has_face) != len(pred_has_face):
        raise ValueError(
            f"truth and prediction lengths differ ({len(truth_has_face)} vs {len(pred_has_face)})"
        )
    tp = fp = fn = tn = 0
    for truth, pred in zip(truth_has_face, pred_has_face, strict=True):
        if truth and pred:
            tp += 1
        elif pred:
            fp += 1
        elif truth:
            fn += 1
        else:
            tn += 1
    return {**_prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0.0 when both are empty)."""
    ax, ay, aw, ah = (float(v) for v in a[:4])
    bx, by, bw, bh = (float(v) for v in b[:4])
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    inter = max(0.0, iw) * max(0.0, ih)
    union = max(0.0, aw) * max(0.0, ah) + max(0.0, bw) * max(0.0, bh) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    truth: Sequence[Box], pred: Sequence[Box], iou_threshold: float = 0.5
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching: highest-IoU pairs first, each box used at most once.

    Returns ``(truth_index, pred_index, iou)`` for pairs with IoU ≥ ``iou_threshold``.
    """
    pairs = [(iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(pred)]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    used_t: set[int] = set()
    used_p: set[int] = set()
    out: list[tuple[int, int, float]] = []
    for value, i, j in pairs:
        if value < iou_threshold or value <= 0.0:
            break
        if i in used_t or j in used_p:
            continue
        used_t.add(i)
        used_p.add(j)
        out.append((i, j, value))
    return out


def box_level_prf(
    truth_boxes: Sequence[Sequence[Box]],
    pred_boxes: Sequence[Sequence[Box]],
    iou_threshold: float = 0.5,
) -> dict[str, float | int]:
    """Scores of individual boxes: a prediction is a TP when matched to a truth box per image.

    ``truth_boxes[i]`` and ``pred_boxes[i]`` are the boxes of image ``i``.
    """
    if len(truth_boxes) != len(pred_boxes):
        raise ValueError(
            f"truth and prediction image counts differ ({len(truth_boxes)} vs {len(pred_boxes)})"
        )
    tp = fp = fn = 0
    for truth, pred in zip(truth_boxes, pred_boxes, strict=True):
        matched = len(match_boxes(truth, pred, iou_threshold))
        tp += matched
        fp += len(pred) - matched
        fn += len(truth) - matched
    return {**_prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn}


def drop_ignored(
    truth: Sequence[Box],
    ignore: Sequence[Box],
    pred: Sequence[Box],
    iou_threshold: float = 0.5,
) -> list[int]:
    """Indices of the predictions that count, given regions that are neither required nor wrong.

    A prediction matched to a truth box (see :func:`match_boxes`) always counts; an unmatched
    one that overlaps an ``ignore`` box (a face too small to require, say) with IoU ≥
    ``iou_threshold`` is left out of scoring instead of being a false positive.
    """
    matched = {j for _, j, _ in match_boxes(truth, pred, iou_threshold)}
    return [
        j
        for j, p in enumerate(pred)
        if j in matched or not any(iou(p, g) >= iou_threshold for g in ignore)
    ]

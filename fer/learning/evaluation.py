"""Classification metrics and report figures: arrays in, numbers and matplotlib figures out.

Metrics follow scikit-learn's definitions (tested against it): per-class precision, recall and
F1 with 0 where a denominator is 0; macro-F1 averages the classes present in either the truth
or the predictions (sklearn's default label set). Figures use ``matplotlib.figure.Figure``
directly, never pyplot, so no GUI backend or global state is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int = 3) -> np.ndarray:
    """Confusion counts: rows are actual classes, columns predicted."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    precision = _div(tp, cm.sum(axis=0))
    recall = _div(tp, cm.sum(axis=1))
    f1 = _div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1)}


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int = 3) -> float:
    """Mean F1 over classes that occur in the truth or the predictions (0.0 when empty)."""
    cm = confusion(y_true, y_pred, num_classes)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    if not present.any():
        return 0.0
    return float(per_class(cm)["f1"][present].mean())


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of equal entries (0.0 when empty)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float((t == p).mean()) if t.size else 0.0


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str] = CLASSES
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix, JSON-ready."""
    k = len(classes)
    cm = confusion(y_true, y_pred, k)
    pc = per_class(cm)
    return {
        "n": int(cm.sum()),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, k),
        "per_class": {
            c: {
                "precision": float(pc["precision"][i]),
                "recall": float(pc["recall"][i]),
                "f1": float(pc["f1"][i]),
                "support": int(pc["support"][i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion": cm.tolist(),
    }


def worst_mistakes(y_true: Sequence[int], probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of up to ``k`` misclassified rows, most confident mistakes first.

    "Worst" = lowest probability given to the actual class; these are where label noise and
    real model errors show most clearly.
    """
    t = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs)
    if t.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    wrong = np.flatnonzero(probs.argmax(axis=1) != t)
    p_true = probs[wrong, t[wrong]]
    return wrong[np.argsort(p_true, kind="stable")[:k]]


def confusion_figure(cm: np.ndarray, classes: Sequence[str] = CLASSES, title: str = "") -> Figure:
    """Confusion matrix heat map with counts and row-normalised percentages."""
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = Figure(figsize=(4.2, 3.8), dpi=120)
    ax = fig.add_subplot()
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center",
                color="white" if frac[i, j] > 0.5 else "black", fontsize=9,
            )  # fmt: skip
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return fig


def curves_figure(history: Any) -> Figure:
    """Loss and accuracy/macro-F1 per epoch from a history table (columns of ``history.csv``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    ep = history["epoch"]
    ax1.plot(ep, history["train_loss"], label="train")
    ax1.plot(ep, history["val_loss"], label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(ep, history["train_acc"], label="train acc")
    ax2.plot(ep, history["val_acc"], label="val acc")
    ax2.plot(ep, history["val_macro_f1"], label="val macro-F1")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    return fig


def mistakes_figure(
    images: np.ndarray,
    actual: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
    cols: int = 6,
) -> Figure:
    """A gallery of crops titled ``actual → predicted (p)``; an empty gallery says so."""
    from matplotlib.figure import Figure

    n = len(images)
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cols * 1.5, rows * 1.7), dpi=100)
    if n == 0:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        return fig
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i])
            ax.set_title(f"{actual[i]}→{predicted[i]}\n{confidence[i]:.2f}", fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Any) -> None:
    """Write a figure atomically (PNG by the path's suffix)."""
    from fer.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp)

"""Metrics against scikit-learn, worst-mistake ranking, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from fer.learning.evaluation import (
    classification_report,
    confusion,
    confusion_figure,
    curves_figure,
    macro_f1,
    mistakes_figure,
    save_figure,
    worst_mistakes,
)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y = rng.integers(0, 3, n)
    # Some seeds leave a class out of the predictions or the truth: zero-division paths.
    p = rng.integers(0, 2 if seed % 2 else 3, n)
    report = classification_report(y, p)
    assert report["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert report["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert macro_f1(y, p) == pytest.approx(report["macro_f1"])
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=[0, 1, 2], zero_division=0)
    for i, cls in enumerate(("positive", "negative", "neutral")):
        assert report["per_class"][cls]["precision"] == pytest.approx(prec[i])
        assert report["per_class"][cls]["recall"] == pytest.approx(rec[i])
        assert report["per_class"][cls]["f1"] == pytest.approx(f1[i])
        assert report["per_class"][cls]["support"] == sup[i]
    assert np.array_equal(confusion(y, p), confusion_matrix(y, p, labels=[0, 1, 2]))


def test_confusion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        confusion([0, 1], [0])
    with pytest.raises(ValueError, match="labels"):
        confusion([0, 3], [0, 1])
    assert classification_report([], [])["accuracy"] == 0.0


def test_worst_mistakes_ranks_confident_errors_first() -> None:
    y = np.array([0, 1, 2, 0])
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.05, 0.9, 0.05], [0.4, 0.5, 0.1]]
    )  # rows 1, 2, 3 are wrong; row 2 gives its true class 0.05
    assert worst_mistakes(y, probs, 10).tolist() == [2, 1, 3]
    assert worst_mistakes(y, probs, 1).tolist() == [2]
    assert worst_mistakes(y, probs, 0).size == 0


def test_figures_render_to_png(tmp_path: Path) -> None:
    import pandas as pd

    save_figure(confusion_figure(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])), tmp_path / "c.png")
    hist = pd.DataFrame(
        {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
         "train_acc": [0.5, 0.8], "val_acc": [0.4, 0.7], "val_macro_f1": [0.3, 0.6]}
    )  # fmt: skip
    save_figure(curves_figure(hist), tmp_path / "h.png")
    crops = np.zeros((3, 64, 64, 3), np.uint8)
    save_figure(mistakes_figure(crops, ["a"] * 3, ["b"] * 3, [0.9, 0.8, 0.7]), tmp_path / "m.png")
    save_figure(mistakes_figure(crops[:0], [], [], []), tmp_path / "empty.png")
    for name in ("c.png", "h.png", "m.png", "empty.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_per_expression_and_without_some() -> None:
    """FER2013's surprise lands in one folder (awe); its valence is ambiguous, so the README
    reports accuracy with and without it."""
    import pandas as pd

    from fer.stages.evaluate import TestPredictions, by_expression

    table = pd.DataFrame({"expression": ["happy", "happy", "awe", "calm"]})
    y = np.array([0, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 0, 2]]  # one happy wrong, awe wrong, calm right
    test = TestPredictions(table, np.zeros((4, 2, 2, 3), np.uint8), y, probs, skipped=0)
    out = by_expression(test, ["awe"])
    assert out["per_expression"]["happy"] == {"n": 2, "accuracy": 0.5}
    assert out["per_expression"]["awe"]["accuracy"] == 0.0
    assert out["n_without"] == 3 and out["accuracy_without"] == pytest.approx(2 / 3)
    assert "accuracy_without" not in by_expression(test, [])


def test_test_time_flip_averages_the_mirror() -> None:
    import torch

    from fer.learning.training import softmax_tta

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    x = torch.rand(2, 3, 4, 4)
    plain = torch.softmax(net(x), 1)
    mirrored = torch.softmax(net(torch.flip(x, dims=[3])), 1)
    assert torch.allclose(softmax_tta(net, x, True), (plain + mirrored) / 2)
    assert torch.allclose(softmax_tta(net, x, False), plain)


def test_shifted_views_move_the_face_and_repeat_its_edges() -> None:
    import torch

    from fer.learning.training import shifted_views

    x = torch.arange(2 * 3 * 25, dtype=torch.float32).reshape(2, 3, 5, 5)
    assert len(shifted_views(x, 0.05)) == 1  # round(0.25) px: no move
    views = shifted_views(x, 0.2)  # 1 px of 5
    assert len(views) == 5 and views[0] is x
    assert all(v.shape == x.shape for v in views)
    moved = {tuple(v[0, 0, 2].tolist()) for v in views[1:]}
    row = x[0, 0, 2].tolist()
    assert tuple(row[1:] + row[-1:]) in moved  # content moved left, right edge repeated
    assert tuple(row[:1] + row[:-1]) in moved  # moved right, left edge repeated
    column = x[0, 0, :, 2].tolist()
    cols = {tuple(v[0, 0, :, 2].tolist()) for v in views[1:]}
    assert tuple(column[1:] + column[-1:]) in cols and tuple(column[:1] + column[:-1]) in cols


def test_test_time_shift_averages_every_view_and_its_mirror() -> None:
    import torch

    from fer.learning.training import shifted_views, softmax_tta

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    x = torch.rand(2, 3, 8, 8)
    views = shifted_views(x, 0.125)
    assert len(views) == 5

    def both(v: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(net(v), 1) + torch.softmax(net(torch.flip(v, dims=[3])), 1)) / 2

    expected = torch.stack([both(v) for v in views]).mean(0)
    assert torch.allclose(softmax_tta(net, x, True, 0.125), expected, atol=1e-6)
    plain = torch.stack([torch.softmax(net(v), 1) for v in views]).mean(0)
    assert torch.allclose(softmax_tta(net, x, False, 0.125), plain, atol=1e-6)
    assert not torch.allclose(plain, torch.softmax(net(x), 1), atol=1e-3)  # the views differ

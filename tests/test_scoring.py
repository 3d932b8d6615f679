"""Localization scores against hand-made truth, exact numbers."""

from __future__ import annotations

import pytest

from fer.faces.scoring import box_level_prf, image_level_prf, iou, match_boxes


def test_iou_exact() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_image_level_counts_and_formulas() -> None:
    truth = [True, True, True, False, False, True]
    pred = [True, True, False, True, False, True]
    s = image_level_prf(truth, pred)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (3, 1, 1, 1)
    assert s["precision"] == 0.75 and s["recall"] == 0.75 and s["f1"] == 0.75


def test_image_level_zero_division_is_zero() -> None:
    s = image_level_prf([False, False], [False, False])
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0 and s["tn"] == 2
    s = image_level_prf([True], [False])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="lengths differ"):
        image_level_prf([True], [])


def test_box_level_greedy_one_to_one() -> None:
    truth = [
        [(0, 0, 10, 10), (20, 0, 10, 10)],  # two faces
        [(0, 0, 10, 10)],
        [],  # no face
    ]
    pred = [
        [(1, 0, 10, 10), (0, 1, 10, 10), (21, 0, 10, 10)],  # two match box 0; one is extra
        [(50, 50, 10, 10)],  # wrong place
        [(0, 0, 5, 5)],  # false alarm
    ]
    s = box_level_prf(truth, pred, iou_threshold=0.5)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 3, 1)
    assert s["precision"] == pytest.approx(2 / 5)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))


def test_greedy_prefers_the_highest_iou_pair() -> None:
    truth = [(0, 0, 10, 10), (4, 0, 10, 10)]
    pred = [(3, 0, 10, 10)]  # IoU 0.538 with truth 0, 0.818 with truth 1
    assert match_boxes(truth, pred, 0.5) == [(1, 0, pytest.approx(90 / 110))]


def test_threshold_is_inclusive_and_respected() -> None:
    truth, pred = [[(0, 0, 10, 10)]], [[(5, 0, 10, 10)]]  # IoU 1/3
    assert box_level_prf(truth, pred, 0.5)["tp"] == 0
    assert box_level_prf(truth, pred, 1 / 3)["tp"] == 1

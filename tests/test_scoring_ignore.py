"""``drop_ignored``: predictions on faces too small to require are neither hits nor misses."""

from __future__ import annotations

from fer.faces.scoring import box_level_prf, drop_ignored


def test_matched_predictions_always_count() -> None:
    truth = [(0, 0, 50, 50)]
    ignore = [(0, 0, 50, 50)]  # even when an ignore box sits on the same face
    assert drop_ignored(truth, ignore, [(2, 2, 50, 50)]) == [0]


def test_prediction_on_an_ignored_face_is_left_out() -> None:
    truth = [(0, 0, 50, 50)]
    ignore = [(200, 200, 12, 12)]
    pred = [(1, 1, 50, 50), (201, 200, 12, 12), (400, 400, 40, 40)]
    kept = drop_ignored(truth, ignore, pred)
    assert kept == [0, 2]  # the tiny face is skipped, the box on nothing stays a false positive
    scores = box_level_prf([truth], [[pred[i] for i in kept]])
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 0)


def test_threshold_applies_to_ignore_regions_too() -> None:
    ignore = [(0, 0, 20, 20)]
    half = [(0, 0, 20, 40)]  # IoU 0.5 with the ignore box
    assert drop_ignored([], ignore, half, iou_threshold=0.5) == []
    assert drop_ignored([], ignore, half, iou_threshold=0.6) == [0]
    assert drop_ignored([], [], half) == [0]

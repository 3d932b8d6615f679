"""Confident learning (ours vs cleanlab) and the K-fold model finding injected label flips."""

from __future__ import annotations

import numpy as np
import pytest

from fer.validation import cv_model
from fer.validation import label_issues as li
from tests.shapes import shape_crops


def noisy_probs(n: int, k: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Given labels with ``noise`` flips and imperfect probabilities peaked on the true class."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    given = true.copy()
    flip = rng.random(n) < noise
    given[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    alpha = np.ones((n, k))
    alpha[np.arange(n), true] = rng.uniform(2, 12, n)
    probs = np.vstack([rng.dirichlet(a) for a in alpha])
    return given, probs


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.mark.parametrize(("k", "noise", "seed"), [(3, 0.1, 0), (3, 0.2, 1), (5, 0.3, 2)])
def test_matches_cleanlab_on_same_probabilities(k: int, noise: float, seed: int) -> None:
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import find_label_issues

    labels, probs = noisy_probs(2000, k, noise, seed)
    np.testing.assert_array_equal(
        li.confident_joint(labels, probs), compute_confident_joint(labels, probs)
    )
    ours = li.find_label_issues(labels, probs)
    theirs = find_label_issues(labels, probs, n_jobs=1)
    assert ours.sum() > 0
    assert jaccard(ours, theirs) >= 0.9


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels but"):
        li.find_label_issues(np.array([0, 1]), np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match=r"in 0\.\.1"):
        li.find_label_issues(np.array([0, 2]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="2-D"):
        li.find_label_issues(np.array([0]), np.array([0.5, 0.5]))


def test_clean_confident_labels_are_not_flagged() -> None:
    labels = np.repeat([0, 1, 2], 50)
    probs = np.full((150, 3), 0.05)
    probs[np.arange(150), labels] = 0.9
    assert not li.find_label_issues(labels, probs).any()


def test_decide_actions_and_scores() -> None:
    flagged = np.array([True, True, False])
    conf = np.array([0.95, 0.6, 0.99])
    assert list(li.decide_actions(flagged, conf, "flag", 0.9)) == ["flag", "flag", ""]
    assert list(li.decide_actions(flagged, conf, "relabel", 0.9)) == ["relabel", "exclude", ""]
    probs = np.array([[0.2, 0.8], [0.7, 0.3]])
    np.testing.assert_allclose(li.issue_scores(np.array([0, 0]), probs), [0.8, 0.3])
    m = li.precision_recall_f1([True, True, False, False], [True, False, True, False])
    assert (m["precision"], m["recall"], m["tp"], m["fp"], m["fn"]) == (0.5, 0.5, 1, 1, 1)


def test_kfold_model_finds_injected_flips() -> None:
    images, true = shape_crops(300, seed=0)
    rng = np.random.default_rng(1)
    flipped = rng.permutation(300)[:30]  # 10 % label noise
    given = true.copy()
    given[flipped] = (true[flipped] + rng.integers(1, 3, 30)) % 3
    settings = cv_model.CVSettings(folds=5, epochs=12, seed=0, input_size=32, width=16)
    probs = cv_model.out_of_fold_probs(images, given, 3, settings)
    assert probs.shape == (300, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    flagged = li.find_label_issues(given, probs)
    truth = np.zeros(300, dtype=bool)
    truth[flipped] = True
    m = li.precision_recall_f1(flagged, truth)
    assert m["recall"] >= 0.8, m
    assert m["precision"] >= 0.8, m


def test_kfold_is_deterministic_and_respects_groups() -> None:
    images, labels = shape_crops(60, seed=3)
    groups = [f"img{i // 2}" for i in range(60)]  # pairs of faces from one image
    folds = cv_model.fold_indices(labels, groups, 3, seed=0)
    fold_of = {int(i): k for k, part in enumerate(folds) for i in part}
    assert all(fold_of[2 * j] == fold_of[2 * j + 1] for j in range(30))
    settings = cv_model.CVSettings(folds=3, epochs=1, seed=0, width=8, min_steps=10)
    a = cv_model.out_of_fold_probs(images, labels, 3, settings, groups=groups)
    b = cv_model.out_of_fold_probs(images, labels, 3, settings, groups=groups)
    np.testing.assert_array_equal(a, b)


def test_auditor_quality_and_trust() -> None:
    from fer.validation.label_issues import auditor_quality, distrust_reason

    labels = np.array([0, 0, 1, 1, 2, 2, 0, 0])
    sharp = np.eye(3)[labels] * 0.9 + 0.1 / 3  # right and confident
    good = auditor_quality(labels, sharp)
    assert good["accuracy"] == 1.0 and good["majority"] == 0.5 and good["ece"] < 0.1
    assert distrust_reason(good, min_accuracy=0.6, max_ece=0.15) == ""
    flat = np.full((8, 3), 1 / 3)  # says nothing: argmax is class 0, the majority
    weak = auditor_quality(labels, flat)
    assert weak["accuracy"] == weak["majority"] == 0.5
    assert "min_auditor_accuracy" in distrust_reason(weak, min_accuracy=0.5 + 1e-9, max_ece=1)
    assert "most common label" in distrust_reason(weak, min_accuracy=0.0, max_ece=1)
    overconfident = np.eye(3)[(labels + 1) % 3] * 0.98 + 0.01  # confidently wrong
    bad = auditor_quality(labels, overconfident)
    assert bad["ece"] > 0.9


def test_cap_keeps_only_the_most_suspect() -> None:
    from fer.validation.label_issues import cap_actions

    actions = np.array(["exclude", "", "exclude", "relabel", "exclude"], dtype=object)
    scores = np.array([0.9, 0.99, 0.5, 0.8, 0.7])
    capped, n = cap_actions(actions, scores, max_count=2)
    assert n == 2
    assert list(capped) == ["exclude", "", "flag", "relabel", "flag"]
    same, none = cap_actions(actions, scores, max_count=10)
    assert none == 0 and list(same) == list(actions)

"""Label auditing: which given labels look wrong, and what to do about each.

Out-of-sample class probabilities (a K-fold small CNN, a pretrained real-face teacher, or a
blend: ``validate.teacher``/``teacher_weight``), then confident learning
(:mod:`fer.validation.label_issues`). The auditor's own accuracy and calibration decide whether
its verdicts may drop data (a weak one only flags), and at most ``max_exclude_fraction`` of the
faces are dropped or relabelled. Reads the crops it is handed; writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES
from fer.progress import bar

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import Config

ISSUE_COLUMNS = [
    "face_id", "path", "given_label", "suggested_label", "score", "action",
    *(f"p_{c}" for c in CLASSES),
]  # fmt: skip


def empty_issues() -> pd.DataFrame:
    """A ``label_issues.csv`` table with no rows."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=object) for c in ISSUE_COLUMNS})


def find_issues(
    cfg: Config,
    faces: pd.DataFrame,
    crops: np.ndarray,
    readable: np.ndarray,
    q: pd.DataFrame,
    dups: pd.DataFrame,
    notes: list[str],
    teacher: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Out-of-sample probabilities + confident learning over every usable face.

    Returns the flagged faces (``label_issues.csv``), every scored face with its flag, and the
    auditor's report (its accuracy and calibration, and what was done about a weak auditor or
    a hit cap). A weak auditor only flags; at most ``max_exclude_fraction`` of the faces are
    dropped or relabelled.
    """
    from fer.validation import label_issues as li

    v = cfg.validate_
    scored = _usable_faces(faces, readable, set(q["path"]))
    if len(scored) < 2 * v.folds or scored["label"].nunique() < 2:
        scored["flagged"] = False
        return empty_issues(), scored, {}
    labels = np.array([CLASSES.index(c) for c in scored["label"]])
    probs = _audit_probs(
        cfg, crops[scored["row"].to_numpy()], labels, scored, faces, dups, teacher
    )
    quality = li.auditor_quality(labels, probs)
    flagged = li.find_label_issues(labels, probs)
    actions, report = _decide_actions(v, labels, probs, flagged, quality, notes)
    scored["flagged"] = flagged
    issues = _issue_table(scored, labels, probs, actions)[flagged]
    issues = issues.sort_values(["score", "face_id"], ascending=[False, True])
    return issues.reset_index(drop=True), scored, report


def _usable_faces(
    faces: pd.DataFrame, readable: np.ndarray, quarantined: set[str]
) -> pd.DataFrame:
    """Faces the auditor scores: readable, not quarantined, with a known label (``row``: index
    into ``faces``)."""
    usable = np.array(
        [
            (p not in quarantined) and ok and (lab in CLASSES)
            for p, ok, lab in zip(faces["path"], readable, faces["label"], strict=True)
        ],
        dtype=bool,
    )
    scored = faces.loc[usable, ["face_id", "image_id", "path", "label"]]
    return scored.assign(row=np.flatnonzero(usable)).reset_index(drop=True)


def _audit_probs(
    cfg: Config,
    small: np.ndarray,
    labels: np.ndarray,
    scored: pd.DataFrame,
    faces: pd.DataFrame,
    dups: pd.DataFrame,
    teacher_probs: Callable[[list[str]], np.ndarray] | None,
) -> np.ndarray:
    """The auditor's probabilities: the K-fold model's, a pretrained teacher's, or a blend.

    ``validate.teacher`` names a packaged real-face model whose zero-shot probabilities (its
    emotions pooled into our classes) weigh ``teacher_weight`` against the K-fold model's
    out-of-fold ones; at weight 1 the K-fold pass is skipped.
    """
    v = cfg.validate_
    if v.teacher == "none" or v.teacher_weight < 1:
        kfold = _out_of_fold_probs(cfg, small, labels, scored, dups)
    if v.teacher == "none":
        return kfold
    if teacher_probs is None:
        raise ValueError("validate.teacher is set but no teacher was given")
    teacher = teacher_probs(faces["crop_path"].iloc[scored["row"]].tolist())
    if v.teacher_weight >= 1:
        return teacher
    return (1 - v.teacher_weight) * kfold + v.teacher_weight * teacher


def _out_of_fold_probs(
    cfg: Config, crops: np.ndarray, labels: np.ndarray, scored: pd.DataFrame, dups: pd.DataFrame
) -> np.ndarray:
    """K-fold small-CNN probabilities, each face predicted by a model that never saw it (nor
    its duplicates)."""
    from fer.validation import cv_model

    v = cfg.validate_
    group_of = dict(zip(dups["path"], dups["group"], strict=False))
    groups = [group_of.get(p, i) for p, i in zip(scored["path"], scored["image_id"], strict=True)]
    settings = cv_model.CVSettings(
        folds=v.folds, epochs=v.cv_epochs, seed=v.seed, input_size=v.cv_input_size
    )
    with bar(total=v.folds, desc="K-fold label check", unit="fold") as progress:
        return cv_model.out_of_fold_probs(
            crops, labels, len(CLASSES), settings, groups=groups,
            on_fold=lambda done, total: progress.update(1),
        )  # fmt: skip


def _decide_actions(
    v: Any,
    labels: np.ndarray,
    probs: np.ndarray,
    flagged: np.ndarray,
    quality: dict[str, Any],
    notes: list[str],
) -> tuple[np.ndarray, dict[str, Any]]:
    """``label_action`` for the flagged faces, unless the auditor is too weak or the cap hit."""
    from fer.validation import label_issues as li

    distrust = li.distrust_reason(
        quality, min_accuracy=v.min_auditor_accuracy, max_ece=v.max_auditor_ece
    )
    action = "flag" if distrust else v.label_action
    if distrust and v.label_action != "flag":
        notes.append(f"label issues only flagged, not {v.label_action}d: {distrust}")
    suggested = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), suggested]
    actions = li.decide_actions(flagged, confidence, action, v.relabel_threshold)
    limit = int(v.max_exclude_fraction * len(labels))
    actions, capped = li.cap_actions(actions, li.issue_scores(labels, probs), limit)
    if capped:
        notes.append(
            f"validate.max_exclude_fraction {v.max_exclude_fraction:g} reached: {capped} more "
            f"suspect face(s) only flagged (at most {limit} of {len(labels)} acted on)"
        )
    report = {
        **quality,
        "trusted": not distrust,
        "action": action,
        "flagged": int(flagged.sum()),
        "flagged_fraction": round(float(flagged.mean()), 4),
        "acted_on": int(np.isin(actions, ["exclude", "relabel"]).sum()),
        "capped": capped,
    }
    return actions, report


def _issue_table(
    scored: pd.DataFrame, labels: np.ndarray, probs: np.ndarray, actions: np.ndarray
) -> pd.DataFrame:
    """One row per scored face: the suggestion, its score, the action and the probabilities."""
    import pandas as pd

    from fer.validation import label_issues as li

    return pd.DataFrame(
        {
            "face_id": scored["face_id"],
            "path": scored["path"],
            "given_label": scored["label"],
            "suggested_label": [CLASSES[k] for k in probs.argmax(axis=1)],
            "score": np.round(li.issue_scores(labels, probs), 6),
            "action": actions,
            **{f"p_{c}": np.round(probs[:, k], 4) for k, c in enumerate(CLASSES)},
        }
    )

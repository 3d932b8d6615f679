"""The review list: every flagged face or image as one row of a table, grouped by reason.

Groups (``GROUPS``): ``label_issue`` (a face from ``label_issues.csv``), ``no_face`` and
``quarantine`` (images from ``quarantine.csv``; ``no_face`` has its own group), ``multi_face``
(each face of an image with several) and ``duplicate`` (the faces, or the image when it has
none, of each image in ``duplicates.csv``). A face may sit in several groups; the ``all`` view
lists it once. Pure: tables in, tables out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fer import CLASSES

if TYPE_CHECKING:
    import pandas as pd

GROUPS: dict[str, str] = {
    "label_issue": "Label issues",
    "no_face": "No face",
    "multi_face": "Multi-face",
    "duplicate": "Duplicates",
    "quarantine": "Other quarantine",
}
SORTS: dict[str, str] = {
    "confidence": "confidence, high first",
    "confidence_asc": "confidence, low first",
    "path": "path",
}
ITEM_COLUMNS = [
    "item", "group", "kind", "face_id", "image_id", "path", "box", "given_label",
    "suggested_label", "confidence", "reason", "probs",
]  # fmt: skip
PROB_PREFIX = "p_"
"""``label_issues.csv`` may carry per-class out-of-fold probabilities as ``p_<class>``."""


@dataclass(frozen=True)
class Query:
    """What one page shows."""

    group: str = "all"
    cls: str = ""
    sort: str = "confidence"
    todo: bool = False
    page: int = 1
    size: int = 48


def image_item_key(path: str) -> str:
    """Key of an image card: stable per path (an image has no face_id)."""
    return "img_" + hashlib.sha1(path.encode("utf-8")).hexdigest()[:12]


def _face_rows(faces: pd.DataFrame, group: str, reason: pd.Series | str) -> pd.DataFrame:
    import pandas as pd

    box = [
        (int(x), int(y), int(w), int(h))
        for x, y, w, h in zip(faces["x"], faces["y"], faces["w"], faces["h"], strict=True)
    ]
    return pd.DataFrame(
        {
            "item": faces["face_id"].to_numpy(),
            "group": group,
            "kind": "face",
            "face_id": faces["face_id"].to_numpy(),
            "image_id": faces["image_id"].to_numpy(),
            "path": faces["path"].to_numpy(),
            "box": box,
            "given_label": faces["label"].to_numpy(),
            "suggested_label": "",
            "confidence": faces["score"].astype(float).to_numpy(),
            "reason": reason if isinstance(reason, str) else reason.to_numpy(),
            "probs": None,
        }
    )


def _image_rows(rows: pd.DataFrame, group: str, labels: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "item": [image_item_key(p) for p in rows["path"]],
            "group": group,
            "kind": "image",
            "face_id": "",
            "image_id": rows["image_id"].to_numpy(),
            "path": rows["path"].to_numpy(),
            "box": None,
            "given_label": [labels.get(p, "") for p in rows["path"]],
            "suggested_label": "",
            "confidence": float("nan"),
            "reason": rows["reason"].to_numpy(),
            "probs": None,
        }
    )


def _label_issue_rows(faces: pd.DataFrame, issues: pd.DataFrame) -> pd.DataFrame:
    merged = issues.merge(faces, on="face_id", how="inner", suffixes=("_issue", ""))
    reason = "label issue (validate: " + merged["action"] + ")"
    rows = _face_rows(merged, "label_issue", reason)
    rows["suggested_label"] = merged["suggested_label"].to_numpy()
    rows["confidence"] = merged["score_issue"].astype(float).to_numpy()
    prob_cols = [f"{PROB_PREFIX}{c}" for c in CLASSES]
    if all(c in merged.columns for c in prob_cols):
        values = merged[prob_cols].astype(float).to_numpy()
        rows["probs"] = [dict(zip(CLASSES, map(float, v), strict=True)) for v in values]
    return rows


def build_items(
    manifest: pd.DataFrame,
    faces: pd.DataFrame,
    quarantine: pd.DataFrame,
    issues: pd.DataFrame,
    duplicates: pd.DataFrame,
) -> pd.DataFrame:
    """One row per (group, face or image); columns ``ITEM_COLUMNS``.

    Args:
        manifest: ``manifest.parquet`` (for the labels of images without faces).
        faces: ``faces.parquet``.
        quarantine, issues, duplicates: validation's CSVs.
    """
    import pandas as pd

    labels = dict(zip(manifest["path"], manifest["label"], strict=False))
    parts = [_label_issue_rows(faces, issues)]
    is_no_face = quarantine["reason"] == "no_face"
    parts.append(_image_rows(quarantine[is_no_face], "no_face", labels))
    parts.append(_image_rows(quarantine[~is_no_face], "quarantine", labels))
    multi = faces[faces["n_faces"].astype(int) > 1]
    parts.append(_face_rows(multi, "multi_face", multi["n_faces"].astype(str) + " faces in image"))
    if len(duplicates):
        dup = duplicates.astype(str)
        why = "duplicate (" + dup["kind"] + ", group " + dup["group"] + ")"
        reason_of = dict(zip(dup["path"], why, strict=False))
        dup_faces = faces[faces["path"].isin(set(dup["path"]))]
        parts.append(_face_rows(dup_faces, "duplicate", dup_faces["path"].map(reason_of)))
        lone = ~dup["path"].isin(set(faces["path"]))
        parts.append(_image_rows(dup[lone].assign(reason=why[lone]), "duplicate", labels))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ITEM_COLUMNS})
    items = pd.concat(parts, ignore_index=True)[ITEM_COLUMNS]
    return items.drop_duplicates(["group", "item"]).reset_index(drop=True)


def group_counts(items: pd.DataFrame) -> dict[str, int]:
    """Items per group (every group listed), plus ``all`` (distinct items)."""
    counts = {g: int((items["group"] == g).sum()) for g in GROUPS}
    return {"all": int(items["item"].nunique()), **counts}


def select(items: pd.DataFrame, q: Query, decided: set[str]) -> tuple[pd.DataFrame, int]:
    """The rows of one page, and how many rows match the query in all.

    Args:
        items: from :func:`build_items`.
        q: group, class filter, sort, undecided-only, page (1-based) and size.
        decided: items that already have a decision (for ``q.todo``).
    """
    rows = items if q.group == "all" else items[items["group"] == q.group]
    if q.group == "all":
        rows = rows.drop_duplicates("item")
    if q.cls:
        rows = rows[rows["given_label"] == q.cls]
    if q.todo:
        rows = rows[~rows["item"].isin(decided)]
    if q.sort == "path":
        rows = rows.sort_values(["path", "item"], kind="stable")
    else:
        rows = rows.sort_values(
            ["confidence", "item"],
            ascending=[q.sort == "confidence_asc", True],
            na_position="last",
            kind="stable",
        )
    start = (max(q.page, 1) - 1) * q.size
    return rows.iloc[start : start + q.size], len(rows)

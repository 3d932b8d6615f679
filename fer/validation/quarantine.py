"""Quarantine: the images that never reach training, each with a reason, and the restore list.

Nothing is moved or deleted: the raw files stay where they are and quarantine is a list
(``data/validation/quarantine.csv``). Reasons, in priority order (an image gets the first):

- ``rejected:<reason>``  ingest could not use the file (truncated, not an image, ...);
- ``not_detected``       an ok file with no row in detections.parquet;
- ``detect_error``       the detector crashed on it;
- ``no_face``            no face was detected;
- ``dimensions:<w>x<h>`` width or height outside ``validate.min_/max_width|height``;
- ``crop_missing``       one of its face crops is missing or unreadable;
- ``ferplus_not_face``   FER+'s crowd voted "not a face" most (added by the validate stage after
                         the label audit, so the auditor never depends on FER+).

The restore list (``validate.restore_list``, a text file at the project root, one raw-dir
relative path per line, ``#`` comments) takes paths back out of quarantine: their faces, if they
have any, go on to the split. An image without crops (``no_face``, ``rejected``, errors) still
has nothing to train on; fix the cause instead (re-run detect with another backend or a lower
``detect.min_confidence``, or replace the file) and the image leaves quarantine by itself.

Pure: tables in, tables out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["path", "image_id", "reason"]


def build_quarantine(
    manifest: pd.DataFrame,
    detections: pd.DataFrame,
    bad_crop_paths: Iterable[str] = (),
    *,
    min_width: int = 1,
    min_height: int = 1,
    max_width: int = 1 << 30,
    max_height: int = 1 << 30,
) -> pd.DataFrame:
    """One row per quarantined image (``path, image_id, reason``), sorted by path.

    Args:
        manifest: ingest's table (id, path, width, height, status, reason).
        detections: detect's per-image table (path, image_id, n_faces, status).
        bad_crop_paths: image paths owning a missing or unreadable crop.
        min_width, min_height, max_width, max_height: accepted image size.
    """
    import pandas as pd

    reason: dict[str, tuple[str, str]] = {}

    def add(path: str, image_id: str, why: str) -> None:
        reason.setdefault(path, (image_id, why))

    for row in manifest.itertuples(index=False):
        if row.status != "ok":
            add(row.path, row.id, f"rejected:{row.reason or row.status}")
    det_by_path = {r.path: r for r in detections.itertuples(index=False)}
    for row in manifest.itertuples(index=False):
        if row.status != "ok":
            continue
        det = det_by_path.get(row.path)
        if det is None:
            add(row.path, row.id, "not_detected")
        elif det.status != "ok":
            add(row.path, row.id, "detect_error")
        elif int(det.n_faces) == 0:
            add(row.path, row.id, "no_face")
        elif not (
            min_width <= int(row.width) <= max_width
            and min_height <= int(row.height) <= max_height
        ):
            add(row.path, row.id, f"dimensions:{int(row.width)}x{int(row.height)}")
    ids = dict(zip(manifest["path"], manifest["id"], strict=False))
    for path in bad_crop_paths:
        add(path, ids.get(path, ""), "crop_missing")
    rows = [(p, i, r) for p, (i, r) in sorted(reason.items())]
    return pd.DataFrame(rows, columns=COLUMNS).astype(str)


def parse_restore_list(text: str) -> list[str]:
    """Paths of a restore list: one per line; blank lines and ``#`` comments ignored."""
    out = []
    for line in text.splitlines():
        path = line.split("#", 1)[0].strip()
        if path:
            out.append(path.replace("\\", "/"))
    return list(dict.fromkeys(out))


def apply_restore(
    quarantine: pd.DataFrame, restore: Iterable[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Drop restored paths from the quarantine.

    Returns:
        (remaining quarantine, restored paths, restore entries that were not quarantined).
    """
    wanted = list(dict.fromkeys(restore))
    quarantined = set(quarantine["path"])
    restored = [p for p in wanted if p in quarantined]
    unknown = [p for p in wanted if p not in quarantined]
    kept = quarantine[~quarantine["path"].isin(set(restored))].reset_index(drop=True)
    return kept, restored, unknown


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantined images per reason family (``rejected:truncated`` counts as ``rejected``...)."""
    families = quarantine["reason"].str.split(":").str[0]
    return {str(k): int(v) for k, v in families.value_counts().sort_index().items()}

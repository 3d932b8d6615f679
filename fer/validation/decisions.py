"""Reviewed decisions: what a person decided about flagged samples, and applying it to tables.

The decisions file (``review.decisions``, default ``review_decisions.csv`` at the project root)
is written by ``fer review`` and may be edited by hand. One row per image or face:

============  =================================================================================
column        meaning
============  =================================================================================
image_id      sha256 of the image bytes (the manifest's ``id``): the content, not the path
box           ``x y w h`` of the face in original-image pixels; empty for the whole image
action        ``keep`` | ``relabel`` | ``drop`` | ``not_face`` | ``restore``
label         the class for ``relabel`` (``positive``/``negative``/``neutral``); else empty
reviewer      who decided
time          when (ISO 8601, UTC)
path          raw-dir-relative path when decided (informational; must stay inside the data)
note          free text
============  =================================================================================

**Key**: ``(image_id, box)``. The image is pinned by its content hash, so renaming or moving a
file, re-running ingest or re-ordering the manifest changes nothing. A face is pinned by its box
in original-image pixels and matched to the faces of the current detection run by IoU (≥
``MATCH_IOU``, one decision per face, best overlap first). The face index is not used: it is
the detector's score order, which changes when ``detect.min_confidence``, the backend or a tie
changes, and would silently move a decision to another face of the same image; a box still
matches after the detector shifts it by a few pixels. Two face rows of one image that would
match the same face (IoU ≥ ``MATCH_IOU`` with each other) are duplicates.

**Effect** (in ``fer split``): ``relabel`` trains the face on ``label``; ``drop`` and
``not_face`` exclude it; ``keep`` trains it on its given label, overriding a label-issue
``exclude`` or ``relabel``; ``restore`` (whole image only) takes the image out of quarantine,
which matters only when it has face crops. A face row beats a whole-image row for that face.
Rows whose image is no longer in the pipeline's tables, or whose box matches no current face,
are reported and kept in the file (nothing a person decided is ever dropped).

Pure: text and tables in, values out; :func:`read_decisions`/:func:`write_decisions` are the
only functions that touch the file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from fer import CLASSES
from fer.errors import InputError
from fer.faces.scoring import iou

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["image_id", "box", "action", "label", "reviewer", "time", "path", "note"]
REQUIRED = ("image_id", "action")
ACTIONS = ("keep", "relabel", "drop", "not_face", "restore")
FACE_ACTIONS = ("keep", "relabel", "drop", "not_face")
EXCLUDING = ("drop", "not_face")
MATCH_IOU = 0.5
_SHA256 = re.compile(r"[0-9a-f]{64}")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Decision:
    """One row of the decisions file."""

    image_id: str
    box: Box | None
    action: str
    label: str = ""
    reviewer: str = ""
    time: str = ""
    path: str = ""
    note: str = ""
    line: int = field(default=0, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """``(image_id, box text)``: unique in a valid file."""
        return self.image_id, format_box(self.box)

    def row(self) -> dict[str, str]:
        """The CSV row."""
        return {
            "image_id": self.image_id,
            "box": format_box(self.box),
            "action": self.action,
            "label": self.label,
            "reviewer": self.reviewer,
            "time": self.time,
            "path": self.path,
            "note": self.note,
        }


def now() -> str:
    """The current time as written in the ``time`` column."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_box(box: Box | None) -> str:
    """``"x y w h"``, or ``""`` for the whole image."""
    return "" if box is None else " ".join(str(int(v)) for v in box)


def parse_box(text: str, where: str) -> Box | None:
    """The box of a ``box`` cell (``x y w h``, commas allowed); ``None`` when empty."""
    text = text.strip()
    if not text:
        return None
    parts = text.replace(",", " ").split()
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or min(values) < 0 or values[2] == 0 or values[3] == 0:
        raise InputError(f"{where}: box {text!r} is not 'x y w h' (4 integers, w and h > 0)")
    return values[0], values[1], values[2], values[3]


def check_path(path: str, where: str) -> str:
    """A raw-dir-relative posix path; anything absolute or climbing out (``..``) is an error."""
    path = path.strip()
    if not path:
        return ""
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(path).drive or ".." in posix.parts or "\x00" in path:
        raise InputError(
            f"{where}: path {path!r} is outside the data (use a raw-dir-relative path)"
        )
    return posix.as_posix()


def parse_row(row: Mapping[str, str | None], where: str) -> Decision:
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    image_id = cell("image_id").lower()
    if not _SHA256.fullmatch(image_id):
        raise InputError(f"{where}: image_id {image_id!r} is not a sha256 hex digest")
    action = cell("action").lower().replace("-", "_")
    if action not in ACTIONS:
        raise InputError(f"{where}: unknown action {action!r} (one of: {', '.join(ACTIONS)})")
    box = parse_box(cell("box"), where)
    label = cell("label").lower()
    if action == "relabel" and label not in CLASSES:
        shown = repr(label) if label else "missing"
        raise InputError(f"{where}: unknown class {shown} (one of: {', '.join(CLASSES)})")
    if action != "relabel" and label:
        raise InputError(f"{where}: label {label!r} given for action {action!r} (only relabel)")
    if action == "restore" and box is not None:
        raise InputError(f"{where}: restore applies to a whole image (leave box empty)")
    return Decision(
        image_id=image_id,
        box=box,
        action=action,
        label=label,
        reviewer=cell("reviewer"),
        time=cell("time"),
        path=check_path(cell("path"), where),
        note=cell("note"),
    )


def parse_decisions(text: str, source: str = "review_decisions.csv") -> list[Decision]:
    """Parse and validate the decisions CSV.

    Raises:
        InputError: one line naming ``source``, the line number and what is wrong.
    """
    if not text.strip():
        return []
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    for name in REQUIRED:
        if name not in header:
            raise InputError(f"{source}: missing column {name!r}")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(
            f"{source}: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})"
        )
    reader.fieldnames = header
    out: list[Decision] = []
    for row in reader:
        where = f"{source} line {reader.line_num}"
        if None in row:
            raise InputError(f"{where}: more cells than columns")
        if not any((v or "").strip() for v in row.values()):
            continue
        out.append(replace(parse_row(row, where), line=reader.line_num))
    check_unique(out, source)
    return out


def check_unique(decisions: Sequence[Decision], source: str) -> None:
    """One row per key; two face rows of one image that overlap like one face are duplicates."""
    seen: dict[str, list[Decision]] = {}
    for d in decisions:
        for other in seen.get(d.image_id, []):
            same = other.box == d.box or (
                other.box is not None and d.box is not None and iou(other.box, d.box) >= MATCH_IOU
            )
            if same:
                what = f"box {format_box(d.box)}" if d.box else "the whole image"
                raise InputError(
                    f"{source} line {d.line}: duplicate decision for image {d.image_id[:12]}…"
                    f" {what} (first on line {other.line})"
                )
        seen.setdefault(d.image_id, []).append(d)


def format_decisions(decisions: Iterable[Decision]) -> str:
    """The CSV text, rows in the given order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(list(d.row().values()) for d in decisions)
    return buf.getvalue()


def read_decisions(path: str | Path | None) -> list[Decision]:
    """The decisions in ``path``; none when the path is unset or the file does not exist."""
    if path is None or not Path(path).is_file():
        return []
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read decisions ({type(exc).__name__})") from None
    return parse_decisions(text, str(path))


def write_decisions(path: str | Path, decisions: Iterable[Decision]) -> None:
    """Atomically rewrite the decisions file."""
    from fer import io as fio

    fio.write_text(path, format_decisions(decisions))


# --- matching and applying -------------------------------------------------------------------


def match_boxes(decisions: Sequence[Decision], boxes: Sequence[Box]) -> list[Decision | None]:
    """The face-level decision of each box (one image copy): best IoU first, one to one."""
    pairs = []
    for i, d in enumerate(decisions):
        if d.box is None:
            continue
        for j, b in enumerate(boxes):
            overlap = iou(d.box, b)
            if overlap >= MATCH_IOU:
                pairs.append((-overlap, i, j))
    out: list[Decision | None] = [None] * len(boxes)
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in used and out[j] is None:
            out[j] = decisions[i]
            used.add(i)
    return out


def decisions_for_faces(
    decisions: Sequence[Decision], boxes: Sequence[Box]
) -> tuple[list[Decision | None], list[Decision]]:
    """Per box of one image copy: its face row, else the image's whole-image row (not restore).

    Returns:
        (decision per box or None, the face rows that matched no box).
    """
    face_rows = [d for d in decisions if d.box is not None]
    whole = next((d for d in decisions if d.box is None and d.action != "restore"), None)
    matched = match_boxes(face_rows, boxes)
    taken = {id(d) for d in matched if d is not None}
    unmatched = [d for d in face_rows if id(d) not in taken]
    return [m if m is not None else whole for m in matched], unmatched


@dataclass
class Resolution:
    """The decisions resolved against the current tables."""

    by_face: dict[str, Decision]
    restore: set[str]
    vanished: list[Decision]
    unmatched: list[Decision]
    total: int

    def report(self) -> dict[str, object]:
        """Counts and the rows that apply to nothing (JSON-ready)."""
        actions: dict[str, int] = {}
        for d in self.by_face.values():
            actions[d.action] = actions.get(d.action, 0) + 1
        return {
            "rows": self.total,
            "faces": len(self.by_face),
            "actions": dict(sorted(actions.items())),
            "restore_images": len(self.restore),
            "vanished": [d.row() | {"line": d.line} for d in self.vanished],
            "unmatched": [d.row() | {"line": d.line} for d in self.unmatched],
        }


def _face_boxes(faces: pd.DataFrame) -> list[Box]:
    cols = ["x", "y", "w", "h"]
    missing = [c for c in cols if c not in faces.columns]
    if missing:
        raise InputError(f"faces table: missing column {missing[0]!r} (needed by decisions)")
    return [tuple(int(v) for v in r) for r in faces[cols].itertuples(index=False)]  # type: ignore[misc]


def resolve(
    decisions: Sequence[Decision], faces: pd.DataFrame, quarantine: pd.DataFrame
) -> Resolution:
    """Match decisions to the current faces and quarantine.

    Args:
        decisions: parsed rows.
        faces: ``faces.parquet`` rows (``face_id, image_id, path, x, y, w, h``).
        quarantine: ``quarantine.csv`` (``path, image_id, reason``).
    """
    by_image: dict[str, list[Decision]] = {}
    for d in decisions:
        by_image.setdefault(d.image_id, []).append(d)
    present = set(faces["image_id"]) | set(quarantine["image_id"])
    by_face: dict[str, Decision] = {}
    matched_ids: set[int] = set()
    has_faces = faces[faces["image_id"].isin(set(by_image))]
    if len(has_faces):
        boxes = _face_boxes(has_faces)
        groups: dict[tuple[str, str], list[int]] = {}
        for k, (iid, p) in enumerate(zip(has_faces["image_id"], has_faces["path"], strict=True)):
            groups.setdefault((iid, p), []).append(k)
        face_ids = list(has_faces["face_id"])
        for (iid, _), rows in groups.items():
            per_box, unmatched = decisions_for_faces(by_image[iid], [boxes[k] for k in rows])
            unmatched_ids = {id(d) for d in unmatched}
            matched_ids |= {id(d) for d in by_image[iid] if id(d) not in unmatched_ids}
            for k, d in zip(rows, per_box, strict=True):
                if d is not None:
                    by_face[face_ids[k]] = d
    restore = {d.image_id for d in decisions if d.action == "restore" and d.image_id in present}
    vanished = [d for d in decisions if d.image_id not in present]
    unmatched = [
        d
        for d in decisions
        if d.box is not None and d.image_id in present and id(d) not in matched_ids
    ]
    return Resolution(by_face, restore, vanished, unmatched, len(decisions))


def apply_restores(
    quarantine: pd.DataFrame, faces: pd.DataFrame, resolution: Resolution
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Take restored images out of quarantine.

    Returns:
        (remaining quarantine, restored paths, restored paths that have no face crop and so
        still bring nothing to training).
    """
    hit = quarantine["image_id"].isin(resolution.restore) & (quarantine["image_id"] != "")
    restored = sorted(quarantine.loc[hit, "path"])
    with_faces = set(faces["path"])
    no_crops = [p for p in restored if p not in with_faces]
    return quarantine[~hit].reset_index(drop=True), restored, no_crops


def apply_to_faces(
    faces: pd.DataFrame, excluded: pd.Series, resolution: Resolution
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Apply face decisions after validation's label actions.

    Args:
        faces: with ``face_id``, ``label`` and ``given_label`` (see
            :func:`fer.data.splitting.apply_label_actions`).
        excluded: validation's exclusions, aligned with ``faces``.
        resolution: from :func:`resolve`.

    Returns:
        (faces with the decided labels, new exclusion mask, mask of faces a decision covered).
    """
    out = faces.copy()
    act = out["face_id"].map({f: d.action for f, d in resolution.by_face.items()}).fillna("")
    reviewed = act != ""
    relabel = act == "relabel"
    labels = {f: d.label for f, d in resolution.by_face.items() if d.action == "relabel"}
    out.loc[relabel, "label"] = out.loc[relabel, "face_id"].map(labels)
    keep = act == "keep"
    out.loc[keep, "label"] = out.loc[keep, "given_label"]
    drop = act.isin(EXCLUDING)
    new_excluded = (excluded & ~reviewed) | drop
    return out, new_excluded, reviewed


# --- migration of the old restore list --------------------------------------------------------


def migrate_restore_list(
    paths: Sequence[str],
    manifest: pd.DataFrame,
    existing: Sequence[Decision],
    *,
    reviewer: str,
    time: str,
    source: str = "quarantine_restore.txt",
) -> tuple[list[Decision], list[str], list[str]]:
    """Restore rows for the paths of a ``quarantine_restore.txt``, via the manifest.

    Returns:
        (new rows, paths not in the manifest or without a content id, paths whose image already
        has a whole-image decision — left as they are).
    """
    ids = {
        p: i
        for p, i in zip(manifest["path"], manifest["id"], strict=True)
        if isinstance(i, str) and i
    }
    decided = {d.image_id for d in existing if d.box is None}
    new: list[Decision] = []
    unmapped: list[str] = []
    already: list[str] = []
    for n, raw in enumerate(paths, start=1):
        path = check_path(raw, f"{source} entry {n}")
        image_id = ids.get(path)
        if image_id is None:
            unmapped.append(path)
        elif image_id in decided:
            already.append(path)
        else:
            decided.add(image_id)
            new.append(
                Decision(
                    image_id,
                    None,
                    "restore",
                    reviewer=reviewer,
                    time=time,
                    path=path,
                    note=f"migrated from {Path(source).name}",
                )
            )
    return new, unmapped, already

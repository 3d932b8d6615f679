"""Everything the review server holds: the flagged items, lookups by id, decisions, images.

Loaded once at start-up from the pipeline's tables (paths in ``params.yaml`` are relative to
the project root). The id lookups are the only way from a request to a file: a face_id gives a
listed ``crop_path``, an image_id a listed raw path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer import io as fio
from fer.errors import InputError
from fer.review import items as it
from fer.review.images import Thumbnails
from fer.review.store import DecisionStore, Target
from fer.validation import decisions as dec

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import Config

_CSV_COLUMNS = {
    "quarantine.csv": ["path", "image_id", "reason"],
    "label_issues.csv": ["face_id", "given_label", "suggested_label", "score", "action"],
    "duplicates.csv": ["group", "path", "image_id", "kind"],
}


@dataclass(frozen=True)
class Face:
    """A listed face: its image, crop and box."""

    face_id: str
    image_id: str
    path: str
    crop_path: str
    box: dec.Box


@dataclass
class ReviewState:
    """The loaded tables and the services the app needs."""

    root: Path
    items: pd.DataFrame
    faces_table: pd.DataFrame
    quarantine: pd.DataFrame
    faces: dict[str, Face]
    image_paths: dict[str, str]
    image_boxes: dict[tuple[str, str], tuple[dec.Box, ...]]
    image_items: dict[str, tuple[str, str]]
    store: DecisionStore
    thumbs: Thumbnails
    page_size: int
    _cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def target(self, item: str) -> Target | None:
        """The face or image an item key stands for; None when it is not listed."""
        face = self.faces.get(item)
        if face is not None:
            boxes = self.image_boxes.get((face.image_id, face.path), (face.box,))
            return Target(face.image_id, face.path, face.box, boxes)
        hit = self.image_items.get(item)
        if hit is not None and hit[0]:
            return Target(hit[0], hit[1])
        return None

    def resolution(self) -> tuple[dec.Resolution, dict[str, dec.Decision]]:
        """Decisions resolved as ``fer split`` will (cached until the file changes)."""
        key, rows = self.store.rows()
        with self._lock:
            if self._cache.get("key") != key:
                res = dec.resolve(rows, self.faces_table, self.quarantine)
                per_item: dict[str, dec.Decision] = dict(res.by_face)
                whole = {d.image_id: d for d in rows if d.box is None}
                for item, (image_id, _) in self.image_items.items():
                    if image_id in whole:
                        per_item[item] = whole[image_id]
                self._cache = {"key": key, "res": res, "per_item": per_item}
            return self._cache["res"], self._cache["per_item"]


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path}: not found (run `fer validate` first)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _CSV_COLUMNS[path.name] if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return df


def load_state(cfg: Config, root: Path, reviewer: str) -> ReviewState:
    """Read the manifest, faces and validation outputs under ``root`` and build the state.

    Raises:
        InputError: a table is missing or breaks its contract.
    """
    manifest = fio.read_table(root / cfg.ingest.manifest, producer="fer ingest",
                              columns=["id", "path", "label", "status"])  # fmt: skip
    face_cols = ["face_id", "image_id", "path", "label", "x", "y", "w", "h", "score"]
    faces = fio.read_table(root / cfg.detect.faces, producer="fer detect",
                           columns=[*face_cols, "crop_path", "n_faces"])  # fmt: skip
    val = root / cfg.validate_.out_dir
    quarantine, issues, dups = (_read_csv(val / name) for name in _CSV_COLUMNS)
    items = it.build_items(manifest, faces, quarantine, issues, dups)
    lookup: dict[str, Face] = {}
    boxes: dict[tuple[str, str], list[dec.Box]] = {}
    cols = ["face_id", "image_id", "path", "crop_path", "x", "y", "w", "h"]
    for f, iid, p, crop, x, y, w, h in faces[cols].itertuples(index=False):
        box = (int(x), int(y), int(w), int(h))
        lookup[f] = Face(f, iid, p, crop, box)
        boxes.setdefault((iid, p), []).append(box)
    ok = manifest[(manifest["status"] == "ok") & (manifest["id"] != "")]
    paths = dict(zip(ok["id"], ok["path"], strict=False))
    image_rows = items[items["kind"] == "image"]
    image_items = dict(
        zip(image_rows["item"], zip(image_rows["image_id"], image_rows["path"], strict=True),
            strict=False)
    )  # fmt: skip
    for _, (iid, p) in image_items.items():
        if iid:
            paths.setdefault(iid, p)
    r = cfg.review
    thumbs = Thumbnails(root, root / cfg.detect.crops_dir, root / cfg.ingest.raw_dir,
                        size=r.thumb_size, max_pixels=cfg.ingest.max_pixels)  # fmt: skip
    return ReviewState(
        root=root,
        items=items,
        faces_table=faces,
        quarantine=quarantine,
        faces=lookup,
        image_paths=paths,
        image_boxes={k: tuple(v) for k, v in boxes.items()},
        image_items=image_items,
        store=DecisionStore(root / r.decisions, reviewer),
        thumbs=thumbs,
        page_size=r.page_size,
    )

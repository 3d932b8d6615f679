"""The split table as training data: ``split.out`` rows with their decoded crops and labels.

Shared by training and evaluation. Rows whose label is unknown or whose crop cannot be read are
kept out of both and listed in ``skipped`` with a reason, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fer import CLASSES
from fer.io import read_table

if TYPE_CHECKING:
    from fer.config import Config

SPLIT_COLUMNS = ("face_id", "path", "crop_path", "label", "split")


@dataclass
class SplitData:
    """The splits table, its decoded crops (row-aligned) and per-row usability."""

    table: pd.DataFrame
    images: np.ndarray
    y: np.ndarray  # class index, -1 where unusable
    usable: np.ndarray  # bool
    skipped: pd.DataFrame  # face_id, crop_path, split, reason
    cache_key: str
    targets: np.ndarray | None = None  # (N, classes) soft labels (train.labels: ferplus_soft)
    label_source: str = "given"


def read_splits(cfg: Config, *, progress: bool = True) -> SplitData:
    """Read ``split.out`` and decode its crops through the uint8 cache.

    Rows with an unknown label or an unreadable crop are kept out of training/evaluation and
    listed in ``skipped`` with a reason, never dropped silently.

    Raises:
        InputError: the table is missing, unreadable or lacks a column.
    """
    from fer.learning.datasets import load_crops

    path = Path(cfg.split.out)
    table = read_table(path, producer="fer split", columns=SPLIT_COLUMNS).reset_index(drop=True)
    crops = load_crops(
        table["crop_path"].astype(str).tolist(),
        root=Path.cwd(),
        inside=Path(cfg.detect.crops_dir),
        size=cfg.detect.crop.size,
        cache_dir=Path(cfg.train.cache_dir),
        progress=progress,
    )
    index = {c: i for i, c in enumerate(CLASSES)}
    y = np.array([index.get(str(v), -1) for v in table["label"]], dtype=np.int64)
    reasons: dict[int, str] = {i: f"crop_{r}" for i, r in crops.problems.items()}
    for i in np.flatnonzero(y < 0):
        reasons.setdefault(int(i), f"unknown_label:{table.at[int(i), 'label']}")
    usable = np.ones(len(table), dtype=bool)
    usable[list(reasons)] = False
    rows = sorted(reasons)
    skipped = pd.DataFrame(
        {
            "face_id": table.loc[rows, "face_id"].astype(str).tolist(),
            "crop_path": table.loc[rows, "crop_path"].astype(str).tolist(),
            "split": table.loc[rows, "split"].astype(str).tolist(),
            "reason": [reasons[i] for i in rows],
        }
    )
    return SplitData(table, crops.images, y, usable, skipped, crops.key)


def subset(data: SplitData, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, uint8 crops (in RAM) and labels of the usable rows of one split
    (``data.targets[rows]`` are their soft labels, when set)."""
    rows = np.flatnonzero(data.usable & (data.table["split"].to_numpy() == split))
    return rows, np.asarray(data.images[rows]), data.y[rows]


def ferplus_votes(cfg: Config, table: pd.DataFrame) -> np.ndarray | None:
    """FER+ votes ``(N, 10)`` for a split table's rows, joined from the manifest by path (rows
    it does not list: 0); None when the manifest carries no votes."""
    from fer.data import ferplus

    manifest = read_table(cfg.ingest.manifest, producer="fer ingest")
    if not ferplus.has_votes(manifest):
        return None
    by_path = dict(zip(manifest["path"].astype(str), ferplus.votes_matrix(manifest), strict=True))
    zeros = np.zeros(len(ferplus.VOTE_COLUMNS), dtype=np.int64)
    return np.array([by_path.get(str(p), zeros) for p in table["path"]]).reshape(-1, len(zeros))


def ferplus_class_votes(cfg: Config, votes: np.ndarray) -> np.ndarray:
    """``(N, 3)`` class votes: FER+ emotions → folders (``import``) → classes (``taxonomy``)."""
    from fer.data import ferplus
    from fer.labels import Taxonomy

    taxonomy = Taxonomy(cfg.taxonomy)
    folders = ferplus.emotion_folders(cfg.import_.fer2013, cfg.import_.ferplus_contempt, taxonomy)
    return ferplus.class_votes(votes, folders, taxonomy)


def use_ferplus_labels(cfg: Config, data: SplitData, source: str) -> SplitData:
    """Replace the split's labels by FER+'s (``train.labels``) in place; returns ``data``.

    ``ferplus_majority``: the most-voted class; a tie for the most is skipped
    (``ferplus_tie``). ``ferplus_soft``: the vote distribution as ``targets``, every face with
    class votes kept; its hard label (accuracy, class weights) is the most-voted class, the first
    in class order on a tie. Faces without class votes are skipped (``ferplus_no_votes``), and
    the crop cache key gains the labels' digest (a resumed run must see the same labels).

    Raises:
        InputError: the manifest has no FER+ votes (`fer import fer2013 ... --votes`).
    """
    import hashlib

    from fer.data import ferplus
    from fer.errors import InputError

    votes = ferplus_votes(cfg, data.table)
    if votes is None:
        raise InputError(
            f"train.labels: {source} needs FER+ votes in {cfg.ingest.manifest} (import with "
            "`fer import fer2013 SOURCE --out DIR --votes fer2013new.csv`, then `fer ingest`)"
        )
    per_class = ferplus_class_votes(cfg, votes)
    label = ferplus.majority(per_class)
    none = per_class.sum(axis=1) == 0
    if source == "ferplus_soft":
        data.targets = ferplus.soft_targets(per_class)
        label = np.where(none, -1, per_class.argmax(axis=1))
    reasons = {
        i: "ferplus_no_votes" if none[i] else "ferplus_tie" for i in np.flatnonzero(label < 0)
    }
    reasons = {int(i): r for i, r in reasons.items() if data.usable[i]}
    data.y = np.where(data.usable, label, -1).astype(np.int64)
    data.usable = data.usable & (label >= 0)
    extra = pd.DataFrame(
        {
            "face_id": data.table.loc[list(reasons), "face_id"].astype(str).tolist(),
            "crop_path": data.table.loc[list(reasons), "crop_path"].astype(str).tolist(),
            "split": data.table.loc[list(reasons), "split"].astype(str).tolist(),
            "reason": list(reasons.values()),
        }
    )
    data.skipped = pd.concat([data.skipped, extra], ignore_index=True)
    digest = hashlib.sha256(per_class.tobytes() + source.encode()).hexdigest()[:12]
    data.cache_key = f"{data.cache_key}:{digest}"
    data.label_source = source
    return data

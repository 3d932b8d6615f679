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
    """Row indices, uint8 crops (in RAM) and labels of the usable rows of one split."""
    rows = np.flatnonzero(data.usable & (data.table["split"].to_numpy() == split))
    return rows, np.asarray(data.images[rows]), data.y[rows]

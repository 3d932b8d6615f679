"""Faces of the split cut again by a model's own recipe, from the original images.

``fer detect`` cuts every face once, by ``detect.crop``. A model whose recipe differs (a
packaged model's landmark box, an ensemble whose members each cut their own way) gets its faces
cut again at the boxes ``fer detect`` stored, exactly as ``fer predict`` cuts them; evaluate
scores the test split and an ensemble entry fits its weights on the validation split this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import Config


def model_crops(cfg: Config, clf: Any, table: pd.DataFrame, crops: np.ndarray) -> Any:
    """The split's faces as the model wants them cut (its face recipe).

    A model whose recipe is that of the crops ``fer detect`` made (every model trained here)
    gets those crops; any other (another margin, a landmark box, levelled eyes: a packaged
    model's own recipe) gets its faces cut again from the original images, at the boxes
    ``fer detect`` stored. An ensemble (no single recipe) always gets its own cutter's crops:
    one tuple per face, a crop per member.
    """
    from fer.faces.recipes import FaceRecipe

    ensemble = hasattr(clf, "members")
    if not ensemble:
        made = FaceRecipe.from_crop(cfg.detect.crop)
        if clf.recipe(default=cfg.detect.crop).with_input(made.size, made.color) == made:
            return crops
    cutter = clf.face_cutter(default=cfg.detect.crop)
    if cfg.detect.mode == "precropped":  # each image is one face: read whole, sized its way
        return recut(cfg, table, cutter.whole_image(), whole_image=True, stack=not ensemble)
    return recut(cfg, table, cutter, stack=not ensemble)


def recut(
    cfg: Config,
    table: pd.DataFrame,
    cutter: Any,
    *,
    whole_image: bool = False,
    stack: bool = True,
) -> Any:
    """Cut each row's face from its original image (``ingest.raw_dir``) at its stored box (the
    whole image with ``whole_image``: pre-cropped datasets, as ``fer predict --precropped``).

    Returns:
        The crops stacked into one array, or (``stack=False``) the cutter's crops as a list.

    Raises:
        InputError: a face missing from ``detect.faces``, or an image outside the raw folder
            or not readable.
    """
    from fer.data.images import DecodeError, load_rgb
    from fer.faces.detectors import Face
    from fer.io import contained, read_table
    from fer.progress import bar, enabled

    columns = ("face_id", "x", "y", "w", "h")
    faces = read_table(cfg.detect.faces, producer="fer detect", columns=columns)
    boxes = faces.set_index("face_id")[["x", "y", "w", "h"]]
    missing = sorted(set(table["face_id"]) - set(boxes.index))
    if missing:
        raise InputError(f"{cfg.detect.faces}: no box for face {missing[0]} (run `fer detect`)")
    raw = Path(cfg.ingest.raw_dir)
    out: list[Any] = []
    with bar(total=len(table), desc="recut", unit="face", disable=not enabled()) as progress:
        for face_id, rel in zip(table["face_id"], table["path"], strict=True):
            path = contained(raw, str(rel))
            if path is None:
                raise InputError(f"{rel}: path outside ingest.raw_dir {raw}")
            try:
                image = load_rgb(path, max_pixels=cfg.ingest.max_pixels)
            except DecodeError as exc:
                raise InputError(f"{path}: cannot recut the face ({exc.reason})") from None
            if whole_image:
                x, y, (h, w) = 0, 0, image.shape[:2]
            else:
                x, y, w, h = (int(v) for v in boxes.loc[face_id])
            out.append(cutter.cut(image, [Face(x, y, w, h, 1.0)])[0])
            progress.update(1)
    return np.stack(out) if stack else out

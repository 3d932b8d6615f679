"""Turn detected faces into classifier inputs: crop geometry, colour, multi-face policy.

Training (via ``fer detect``), the MLflow pyfunc and ``fer predict`` all call
:func:`crop_face`, so a model always sees crops made the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fer.faces.detectors import Face

if TYPE_CHECKING:
    from fer.config import CropConfig

POLICIES = ("all", "largest", "skip")


def crop_window(face: Face, margin: float, square: bool) -> tuple[int, int, int, int]:
    """The window ``(x, y, w, h)`` to cut, possibly reaching outside the image.

    The box grows by ``margin`` × its size on every side; with ``square`` the window is a
    square of the larger side, centred on the box centre.
    """
    from fer.faces.recipes import grown_window

    return grown_window(face.box, margin, square)


def crop_face(image_rgb: np.ndarray, face: Face, crop: CropConfig) -> np.ndarray:
    """A ``crop.size``×``crop.size``×3 uint8 RGB crop around ``face``: ``detect.crop``'s recipe.

    Parts of the window outside the image are padded with black (not edge replication, which
    smears border pixels into stripes a model could learn), so the face centre stays at the
    crop centre even for a face at a corner. ``crop.color == "gray"`` converts to grey and back
    to three equal channels, so every model always gets 3 channels. Resized with INTER_AREA.
    Landmark boxes (``crop.box: landmarks``) need landmarks: see ``fer.faces.recipes``.
    """
    from fer.faces.recipes import FaceRecipe, cut_face

    return cut_face(image_rgb, face, FaceRecipe.from_crop(crop))


def kept_indices(faces: Sequence[Face], policy: str) -> list[int]:
    """Positions (in ``faces``' score order) of the faces the multi-face policy keeps."""
    if policy not in POLICIES:
        raise ValueError(f"crop policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if len(faces) <= 1 or policy == "all":
        return list(range(len(faces)))
    if policy == "largest":
        return [max(range(len(faces)), key=lambda i: (faces[i].area, faces[i].score, -i))]
    return []


def select_faces(faces: Sequence[Face], policy: str) -> list[Face]:
    """Faces kept as samples: ``all``; ``largest`` (one, by area); ``skip`` (none if several).

    Single-face images keep their face under every policy.
    """
    return [faces[i] for i in kept_indices(faces, policy)]


def crop_name(image_id: str, face_index: int) -> str:
    """Crop file name relative to the crops dir (data contract: shared by exact duplicates)."""
    return f"{image_id[:2]}/{image_id[:16]}_{face_index}.png"


def crop_settings_hash(crop: CropConfig, detect_hash: str) -> str:
    """Identity of the crop files: crop settings plus the detection settings hash."""
    settings = crop.model_dump(mode="json")
    for name, default in (("box", "detector"), ("rotate", False)):  # keys added later: crops
        if settings[name] == default:  # made before them keep their hash
            del settings[name]
    key = {"crop": settings, "detect": detect_hash, "version": 1}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

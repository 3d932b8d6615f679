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

from fer.faces.detectors import Face, to_rgb3

if TYPE_CHECKING:
    from fer.config import CropConfig

POLICIES = ("all", "largest", "skip")


def crop_window(face: Face, margin: float, square: bool) -> tuple[int, int, int, int]:
    """The window ``(x, y, w, h)`` to cut, possibly reaching outside the image.

    The box grows by ``margin`` × its size on every side; with ``square`` the window is a
    square of the larger side, centred on the box centre.
    """
    fx, fy, fw, fh = (float(v) for v in face.box)  # numpy ints in, Python ints out
    cx, cy = fx + fw / 2.0, fy + fh / 2.0
    w, h = fw * (1 + 2 * margin), fh * (1 + 2 * margin)
    if square:
        w = h = max(w, h)
    w_i, h_i = max(1, round(w)), max(1, round(h))
    return round(cx - w_i / 2.0), round(cy - h_i / 2.0), w_i, h_i


def crop_face(image_rgb: np.ndarray, face: Face, crop: CropConfig) -> np.ndarray:
    """A ``crop.size``×``crop.size``×3 uint8 RGB crop around ``face``.

    Parts of the window outside the image are padded with black (not edge replication, which
    smears border pixels into stripes a model could learn), so the face centre stays at the
    crop centre even for a face at a corner. ``crop.color == "gray"`` converts to grey and back
    to three equal channels, so every model always gets 3 channels. Resized with INTER_AREA.
    """
    import cv2

    rgb = to_rgb3(image_rgb)
    height, width = rgb.shape[:2]
    x, y, w, h = crop_window(face, crop.margin, crop.square)
    x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    window = np.zeros((h, w, 3), dtype=np.uint8)
    if x2 > x1 and y2 > y1:
        window[y1 - y : y2 - y, x1 - x : x2 - x] = rgb[y1:y2, x1:x2]
    out = cv2.resize(window, (crop.size, crop.size), interpolation=cv2.INTER_AREA)
    if crop.color == "gray":
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(out)


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
    key = {"crop": crop.model_dump(mode="json"), "detect": detect_hash, "version": 1}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

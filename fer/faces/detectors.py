"""Face detectors: one ``Detector`` protocol, a registry of backends, and the shared geometry.

Every backend gets the same treatment from :class:`ScaledDetector`: the image is downscaled
(``max_side``) or upscaled (``upscale_below``) for detection, boxes are mapped back to
original pixels and clipped, then filtered by ``min_confidence`` / ``min_face_px`` /
``max_aspect`` and merged with NMS. A backend only implements ``_raw(bgr)`` on the resized
image. Adding a backend is one file in ``fer/faces/backends/`` plus one line in ``_BACKENDS``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fer.errors import ConfigError

if TYPE_CHECKING:
    from fer.config import DetectorSettings

# name -> module in fer.faces.backends exposing ``create(cfg)`` and ``fingerprint(cfg)``.
_BACKENDS: dict[str, str] = {
    "ssd": "fer.faces.backends.ssd",
    "haar": "fer.faces.backends.haar",
    "yunet": "fer.faces.backends.yunet",
}

# Bump when the shared detection logic changes results, so every cache is invalidated.
LOGIC_VERSION = 1

RawBox = tuple[float, float, float, float, float]  # x, y, w, h, score in detection pixels


@dataclass(frozen=True)
class Face:
    """One detected face: box in original-image pixels and the detector's confidence."""

    x: int
    y: int
    w: int
    h: int
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``."""
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return self.w * self.h


class Detector(Protocol):
    """Finds faces in an RGB image; boxes in original pixels, sorted by score (desc)."""

    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Detect faces in an HxWx3 uint8 RGB image."""
        ...


def available_backends() -> list[str]:
    """Registered backend names."""
    return sorted(_BACKENDS)


def _backend_module(name: str):
    if name not in _BACKENDS:
        raise ConfigError(
            f"detect.backend: unknown backend {name!r} "
            f"(available: {', '.join(available_backends())})"
        )
    return importlib.import_module(_BACKENDS[name])


def create_detector(cfg: DetectorSettings) -> Detector:
    """Build the detector named by ``cfg.backend``.

    Raises:
        ConfigError: unknown backend name (the message lists the available ones).
        ModelError: the backend's model file is missing or does not match.
    """
    return _backend_module(cfg.backend).create(cfg)


def packaged_files(cfg: DetectorSettings) -> list[Path]:
    """The model files the detector of ``cfg`` loads, to ship with a model (MLflow pyfunc).

    Each backend declares its own: the first file is what ``model_path`` names, the others lie
    beside it, so ``cfg`` with ``model_path`` set to a copy of the first rebuilds the same
    detector from the copies.

    Raises:
        ModelError: a file is missing.
    """
    return [Path(p) for p in _backend_module(cfg.backend).packaged_files(cfg)]


def settings_hash(cfg: DetectorSettings) -> str:
    """A short hash of everything that changes detection results.

    Backend, its model file digest (plus the OpenCV version), thresholds, resize settings and
    :data:`LOGIC_VERSION`. Output paths, worker counts and crop settings are left out: they do
    not change which boxes are found.
    """
    fingerprint = _backend_module(cfg.backend).fingerprint(cfg)
    key = {
        "logic": LOGIC_VERSION,
        "backend": cfg.backend,
        "model": fingerprint,
        "min_confidence": cfg.min_confidence,
        "min_face_px": cfg.min_face_px,
        "max_aspect": cfg.max_aspect,
        "nms_iou": cfg.nms_iou,
        "upscale_below": cfg.upscale_below,
        "max_side": cfg.max_side,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def detection_scale(height: int, width: int, *, max_side: int, upscale_below: int) -> float:
    """Factor from original to detection pixels.

    Images whose long side exceeds ``max_side`` are shrunk to it (speed; crops still come
    from the original). Images whose short side is below ``upscale_below`` are enlarged to
    it, but never past ``max_side``, so small faces reach the detector's minimum window.
    """
    long_side, short_side = max(height, width), min(height, width)
    if long_side > max_side:
        return max_side / long_side
    if upscale_below and short_side < upscale_below:
        return min(upscale_below / short_side, max_side / long_side)
    return 1.0


def tiles(
    height: int, width: int, *, max_aspect: float = 2.0, tile_aspect: float = 1.5
) -> list[tuple[int, int, int, int]]:
    """Windows ``(x, y, w, h)`` that keep each detector input close to square.

    Fixed-input detectors (the 300×300 SSD) squash the whole image; a 2000×200 strip would
    shrink faces tenfold in one direction. Above ``max_aspect`` the long axis is cut into
    windows ``tile_aspect`` times the short side, overlapping by 3/4 of the short side so
    any face up to that size lies whole in some window.
    """
    long_side, short_side = max(height, width), min(height, width)
    if long_side <= max_aspect * short_side:
        return [(0, 0, width, height)]
    length = round(tile_aspect * short_side)
    stride = max(1, length - round(0.75 * short_side))
    starts = list(range(0, long_side - length + 1, stride))
    if starts[-1] + length < long_side:
        starts.append(long_side - length)
    if width >= height:
        return [(s, 0, length, height) for s in starts]
    return [(0, s, width, length) for s in starts]


def to_rgb3(image: np.ndarray) -> np.ndarray:
    """Validate an image and return it as HxWx3 uint8 (grey is expanded, alpha dropped)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("image must be a uint8 numpy array")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"image must be HxWx3 RGB, got shape {image.shape}")


class ScaledDetector:
    """Shared detection logic; subclasses implement ``_raw`` on a BGR detection image."""

    name = "base"

    def __init__(self, cfg: DetectorSettings) -> None:
        self.min_confidence = cfg.min_confidence
        self.min_face_px = cfg.min_face_px
        self.max_aspect = cfg.max_aspect
        self.nms_iou = cfg.nms_iou
        self.upscale_below = cfg.upscale_below
        self.max_side = cfg.max_side

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        raise NotImplementedError

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in original pixels, filtered, NMS-merged, sorted by score (then area) desc."""
        import cv2

        rgb = to_rgb3(image_rgb)
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            return []
        scale = detection_scale(
            height, width, max_side=self.max_side, upscale_below=self.upscale_below
        )
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            bgr = cv2.resize(bgr, size, interpolation=interp)
        raw = self._raw(bgr)
        return self._finish(raw, scale, height, width)

    def _finish(self, raw: list[RawBox], scale: float, height: int, width: int) -> list[Face]:
        """Map back to original pixels, clip, filter and NMS."""
        import cv2

        boxes: list[list[int]] = []
        scores: list[float] = []
        for raw_box in raw:
            # Python floats: backends may hand numpy scalars, whose round() is not an int.
            x, y, w, h, score = (float(v) for v in raw_box)
            if score < self.min_confidence:
                continue
            x1 = round(max(0.0, x / scale))
            y1 = round(max(0.0, y / scale))
            x2 = round(min(float(width), (x + w) / scale))
            y2 = round(min(float(height), (y + h) / scale))
            if min(x2 - x1, y2 - y1) < self.min_face_px:
                continue
            # A face box is near-square (res10 boxes: w/h 0.66-1.35 on the sandbox); a long thin
            # box is a face-like texture, e.g. a stripe scored 0.62 on a no-face image.
            if max(x2 - x1, y2 - y1) > self.max_aspect * min(x2 - x1, y2 - y1):
                continue
            boxes.append([x1, y1, x2 - x1, y2 - y1])
            scores.append(float(score))
        if not boxes:
            return []
        keep = cv2.dnn.NMSBoxes(boxes, scores, self.min_confidence, self.nms_iou)
        faces = [Face(*boxes[i], score=round(scores[i], 6)) for i in np.asarray(keep).reshape(-1)]
        faces.sort(key=lambda f: (-f.score, -f.area, f.y, f.x))
        return faces

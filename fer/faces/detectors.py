"""Face detectors: one ``Detector`` protocol, a registry of backends, and the shared geometry.

Every backend gets the same treatment from :class:`ScaledDetector`: the image is downscaled
(``max_side``) or upscaled (``upscale_below``) for detection, an upscaled (small) image gets a
border (``pad``) where the backend asks for one; boxes lying mostly outside the frame are
dropped (``min_inside``), the rest are mapped back to original pixels and clipped, then
filtered by ``min_face_px`` / ``max_aspect``, merged with NMS and kept by confidence: an image
needs one face of at least ``min_confidence``; its further faces need ``min_confidence_next``.
Last, a further face that is an artefact of a better one goes: mostly inside it
(``max_nested``: a mouth scored as a face) or overlapping it at the frame's edge
(``drop_edge_copies``: the SSD's shifted copy of a face, clipped in a corner of a video frame).
A backend only implements ``_raw(bgr)`` on the resized image. Adding a backend is one file in
``fer/faces/backends/`` plus one line in ``_BACKENDS``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
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
    "retinaface": "fer.faces.backends.retinaface",
}

# Bump when the shared detection logic changes results, so every cache is invalidated.
# 2: boxes mostly outside the frame are dropped (min_inside); small images get a border (pad);
#    faces after an image's first need only min_confidence_next.
# 3: further faces nested in a better one (max_nested) or overlapping it at the frame's edge
#    (drop_edge_copies) are dropped.
LOGIC_VERSION = 3

# x, y, w, h, score in detection pixels; a backend that finds landmarks appends their
# coordinates x0, y0, x1, y1, ... (detection pixels too).
RawBox = tuple[float, ...]


@dataclass(frozen=True)
class Face:
    """One detected face: box in original-image pixels and the detector's confidence.

    ``landmarks``: the points the backend found with the box, ``((x, y), ...)`` in original
    pixels (float), or None. The retinaface backend gives five: the eye on the image's left,
    the other eye, the nose tip, the mouth corner on the image's left, the other mouth corner.
    They do not take part in equality (a face read back from a cache has none).
    """

    x: int
    y: int
    w: int
    h: int
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = field(default=None, compare=False)

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
        "min_confidence_next": cfg.min_confidence_next,
        "min_face_px": cfg.min_face_px,
        "max_aspect": cfg.max_aspect,
        "nms_iou": cfg.nms_iou,
        "min_inside": cfg.min_inside,
        "max_nested": cfg.max_nested,
        "drop_edge_copies": cfg.drop_edge_copies,
        "pad": cfg.pad,
        **({"pad_retry": True} if cfg.pad_retry else {}),
        "upscale_below": cfg.upscale_below,
        "max_side": cfg.max_side,
        **({"equalize": cfg.equalize} if cfg.backend == "haar" else {}),
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


def inside_fraction(x: float, y: float, w: float, h: float, width: float, height: float) -> float:
    """Share of the box ``(x, y, w, h)`` that lies inside the ``width`` × ``height`` frame.

    0.0 for an empty box. Measured before clipping: a clipped box no longer shows how far the
    detector's box ran past the edge.
    """
    if w <= 0 or h <= 0:
        return 0.0
    iw = min(x + w, width) - max(x, 0.0)
    ih = min(y + h, height) - max(y, 0.0)
    return max(0.0, iw) * max(0.0, ih) / (w * h)


def overlap_share(face: Face, other: Face) -> float:
    """Share of ``face``'s box area that lies inside ``other``'s box (0.0 for an empty box)."""
    iw = min(face.x + face.w, other.x + other.w) - max(face.x, other.x)
    ih = min(face.y + face.h, other.y + other.h) - max(face.y, other.y)
    return max(0, iw) * max(0, ih) / face.area if face.area > 0 else 0.0


def touches_edge(face: Face, height: int, width: int) -> bool:
    """Whether the (clipped) box reaches an edge of the ``width`` × ``height`` frame."""
    return face.x <= 0 or face.y <= 0 or face.x + face.w >= width or face.y + face.h >= height


def is_copy(
    face: Face, better: Face, height: int, width: int, *, max_nested: float, edge_copies: bool
) -> bool:
    """Whether a further ``face`` is an artefact of a ``better`` one of the same image.

    Nested: more than ``max_nested`` of its area lies inside the better box (a mouth or an eye
    scored as a face; a real face is not inside another one). Edge copy (``edge_copies``): it
    overlaps the better box and reaches the frame's edge, the res10 SSD's copy of a face
    shifted by one cell of its grid and clipped (0.44–0.96 on 14 of 1,000 real video frames).
    """
    share = overlap_share(face, better)
    if share > max_nested:
        return True
    return edge_copies and share > 0 and touches_edge(face, height, width)


def border(height: int, width: int, *, pad: float) -> tuple[int, int]:
    """``(top/bottom, left/right)`` border in pixels: ``pad`` times the height and width."""
    return round(pad * height), round(pad * width)


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


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` scaled by ``scale`` for detection (INTER_AREA down, INTER_LINEAR up)."""
    import cv2

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


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
    # BGR colour of the border around small images, for backends that want one (the SSD: its
    # mean, zero input). None: no border (a sliding-window cascade has no use for it).
    pad_value: tuple[float, float, float] | None = None
    # Whether ``pad_retry`` applies: a backend that misses faces filling a photo (the SSD).
    # RetinaFace finds them on the frame itself (webexpr: 0.998 either way), and a second look
    # there only adds no-face false positives (1.5 % -> 2.2 %).
    misses_filling_faces = False

    def __init__(self, cfg: DetectorSettings) -> None:
        self.min_confidence = cfg.min_confidence
        self.min_confidence_next = min(cfg.min_confidence_next, cfg.min_confidence)
        self.min_face_px = cfg.min_face_px
        self.max_aspect = cfg.max_aspect
        self.nms_iou = cfg.nms_iou
        self.min_inside = cfg.min_inside
        self.max_nested = cfg.max_nested
        self.drop_edge_copies = cfg.drop_edge_copies
        self.pad = cfg.pad
        self.pad_retry = cfg.pad_retry
        self.upscale_below = cfg.upscale_below
        self.max_side = cfg.max_side

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        raise NotImplementedError

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in original pixels, filtered, NMS-merged, sorted by score (then area) desc.

        With ``pad_retry``, an image that was not bordered and gave no face is looked at once
        more inside the border: a detector trained on scenes misses a face that fills a photo
        (a portrait crop) as it misses a small crop's face.
        """
        bgr, scale, height, width = self._detection_image(image_rgb)
        if bgr is None:
            return []
        bordered = self._bordered(scale)
        faces = self._finish(self._first_raw(bgr, bordered), scale, height, width)
        if faces or bordered or not self._retries():
            return faces
        return self._finish(self._bordered_raw(bgr), scale, height, width)

    def raw_detections(self, image_rgb: np.ndarray) -> tuple[list[RawBox], float, int, int]:
        """``(raw boxes in detection pixels, scale, height, width)`` before any filtering.

        The image is resized for detection (see :func:`detection_scale`) and, when upscaled,
        given the backend's border; the boxes are in the resized image's pixels.
        """
        bgr, scale, height, width = self._detection_image(image_rgb)
        if bgr is None:
            return [], scale, height, width
        return self._first_raw(bgr, self._bordered(scale)), scale, height, width

    def retry_raw(self, image_rgb: np.ndarray) -> list[RawBox] | None:
        """The raw boxes of the ``pad_retry`` look (None where :meth:`detect` never retries)."""
        bgr, scale, _, _ = self._detection_image(image_rgb)
        if bgr is None or self._bordered(scale) or not self._retries():
            return None
        return self._bordered_raw(bgr)

    def _bordered(self, scale: float) -> bool:
        return scale > 1.0 and self.pad_value is not None

    def _retries(self) -> bool:
        return self.pad_retry and self.misses_filling_faces and self.pad_value is not None

    def _first_raw(self, bgr: np.ndarray, bordered: bool) -> list[RawBox]:
        return self._bordered_raw(bgr) if bordered else self._raw(bgr)

    def _detection_image(self, image_rgb: np.ndarray) -> tuple[np.ndarray | None, float, int, int]:
        """``(BGR detection image, scale, height, width)``; no image for an empty one."""
        import cv2

        rgb = to_rgb3(image_rgb)
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            return None, 1.0, height, width
        scale = detection_scale(
            height, width, max_side=self.max_side, upscale_below=self.upscale_below
        )
        # Resizing and the RGB -> BGR swap both work channel by channel, so their order does not
        # change a pixel: swap on the smaller image (a 12 MP photo's full-size swap cost ~7 ms).
        if scale < 1.0:
            return cv2.cvtColor(_resized(rgb, scale), cv2.COLOR_RGB2BGR), scale, height, width
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        return (_resized(bgr, scale) if scale > 1.0 else bgr), scale, height, width

    def _bordered_raw(self, bgr: np.ndarray) -> list[RawBox]:
        """``_raw`` on an upscaled (small) image inside a border of ``pad`` times its sides.

        A small image is mostly a face crop (FER2013's 48×48): the face fills the frame, and
        detectors trained on scenes miss it or answer with shifted copies that run past the
        frame. With a border it is found as one box. Boxes come back in the image's own
        detection pixels (they may reach into the border: ``min_inside`` judges them).
        """
        import cv2

        top, left = border(*bgr.shape[:2], pad=self.pad)
        if not (top or left):
            return self._raw(bgr)
        canvas = cv2.copyMakeBorder(
            bgr, top, top, left, left, cv2.BORDER_CONSTANT, value=self.pad_value
        )
        shift = np.array([left, top], dtype=np.float64)
        return [_shifted(raw, shift) for raw in self._raw(canvas)]

    def _finish(self, raw: list[RawBox], scale: float, height: int, width: int) -> list[Face]:
        """Drop boxes mostly outside the frame, map back to original pixels, clip, filter, NMS.

        Confidence: no face unless the best box reaches ``min_confidence`` (a no-face photo
        rarely has one); then every box from ``min_confidence_next`` up (in a group photo the
        other faces are often smaller, blurred or turned, and score lower).
        """
        import cv2

        boxes: list[list[int]] = []
        scores: list[float] = []
        points: list[tuple[tuple[float, float], ...] | None] = []
        for raw_box in raw:
            # Python floats: backends may hand numpy scalars, whose round() is not an int.
            x, y, w, h, score = (float(v) for v in raw_box[:5])
            if score < self.min_confidence_next:
                continue
            # The res10 SSD also emits shifted copies of a face box that run past the frame
            # (e.g. x2 = 1.08, y2 = 1.22 relative at 0.97); clipped, they became corner "faces".
            if inside_fraction(x, y, w, h, width * scale, height * scale) < self.min_inside:
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
            points.append(_landmarks(raw_box[5:], scale))
        if not boxes:
            return []
        if max(scores) < self.min_confidence:
            return []
        keep = cv2.dnn.NMSBoxes(boxes, scores, self.min_confidence_next, self.nms_iou)
        faces = [
            Face(*boxes[i], score=round(scores[i], 6), landmarks=points[i])
            for i in np.asarray(keep).reshape(-1)
        ]
        faces.sort(key=lambda f: (-f.score, -f.area, f.y, f.x))
        return self._without_copies(faces, height, width)

    def _without_copies(self, faces: list[Face], height: int, width: int) -> list[Face]:
        """``faces`` (best first) less each one that is a copy of a better kept one."""
        kept: list[Face] = []
        for face in faces:
            if not any(
                is_copy(face, better, height, width, max_nested=self.max_nested,
                        edge_copies=self.drop_edge_copies)
                for better in kept
            ):  # fmt: skip
                kept.append(face)
        return kept


def _shifted(raw: RawBox, shift: np.ndarray) -> RawBox:
    """``raw`` moved by ``-shift`` (``(dx, dy)``): box corner and any landmark coordinates."""
    x, y, w, h, score, *marks = raw
    moved = (np.asarray(marks, dtype=np.float64).reshape(-1, 2) - shift).reshape(-1)
    return (x - shift[0], y - shift[1], w, h, score, *moved.tolist())


def _landmarks(coords: RawBox, scale: float) -> tuple[tuple[float, float], ...] | None:
    """Landmark coordinates in detection pixels → ``((x, y), ...)`` in original pixels."""
    if not coords:
        return None
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2) / scale
    return tuple((round(float(px), 2), round(float(py), 2)) for px, py in xy)

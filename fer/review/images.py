"""Images for the review page: small JPEG thumbnails of crops and whole images with boxes.

Only files named by the pipeline's tables are read, and only after :func:`inside` has checked
that the resolved path (symlinks followed) lies inside its root: ``detect.crops_dir`` for crops,
``ingest.raw_dir`` for raw images. Encoded JPEGs are kept in a bounded LRU cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer.validation.decisions import Box

HIGHLIGHT = (40, 200, 60)  # RGB: the face the card is about
OTHER = (250, 190, 30)  # RGB: the image's other faces


class OutsideRoot(Exception):
    """A listed path resolves outside its root (a symlink or ``..`` in a table)."""


def inside(root: Path, rel: str, base: Path | None = None) -> Path:
    """``(base or root) / rel`` resolved; :class:`OutsideRoot` unless it lies inside ``root``."""
    top = root.resolve()
    if "\x00" in rel:
        raise OutsideRoot(rel)
    path = ((base or root) / rel).resolve()
    if not path.is_relative_to(top) or path == top:
        raise OutsideRoot(rel)
    return path


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _fit(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb, scale


def draw_boxes(
    rgb: np.ndarray, boxes: Sequence[Box], highlight: Box | None, scale: float
) -> np.ndarray:
    """The image with every box drawn (the highlighted one in green, thicker)."""
    import cv2

    out = np.ascontiguousarray(rgb).copy()
    thick = max(1, round(max(out.shape[:2]) / 200))
    for box in sorted(boxes, key=lambda b: b == highlight):
        x, y, w, h = (round(v * scale) for v in box)
        color, t = (HIGHLIGHT, thick + 1) if box == highlight else (OTHER, thick)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, t)
    return out


class Thumbnails:
    """Encodes and caches the JPEGs the page shows."""

    def __init__(
        self, project: Path, crops_root: Path, raw_root: Path, *, size: int = 96,
        max_pixels: int = 89_478_485, cache_items: int = 4096, quality: int = 80,
    ) -> None:  # fmt: skip
        self.project = Path(project)
        self.crops_root = Path(crops_root)
        self.raw_root = Path(raw_root)
        self.size = size
        self.max_pixels = max_pixels
        self.quality = quality
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._max = cache_items
        self._lock = threading.Lock()

    def _cached(self, key: tuple, make) -> bytes:  # type: ignore[no-untyped-def]
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        data = make()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return data

    def crop(self, crop_rel: str) -> bytes:
        """Thumbnail of a face crop (``crop_path`` is project-relative and under crops_root)."""
        import cv2

        def make() -> bytes:
            path = inside(self.crops_root, crop_rel, base=self.project)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(crop_rel)
            rgb, _ = _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size)
            return _jpeg(rgb, self.quality)

        return self._cached(("crop", crop_rel), make)

    def image(
        self, raw_rel: str, boxes: Sequence[Box], highlight: Box | None, max_side: int
    ) -> bytes:
        """A raw image fitted in ``max_side`` px with its faces' boxes drawn."""
        from fer.data.images import DecodeError, load_rgb

        def make() -> bytes:
            path = inside(self.raw_root, raw_rel)
            try:
                rgb = load_rgb(path, max_pixels=self.max_pixels)
            except DecodeError:
                raise FileNotFoundError(raw_rel) from None
            small, scale = _fit(rgb, max_side)
            return _jpeg(draw_boxes(small, boxes, highlight, scale), self.quality)

        return self._cached(("image", raw_rel, tuple(boxes), highlight, max_side), make)

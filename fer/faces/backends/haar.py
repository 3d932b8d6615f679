"""OpenCV Haar cascade (frontal face): no model download, slower and less accurate than SSD.

A cascade gives no probability, only how many overlapping windows agreed (``neighbours``).
We report ``score = n / (n + MIN_NEIGHBOURS)``: every accepted box scores above 0.5 (OpenCV
keeps groups with more than ``MIN_NEIGHBOURS`` windows), so a ``min_confidence`` of 0.5 keeps
all of them and a higher one asks for more agreement (the default 0.75, calibrated for the
SSD, asks for 15 windows on an image's best face; ``min_confidence_next`` 0.4 keeps the rest).
The smallest window searched is ``min_face_px`` (at least the cascade's 24 px); ``equalize``
equalises the grey image's histogram first. PyPI ``fer``'s own settings (no equalising, 50 px,
every accepted box) are :data:`fer.learning.models.pretrained.PYPI_FER_DETECTOR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer.errors import ModelError
from fer.faces.detectors import RawBox, ScaledDetector
from fer.io import file_sha256

if TYPE_CHECKING:
    from fer.config import DetectConfig

CASCADE = "haarcascade_frontalface_default.xml"
MIN_NEIGHBOURS = 5
SCALE_FACTOR = 1.1
MIN_WINDOW = 24  # the cascade's own training window


def cascade_file(cfg: DetectConfig) -> Path:
    """The cascade XML: ``detect.model_path`` or the one shipped with opencv-python."""
    if cfg.model_path is not None:
        path = Path(cfg.model_path)
        if path.is_dir():
            path = path / CASCADE
    else:
        import cv2

        data = getattr(cv2, "data", None)
        if data is None:
            raise ModelError(
                "haar cascade not found: install `opencv-python-headless<5` or set "
                "detect.model_path to a cascade XML"
            )
        path = Path(data.haarcascades) / CASCADE
    if not path.is_file():
        raise ModelError(f"detect.model_path: haar cascade {path} not found")
    return path


def packaged_files(cfg: DetectConfig) -> list[Path]:
    """The cascade XML."""
    return [cascade_file(cfg)]


def fingerprint(cfg: DetectConfig) -> str:
    """Digest of the cascade file and OpenCV version (part of the cache key)."""
    import cv2

    return f"{file_sha256(cascade_file(cfg))}:cv{cv2.__version__}"


class HaarDetector(ScaledDetector):
    """Cascade on the equalised grey image, with the shared resize/filter/NMS logic."""

    name = "haar"

    def __init__(self, cfg: DetectConfig) -> None:
        import cv2

        super().__init__(cfg)
        path = cascade_file(cfg)
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise ModelError(f"{path}: OpenCV cannot load this haar cascade")
        self._min_window = max(MIN_WINDOW, cfg.min_face_px)
        self._equalize = cfg.equalize

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        import cv2

        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if self._equalize:
            grey = cv2.equalizeHist(grey)
        boxes, neighbours = self.cascade.detectMultiScale2(
            grey,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBOURS,
            minSize=(self._min_window, self._min_window),
        )
        out: list[RawBox] = []
        for (x, y, w, h), n in zip(
            np.asarray(boxes).reshape(-1, 4), np.asarray(neighbours).reshape(-1), strict=True
        ):
            out.append((float(x), float(y), float(w), float(h), n / (n + MIN_NEIGHBOURS)))
        return out


def create(cfg: DetectConfig) -> HaarDetector:
    """Factory used by the registry."""
    return HaarDetector(cfg)

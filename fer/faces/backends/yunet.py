"""OpenCV YuNet (``cv2.FaceDetectorYN``): an example third backend with a user-given model.

Nothing is downloaded: set ``detect.model_path`` to a YuNet ONNX file you obtained yourself
(e.g. ``face_detection_yunet_2023mar.onnx`` from the OpenCV model zoo).
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


def model_file(cfg: DetectConfig) -> Path:
    """The ONNX file named by ``detect.model_path``."""
    if cfg.model_path is None:
        raise ModelError(
            "detect.model_path: the yunet backend needs a YuNet .onnx file "
            "(none is bundled; download it yourself from the OpenCV model zoo)"
        )
    path = Path(cfg.model_path)
    if not path.is_file():
        raise ModelError(f"detect.model_path: YuNet model {path} not found")
    return path


def packaged_files(cfg: DetectConfig) -> list[Path]:
    """The ONNX file."""
    return [model_file(cfg)]


def fingerprint(cfg: DetectConfig) -> str:
    """Digest of the ONNX file and OpenCV version (part of the cache key)."""
    import cv2

    return f"{file_sha256(model_file(cfg))}:cv{cv2.__version__}"


class YunetDetector(ScaledDetector):
    """YuNet takes any input size; it is told the size of each image before detecting."""

    name = "yunet"

    def __init__(self, cfg: DetectConfig) -> None:
        import cv2

        super().__init__(cfg)
        path = model_file(cfg)
        try:
            # Threshold 0: confidence filtering happens in the shared logic.
            self.model = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.0, 0.3, 5000)
        except cv2.error as exc:
            raise ModelError(f"{path}: OpenCV cannot load this YuNet model ({exc.msg})") from None

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        height, width = bgr.shape[:2]
        self.model.setInputSize((width, height))
        _, rows = self.model.detect(bgr)
        if rows is None:
            return []
        return [(float(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[14])) for r in rows]


def create(cfg: DetectConfig) -> YunetDetector:
    """Factory used by the registry."""
    return YunetDetector(cfg)

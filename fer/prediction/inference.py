"""Classify faces with a trained model: ``model.pt`` in, ``[positive, negative, neutral]`` out.

Used by evaluation, the MLflow pyfunc (fer/prediction/serving.py) and ``fer predict``.
``model.pt`` holds plain tensors and types only (loaded with ``weights_only=True``): the
architecture is rebuilt by name from the registry, so no pickled code ever runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES
from fer.errors import ModelError
from fer.learning.preprocess import InputSpec, preprocess
from fer.numerics import intra_op_threads

if TYPE_CHECKING:
    from torch import nn

    from fer.config import CropConfig, DetectorSettings
    from fer.faces.detectors import Detector
    from fer.faces.recipes import FaceCutter, FaceRecipe

WEIGHTS = "model.pt"
FORMAT_VERSION = 1
INFERENCE_THREADS = 1
"""torch intra-op threads for `fer predict`, the pyfunc and `fer api` on CPU. One face (or 64)
through a small classifier gains little from more, and OpenMP's spinning workers lose badly
when the cores are shared: on 2 busy cores one 64 px mini-Xception call took ~700 ms with 2
threads against ~3.5 ms with 1 (benchmarks/bench_peer.py). OpenCV keeps its own threads for
the detector, the larger cost."""


def model_payload(
    model: nn.Module,
    *,
    arch: str,
    spec: dict[str, Any],
    input_spec: InputSpec,
    config: dict[str, Any] | None = None,
    classes: Sequence[str] = CLASSES,
    recipe: FaceRecipe | None = None,
) -> dict[str, Any]:
    """The ``model.pt`` dict (docs/data-contracts.md); ``spec`` is the ModelSpec as a dict.

    ``recipe``: how faces are cut for this model (:mod:`fer.faces.recipes`); None stores none,
    and the model then gets the recipe of ``config.crop`` (the crops it was trained on).
    """
    extra = {"recipe": recipe.to_dict()} if recipe is not None else {}
    return {
        "format": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": arch,
        "num_classes": len(classes),
        "classes": list(classes),
        "input": input_spec.to_dict(),
        "spec": {k: v for k, v in spec.items() if k != "pretrained_path"},
        "config": config or {},
        **extra,
    }


def read_payload(path: str | Path) -> dict[str, Any]:
    """The ``model.pt`` dict of a model file or its folder (plain types and tensors only).

    Raises:
        ModelError: missing file, or not a fer model file.
    """
    import torch

    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS
    if not p.is_file():
        raise ModelError(f"{p}: model file not found")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{p}: cannot load model file ({first})") from None
    if not isinstance(payload, dict) or not (
        {"state_dict", "arch", "input"} <= set(payload) or "members" in payload
    ):
        raise ModelError(f"{p}: not a fer model file (needs state_dict, arch, input)")
    return payload


def weights_file(path: str | Path) -> Path:
    """The ``model.pt`` of a model folder, or the file itself."""
    p = Path(path)
    return p / WEIGHTS if p.is_dir() else p


def face_records(classes: Sequence[str], probs: np.ndarray) -> list[dict[str, Any]]:
    """``{"probs": {class: p}, "label"}`` per row of ``probs``; pure."""
    return [
        {
            "probs": {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
            "label": classes[int(np.argmax(row))],
        }
        for row in probs
    ]


def load_model_file(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from ``model.pt`` (a file or a folder holding one).

    Raises:
        ModelError: missing file, not a fer model file (an ensemble is not one network:
            :func:`fer.prediction.ensemble.load_for_inference`), or weights that do not fit.
    """
    payload = read_payload(path)
    return network_of(payload, device, source=weights_file(path)), payload


def network_of(
    payload: dict[str, Any], device: str = "cpu", *, source: str | Path = "model file"
) -> nn.Module:
    """The network of a ``model.pt`` dict, weights loaded, in eval mode on ``device``.

    Raises:
        ModelError: not a single network, or weights that do not fit.
    """
    from fer.config import ModelSpec
    from fer.learning.models import build_model

    if not {"state_dict", "arch", "input"} <= set(payload):
        raise ModelError(
            f"{source}: not a single network (arch {payload.get('arch')!r}): load it with "
            "fer.prediction.ensemble.load_for_inference"
        )
    spec = InputSpec.from_dict(payload["input"])
    try:
        net = build_model(
            payload["arch"],
            ModelSpec(**payload.get("spec", {})),
            num_classes=int(payload.get("num_classes", len(CLASSES))),
            input_size=spec.size,
        )
        net.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise ModelError(f"{source}: weights do not fit {payload['arch']!r} ({exc})") from None
    net.to(device).eval()
    return net


class FaceClassifier:
    """A loaded model plus its preprocessing; classifies uint8 RGB crops in batches."""

    def __init__(
        self,
        model: nn.Module,
        input_spec: InputSpec,
        *,
        classes: Sequence[str] = CLASSES,
        device: str = "cpu",
        batch_size: int = 64,
        arch: str = "",
        meta: dict[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.meta = meta or {}
        self.input_spec = input_spec
        self.classes = tuple(classes)
        self.device = device
        self.batch_size = batch_size
        self.arch = arch
        self.threads = threads

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> FaceClassifier:
        """Load from ``model.pt`` or its folder (``device``: cpu, cuda or auto).

        ``threads``: torch intra-op threads while classifying on CPU (restored after each
        call); None keeps the process setting (evaluation sets its own).
        """
        return cls.from_payload(
            read_payload(path), device=device, batch_size=batch_size, threads=threads,
            source=weights_file(path),
        )  # fmt: skip

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        source: str | Path = "model file",
    ) -> FaceClassifier:
        """From a ``model.pt`` dict (:func:`read_payload`), as :meth:`load`."""
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        net = network_of(payload, device, source=source)
        return cls(
            net,
            InputSpec.from_dict(payload["input"]),
            classes=payload.get("classes", CLASSES),
            device=device,
            batch_size=batch_size,
            arch=str(payload["arch"]),
            meta={k: v for k, v in payload.items() if k != "state_dict"},
            threads=threads,
        )

    @classmethod
    def for_inference(
        cls, path: str | Path, *, device: str = "cpu", batch_size: int = 64
    ) -> FaceClassifier:
        """Load for prediction (`fer predict`, the pyfunc, `fer api`): batch norms folded into
        the convolutions before them (:func:`fold_batch_norms`) and :data:`INFERENCE_THREADS`.

        Probabilities equal :meth:`load`'s to float rounding (~1e-6); evaluation keeps
        :meth:`load`.
        """
        return cls.for_inference_payload(
            read_payload(path), device=device, batch_size=batch_size, source=weights_file(path)
        )

    @classmethod
    def for_inference_payload(
        cls,
        payload: dict[str, Any],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        source: str | Path = "model file",
    ) -> FaceClassifier:
        """:meth:`for_inference` from a ``model.pt`` dict."""
        classifier = cls.from_payload(
            payload, device=device, batch_size=batch_size, threads=INFERENCE_THREADS,
            source=source,
        )  # fmt: skip
        classifier.model = fold_batch_norms(classifier.model)
        return classifier

    def crop_config(self, default: CropConfig | None = None) -> CropConfig:
        """The crop settings the model was trained with (``config.crop`` in ``model.pt``).

        Crops for inference must be cut like the training crops (margin, square, colour);
        size and colour always follow the model's input spec.
        """
        from fer.config import CropConfig

        saved = self.meta.get("config", {}).get("crop")
        base = CropConfig(**saved) if isinstance(saved, dict) else (default or CropConfig())
        return base.model_copy(
            update={"size": self.input_spec.size, "color": self.input_spec.color}
        )

    def recipe(self, default: CropConfig | None = None) -> FaceRecipe:
        """How this model's faces are cut: ``recipe`` in ``model.pt``, else the recipe of the
        crops it was trained on (``config.crop``, else ``default``); at the input's size/colour.

        Raises:
            ModelError: a stored recipe that is not valid.
        """
        from fer.faces.recipes import FaceRecipe

        stored = self.meta.get("recipe")
        if isinstance(stored, dict):
            try:
                recipe = FaceRecipe.from_dict(stored)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"model file: {exc}") from None
        else:
            recipe = FaceRecipe.from_crop(self.crop_config(default))
        return recipe.with_input(self.input_spec.size, self.input_spec.color)

    def face_cutter(self, default: CropConfig | None = None) -> FaceCutter:
        """A :class:`~fer.faces.recipes.FaceCutter` for :meth:`recipe`, with face-api's
        landmark net when the recipe cuts by landmarks (built once, kept).

        Raises:
            ModelError: the landmark weights are missing or corrupt (run ``fer weights``).
        """
        from fer.faces.recipes import FaceCutter

        recipe = self.recipe(default)
        if not recipe.needs_landmarks:
            return FaceCutter(recipe)
        return FaceCutter(recipe, self.landmarker())

    def landmarker(self) -> Any:
        """face-api's 68-point landmark net for this model's cuts (built once, kept).

        Raises:
            ModelError: the landmark weights are missing or corrupt (run ``fer weights``).
        """
        if getattr(self, "_landmarker", None) is None:
            from fer.learning.models.landmarks68 import FaceLandmarker

            self._landmarker = FaceLandmarker(threads=self.threads)
        return self._landmarker

    def share_landmarker(self, landmarker: Any) -> None:
        """Cut by ``landmarker`` (one net for several models, or a packaged copy) when this
        model's recipe cuts by landmarks; else nothing changes."""
        if self.recipe().needs_landmarks:
            self._landmarker = landmarker

    def detector_settings(self, default: DetectorSettings | None = None) -> DetectorSettings:
        """The detector settings the model carries (``config.detect`` in ``model.pt``)."""
        from fer.config import DetectorSettings

        saved = self.meta.get("config", {}).get("detect")
        if isinstance(saved, dict):
            return DetectorSettings.from_stored(saved)
        return default or DetectorSettings()

    def predict_proba(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(N, len(classes))`` for uint8 RGB crops ``(N, H, W, 3)``."""
        import torch

        arr = np.stack(list(crops)) if not isinstance(crops, np.ndarray) else crops
        if len(arr) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        out: list[np.ndarray] = []
        from fer.learning.training import softmax_tta

        views = self.meta.get("config", {}).get("train", {})
        flip, shift = bool(views.get("tta_flip", False)), float(views.get("tta_shift", 0.0))
        threads = self.threads if str(self.device) == "cpu" else None
        with torch.inference_mode(), intra_op_threads(threads):
            for start in range(0, len(arr), self.batch_size):
                x = preprocess(
                    arr[start : start + self.batch_size], self.input_spec, device=self.device
                )
                out.append(softmax_tta(self.model, x, flip, shift).float().cpu().numpy())
        return np.concatenate(out)

    def records(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """``{"probs": {class: p}, "label"}`` per row of ``probs``."""
        return face_records(self.classes, probs)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that follows a convolution inside an ``nn.Sequential`` into it.

    In eval mode a batch norm is a per-channel affine map, so the conv before it can absorb it
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and the norm becomes ``Identity``: one op
    less per pair (mini-Xception: 14 of ~60; ~11 % of a one-face call, ~17 % at 16 faces). A
    depthwise-separable conv absorbs it in its pointwise conv. The model is changed in place
    and returned; its state dict no longer matches ``model.pt`` (never save it).
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from fer.learning.models.layers import SeparableConv2d

    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in pairwise(names):
            conv, norm = seq._modules[first], seq._modules[second]
            if not isinstance(norm, nn.BatchNorm2d) or not norm.track_running_stats:
                continue
            if isinstance(conv, nn.Conv2d):
                seq._modules[first] = fuse_conv_bn_eval(conv, norm)
            elif isinstance(conv, SeparableConv2d):
                conv.pointwise = fuse_conv_bn_eval(conv.pointwise, norm)
            else:
                continue
            seq._modules[second] = nn.Identity()
    return model


def analyze_image(
    image_rgb: np.ndarray,
    detector: Detector,
    classifier: FaceClassifier,
    crop_cfg: FaceCutter | CropConfig,
) -> list[dict[str, Any]]:
    """Detect, cut (by the model's recipe: ``classifier.face_cutter()``; a ``detect.crop``
    section cuts its way) and classify every face of one RGB image.

    Returns:
        One dict per face, in detector-score order: ``{"box": [x, y, w, h], "score",
        "probs": {"positive", "negative", "neutral"}, "label"}`` (DESIGN.md §3).
    """
    from fer.faces.recipes import as_cutter

    faces = detector.detect(image_rgb)
    if not faces:
        return []
    crops = as_cutter(crop_cfg).cut(image_rgb, faces)
    recs = classifier.records(classifier.predict_proba(crops))
    return [
        {"box": [int(f.x), int(f.y), int(f.w), int(f.h)], "score": round(float(f.score), 6), **r}
        for f, r in zip(faces, recs, strict=True)
    ]

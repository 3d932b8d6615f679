"""The ONE preprocessing function: uint8 RGB crops (NHWC) → normalised float tensor (NCHW).

Training, evaluation, the MLflow pyfunc and ``fer predict`` all call :func:`preprocess` with the
:class:`InputSpec` stored in ``model.pt``, so a model never sees pixels prepared differently from
how it was trained. Augmentation, when training, runs inside it on the [0, 1] batch, before
normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

# ImageNet statistics: right for locally supplied pretrained weights, harmless from scratch.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: square side in px, colour mode, per-channel mean/std."""

    size: int = 64
    color: str = "rgb"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict[str, Any]:
        """Plain types for ``model.pt`` (loaded with ``weights_only=True``)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            size=int(d["size"]),
            color=str(d.get("color", "rgb")),
            mean=tuple(float(v) for v in d.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
        )


def preprocess(
    crops: np.ndarray | torch.Tensor,
    spec: InputSpec,
    *,
    device: str | torch.device | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Turn uint8 crops into the model's input.

    Args:
        crops: uint8 ``(N, H, W, 3)`` RGB (also ``(H, W, 3)`` for one crop, or grey
            ``(N, H, W)`` / ``(N, H, W, 1)``).
        spec: the model's :class:`InputSpec`; crops of another size are resized (bilinear,
            antialiased); ``color="gray"`` converts to luminance replicated on 3 channels.
        device: where to compute; the uint8 batch is moved first (4× less to transfer).
        augment: optional batch transform on float ``[0, 1]`` NCHW (training only).

    Returns:
        float32 ``(N, 3, size, size)``, normalised with ``spec.mean``/``spec.std``.
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(crops)
    if t.dtype != torch.uint8:
        raise ValueError(f"crops must be uint8 (got {t.dtype})")
    if t.ndim == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        t = t.unsqueeze(0)  # one HWC crop
    if t.ndim == 3:
        t = t.unsqueeze(-1)  # NHW grey
    if t.ndim != 4 or t.shape[-1] not in (1, 3):
        raise ValueError(f"crops must be (N, H, W, 3) uint8 (got shape {tuple(t.shape)})")
    if device is not None:
        t = t.to(device, non_blocking=True)
    # Make the uint8 batch NCHW-contiguous first: 4x fewer bytes to shuffle than as float.
    x = t.permute(0, 3, 1, 2).contiguous().float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1).contiguous()
    if x.shape[-2:] != (spec.size, spec.size) and x.shape[0] > 0:
        x = F.interpolate(
            x, size=(spec.size, spec.size), mode="bilinear", align_corners=False, antialias=True
        )
    if spec.color == "gray":
        weights = _constants((0.299, 0.587, 0.114), (1.0, 1.0, 1.0), str(x.device))[0]
        x = (x * weights).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    mean, std, shift, scale = _constants(tuple(spec.mean), tuple(spec.std), str(x.device))
    if augment is not None:
        x = augment(x.div_(255.0))
        return x.sub_(mean).div_(std)
    # One fused pass: (x / 255 - mean) / std = x * scale + shift.
    return torch.addcmul(shift, x, scale)


@lru_cache(maxsize=8)
def _constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, std, -mean / std, 1 / (255 std))`` as (1, 3, 1, 1) tensors, made once per
    device (not per batch: a one-face call spends most of its time on such small ops)."""
    import torch

    def shaped(v: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(v, device=device).view(1, 3, 1, 1)

    with torch.inference_mode(False):  # plain tensors, usable in training and inference alike
        m, s = shaped(mean), shaped(std)
        return m, s, -m / s, 1.0 / (255.0 * s)

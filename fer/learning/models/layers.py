"""Layers shared by the ported Keras/TensorFlow.js models.

TensorFlow's ``'same'`` padding is asymmetric when a stride-2 window meets an even size (the
extra row and column go at the bottom and right), which torch's symmetric ``padding=`` cannot
express; :class:`SameConv2d` and :class:`SameMaxPool2d` pad exactly like TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``'same'`` padding (before, after) along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad an NCHW tensor as TensorFlow's ``'same'`` would for this window."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``'same'`` padding (odd square kernels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        symmetric = kernel_size // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=symmetric,
            groups=groups, bias=bias,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (only for strides > 1; stride 1 pads symmetrically inside the conv) and convolve."""
        if self.stride[0] > 1:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class SameMaxPool2d(nn.Module):
    """Max pool with TensorFlow's ``'same'`` padding (padded cells never win).

    Computed as running maxima of strided slices, rows then columns: the same values as
    ``F.max_pool2d`` on the padded input, ~7× faster for small batches on CPU, where torch's
    NCHW max pool is slow.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad with -inf, then take the window maxima along H, then along W."""
        k, s = self.kernel_size, self.stride
        x = pad_same(x, k, s, value=float("-inf"))
        rows = (x.shape[-2] - k) // s + 1
        x = _running_max([x[..., i : i + s * (rows - 1) + 1 : s, :] for i in range(k)])
        cols = (x.shape[-1] - k) // s + 1
        return _running_max([x[..., i : i + s * (cols - 1) + 1 : s] for i in range(k)])


def _running_max(parts: list[torch.Tensor]) -> torch.Tensor:
    out = parts[0]
    for part in parts[1:]:
        out = torch.maximum(out, part)
    return out


class SeparableConv2d(nn.Module):
    """Depthwise 3×3 (``'same'``, optional stride) then pointwise 1×1: Keras/TF.js layout."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, bias: bool = False
    ) -> None:
        super().__init__()
        self.depthwise = SameConv2d(
            in_channels, in_channels, 3, stride=stride, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise, then pointwise."""
        return self.pointwise(self.depthwise(x))


class MappedHead(nn.Module):
    """Emotion logits → class logits: per class, ``logsumexp`` of its emotions' logits.

    ``softmax`` of the result is exactly the sum of the emotion probabilities per class, and
    the layers below stay trainable through it. The emotion → class index list is a buffer, so
    it travels inside the state dict (``model.pt``) with the weights it was trained with.
    """

    def __init__(self, class_of_emotion: Sequence[int], num_classes: int) -> None:
        super().__init__()
        index = torch.as_tensor(list(class_of_emotion), dtype=torch.long)
        if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= num_classes:
            raise ValueError(f"class indices must be in [0, {num_classes}) (got {index.tolist()})")
        self.num_classes = num_classes
        self.register_buffer("class_of_emotion", index)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, emotions)`` logits → ``(N, classes)`` logits."""
        classes = torch.arange(self.num_classes, device=logits.device).unsqueeze(1)
        member = self.class_of_emotion.unsqueeze(0) == classes  # (classes, emotions)
        spread = torch.where(member, logits.unsqueeze(1), float("-inf"))  # (N, classes, emotions)
        return torch.logsumexp(spread, dim=-1)

    def extra_repr(self) -> str:
        return f"class_of_emotion={self.class_of_emotion.tolist()}"

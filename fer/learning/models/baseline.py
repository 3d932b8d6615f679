"""The small CNN the original project compared AlexNet against.

Three conv blocks (conv-BN-ReLU-maxpool, widths w, 2w, 4w) then global average pooling, dropout
and one linear layer: ~0.1 M parameters. The first conv is 5×5 with stride 2, which makes the
model ~6× faster on CPU than a stride-1 stem on 64 px crops (full-resolution BN/ReLU maps are
memory-bound) at no accuracy cost on faces this size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fer.config import ModelSpec

if TYPE_CHECKING:
    from torch import nn


def build(spec: ModelSpec, *, num_classes: int = 3, input_size: int = 64) -> nn.Module:
    """Baseline CNN; ``spec.width`` sets the first block's channels."""
    from torch import nn

    from fer.learning.models import load_matching, read_state

    w = spec.width
    layers: list[nn.Module] = []
    channels = 3
    for i, out in enumerate((w, 2 * w, 4 * w)):
        kernel, stride = (5, 2) if i == 0 else (3, 1)
        layers += [
            nn.Conv2d(channels, out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = out
    model = nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(spec.dropout),
        nn.Linear(channels, num_classes),
    )
    if spec.pretrained_path is not None:
        load_matching(model, read_state(spec.pretrained_path), spec.pretrained_path)
    return model

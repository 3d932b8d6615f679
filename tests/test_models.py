"""Model registry, architectures, pretrained loading and the shared preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fer.config import ModelSpec
from fer.errors import ConfigError, ModelError
from fer.learning.models import available, build_model
from fer.learning.models.alexnet import feature_size
from fer.learning.preprocess import InputSpec, preprocess


@pytest.mark.parametrize("name", ["alexnet", "baseline", "resnet18"])
@pytest.mark.parametrize("size", [64, 96])
def test_every_model_gives_three_logits(name: str, size: int) -> None:
    model = build_model(name, ModelSpec(width=8), num_classes=3, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 3)


def test_registry_names_and_unknown_model() -> None:
    assert {"alexnet", "baseline", "resnet18"} <= set(available())
    with pytest.raises(ConfigError, match=r"unknown model 'vgg'.*alexnet"):
        build_model("vgg", ModelSpec())


def test_alexnet_is_torchvision_alexnet_at_224() -> None:
    from torchvision.models import alexnet

    ours = build_model("alexnet", ModelSpec(), num_classes=3, input_size=224)
    ref = alexnet(weights=None, num_classes=3)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ref.state_dict().items()
    }
    assert feature_size(64) == 1 and feature_size(224) == 6
    with pytest.raises(ValueError, match="63 px"):
        feature_size(40)


def test_alexnet_pretrained_imagenet_layout_folds_exactly(tmp_path: Path) -> None:
    """ImageNet-layout weights (6x6 pool) give the same outputs on a 64 px crop after folding."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    ref = alexnet(weights=None, num_classes=3).eval()
    path = tmp_path / "alexnet.pth"
    torch.save(ref.state_dict(), path)
    ours = build_model("alexnet", ModelSpec(pretrained_path=path), input_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-4)


def test_pretrained_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        build_model("baseline", ModelSpec(pretrained_path=tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot load"):
        build_model("baseline", ModelSpec(pretrained_path=bad))
    other = tmp_path / "other.pt"
    torch.save({"unrelated.weight": torch.zeros(3)}, other)
    with pytest.raises(ModelError, match="no tensor"):
        build_model("baseline", ModelSpec(pretrained_path=other))


def test_preprocess_matches_reference_and_handles_shapes() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    spec = InputSpec(size=64)
    x = preprocess(crops, spec)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    ref = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
    assert torch.allclose(x, ref, atol=1e-5)
    assert preprocess(crops[0], spec).shape == (1, 3, 64, 64)  # one HWC crop
    assert preprocess(crops[:, :32, :32], spec).shape == (4, 3, 64, 64)  # resized
    grey = preprocess(crops, InputSpec(size=64, color="gray"))
    assert torch.allclose(
        grey[:, 0] * std[0, 0] + mean[0, 0], grey[:, 1] * std[0, 1] + mean[0, 1], atol=1e-5
    )
    with pytest.raises(ValueError, match="uint8"):
        preprocess(crops.astype(np.float32), spec)
    assert InputSpec.from_dict(spec.to_dict()) == spec

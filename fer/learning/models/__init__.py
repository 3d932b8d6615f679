"""Model registry: architectures by name (``train.model`` and the ``models:`` params section).

Adding an architecture is one small module with a ``build(spec, num_classes, input_size)``
function plus one entry in ``_REGISTRY`` below. Architectures ported with real-face weights
(``minixception``, ``faceexpr``) also take ``emotion_classes`` (their 7 emotions → our classes)
and expose ``input_spec()``, the preprocessing their weights were trained with.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from fer.config import ModelSpec
from fer.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from fer.learning.preprocess import InputSpec

# name -> module (relative to fer.learning.models) exposing build(spec, num_classes, input_size)
_REGISTRY: dict[str, str] = {
    "alexnet": "alexnet",
    "baseline": "baseline",
    "faceexpr": "faceexpr",
    "minixception": "minixception",
    "resnet18": "resnet",
}


def available() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(
    name: str,
    spec: ModelSpec | None = None,
    num_classes: int = 3,
    input_size: int = 64,
    *,
    emotion_classes: Mapping[str, str] | None = None,
) -> nn.Module:
    """Build a freshly initialised (or pretrained, per ``spec``) model by name.

    Args:
        emotion_classes: FER2013 emotion → class, for architectures with a 7-emotion layer
            (see :func:`fer.learning.models.emotions.emotion_classes`); ignored by the others.

    Raises:
        ConfigError: unknown name (the message lists the available ones), or ``pretrained`` /
            ``head: mapped`` asked of an architecture without packaged emotion weights.
        ModelError: ``spec.pretrained_path`` is missing or does not fit the architecture, or
            the packaged weights of ``spec.pretrained`` are missing or corrupt.
    """
    module = _module(name)
    spec = spec or ModelSpec()
    if (spec.pretrained or spec.head == "mapped") and not hasattr(module, "EMOTIONS"):
        key = "pretrained" if spec.pretrained else "head"
        raise ConfigError(
            f"models.{name}.{key}: {name} has no packaged real-face weights nor emotion layer "
            "(those are minixception and faceexpr; for local weights use pretrained_path)"
        )
    options = {}
    if (
        emotion_classes is not None
        and "emotion_classes" in inspect.signature(module.build).parameters
    ):
        options["emotion_classes"] = emotion_classes
    return module.build(spec, num_classes=num_classes, input_size=input_size, **options)


def input_spec(name: str) -> InputSpec | None:
    """The preprocessing an architecture's packaged weights expect, or None if it has none.

    Raises:
        ConfigError: unknown name.
    """
    fn = getattr(_module(name), "input_spec", None)
    return fn() if callable(fn) else None


def _module(name: str) -> ModuleType:
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(
            f"train.model: unknown model {name!r} (available: {', '.join(available())})"
        )
    return importlib.import_module(f"fer.learning.models.{_REGISTRY[key]}")


def read_state(path: Path) -> dict:
    """Read a local weights file (a state dict, or a dict holding one under ``state_dict``).

    Nothing is downloaded: the file must exist. ``weights_only=True``: no pickled code runs.
    """
    import torch

    if not path.is_file():
        raise ModelError(f"{path}: pretrained weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a state dict")
    return state


def load_matching(model: nn.Module, state: dict, source: Path) -> int:
    """Copy the tensors of ``state`` whose name and shape fit ``model``; returns how many.

    Heads of a different class count are skipped (they stay randomly initialised), so ImageNet
    weights can seed a 3-class model.
    """
    own = model.state_dict()
    usable = {
        k: v
        for k, v in state.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) == tuple(own[k].shape)
    }
    if not usable:
        raise ModelError(f"{source}: no tensor in this file fits the model")
    model.load_state_dict(usable, strict=False)
    return len(usable)

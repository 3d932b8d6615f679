"""Seven emotions to our three classes: the pure mapping behind the pretrained models' head.

A pretrained expression model scores 7 emotions, each model in its own order and spelling. The
classes they fall into come from the params: ``import.fer2013`` names an expression folder for
each FER2013 emotion (e.g. ``surprise: awe``), and ``taxonomy`` puts that folder in a class
(``awe`` → negative). The same two sections decide how the FER2013 images are labelled, so a
model's 3-class answer always means what our labels mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from fer import CLASSES, FER2013_EMOTIONS
from fer.errors import ConfigError

if TYPE_CHECKING:
    from torch.nn import Module

    from fer.config import ModelSpec

ALIASES: dict[str, str] = {"fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
"""Other spellings (face-api's labels) of the FER2013 emotion names."""

DEFAULT_EMOTION_CLASSES: dict[str, str] = {
    "angry": "negative",
    "disgust": "negative",
    "fear": "negative",
    "happy": "positive",
    "sad": "negative",
    "surprise": "negative",
    "neutral": "neutral",
}
"""What the default ``import.fer2013`` and ``taxonomy`` params give (surprise → awe →
negative)."""


def canonical(emotion: str) -> str:
    """FER2013 spelling of an emotion name (``fearful`` → ``fear``)."""
    key = emotion.strip().lower()
    return ALIASES.get(key, key)


def emotion_classes(
    fer2013: Mapping[str, str], taxonomy: Mapping[str, Sequence[str]]
) -> dict[str, str]:
    """Class of each FER2013 emotion under the params (``import.fer2013``, ``taxonomy``).

    Raises:
        ConfigError: an emotion without a folder, or a folder outside the taxonomy (naming
            the ``import.fer2013.<emotion>`` key).
    """
    from fer.data.importers import fer2013_folders
    from fer.labels import Taxonomy

    tax = Taxonomy(taxonomy)
    folders = fer2013_folders(fer2013, tax)
    return {e: str(tax.class_of(f)) for e, f in zip(FER2013_EMOTIONS, folders, strict=True)}


def class_indices(
    emotions: Sequence[str],
    classes_of: Mapping[str, str] | None = None,
    classes: Sequence[str] = CLASSES,
) -> list[int]:
    """Class index of each of a model's emotions (in the model's output order).

    Args:
        emotions: the model's output labels, any spelling in :data:`ALIASES`.
        classes_of: FER2013 emotion → class name (default: :data:`DEFAULT_EMOTION_CLASSES`).
        classes: the class order of the 3-way output.

    Raises:
        ConfigError: an emotion the mapping lacks, a class name not in ``classes``, or a class
            no emotion maps to (its probability would always be 0).
    """
    mapping = {canonical(k): v for k, v in (classes_of or DEFAULT_EMOTION_CLASSES).items()}
    out = []
    for emotion in emotions:
        name = canonical(emotion)
        if name not in mapping:
            raise ConfigError(f"import.fer2013.{name}: missing (map it to an expression)")
        if mapping[name] not in classes:
            raise ConfigError(
                f"import.fer2013.{name}: class {mapping[name]!r} is not one of "
                f"{', '.join(classes)}"
            )
        out.append(list(classes).index(mapping[name]))
    empty = [c for i, c in enumerate(classes) if i not in out]
    if empty:
        raise ConfigError(
            f"import.fer2013: no emotion maps to class {empty[0]!r}, so a pretrained model "
            "could never predict it (map one to a folder of that class)"
        )
    return out


def emotion_model(
    net: Callable[..., Module],
    emotions: Sequence[str],
    spec: ModelSpec,
    num_classes: int,
    emotion_classes: Mapping[str, str] | None,
    load_weights: Callable[..., None],
    weights_name: str,
) -> Module:
    """An emotion network with the mapped head (``head: mapped``) or a fresh ``num_classes``
    layer; with ``spec.pretrained``, its packaged weights loaded by ``load_weights``.

    ``net(outputs)`` or ``net(len(emotions), head)`` builds the network; ``weights_name`` is its
    entry in :data:`fer.learning.models.pretrained.CATALOG`.
    """
    from fer.learning.models.layers import MappedHead

    mapped = spec.resolved_head() == "mapped"
    if mapped:
        model = net(
            len(emotions), MappedHead(class_indices(emotions, emotion_classes), num_classes)
        )
    else:
        model = net(num_classes)
    if spec.pretrained:
        from fer.learning.models.pretrained import weights_path

        load_weights(model, weights_path(weights_name), classifier=mapped)
    return model

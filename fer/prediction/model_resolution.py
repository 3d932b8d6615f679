"""Resolve `fer predict --model` to a local model folder holding ``model.pt``.

An explicit ``--model`` is used alone (a local folder or ``model.pt`` file, a logged MLflow
model folder, an MLflow model URI, or an architecture name under ``train.out_dir``); without
it, ``predict.model`` (default ``models:/fer-classifier@champion``). When that cannot be
resolved or read (no registry yet, a damaged store, a missing artifact folder) the command
stops with one line naming what it tried; it never silently switches to another model. Only
``predict.fallback`` (a model folder or name the user chose) is tried next, with a warning.
Local paths never import mlflow, so predicting with a model folder starts fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer.errors import ModelError, TrackingError

if TYPE_CHECKING:
    from fer.config import Config
    from fer.faces.recipes import FaceRecipe

WEIGHTS = "model.pt"
# A URI scheme of two or more letters (``runs:``, ``models:``, ``file:``, ``s3:``), so that a
# Windows drive letter (``C:``) is still read as a path.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights were found: ``path`` holds ``model.pt``; ``source`` is what was asked."""

    path: Path
    source: str
    how: str  # "local", "mlflow" or "fallback"


def is_uri(text: str) -> bool:
    """True for MLflow/artifact URIs (``runs:/...``, ``models:/...``, ``file:...``)."""
    return bool(_SCHEME.match(text)) and not text.startswith(PRETRAINED)


def find_weights(root: Path) -> Path | None:
    """The folder holding ``model.pt`` at or below ``root`` (a logged pyfunc keeps it in
    ``artifacts/``); the shallowest wins. None when there is none."""
    if root.is_file():
        return root.parent if root.name == WEIGHTS else None
    if (root / WEIGHTS).is_file():
        return root
    found = sorted(root.rglob(WEIGHTS), key=lambda p: (len(p.parts), str(p)))
    return found[0].parent if found else None


def _local(text: str) -> Path | None:
    path = Path(text).expanduser()
    if not path.exists():
        return None
    folder = find_weights(path)
    if folder is None:
        raise ModelError(f"--model {text}: no {WEIGHTS} in {path}")
    return folder


def _from_mlflow(cfg: Config, uri: str) -> Path:
    # fer.tracking imports mlflow only when called: a local --model never pays for it.
    from fer.tracking import download_model_artifacts, tracking_uri

    store = tracking_uri(cfg.tracking)
    if store.startswith("sqlite:///") and uri.startswith(("models:", "runs:")):
        # mlflow would create an empty store here; say that there is none instead.
        db = Path(store.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ModelError(f"model {uri!r}: tracking store {store} does not exist ({db})")
    local = download_model_artifacts(cfg.tracking, uri)
    folder = find_weights(local)
    if folder is None:
        raise ModelError(f"model {uri!r} resolved to {local}, which holds no {WEIGHTS}")
    return folder


def resolve_model(cfg: Config, model: str | None) -> ResolvedModel:
    """Find the model folder for ``model`` (the ``--model`` value) or the configured default.

    Raises:
        ModelError: nothing resolved; the message lists what was looked for.
    """
    if model:
        return _resolve_explicit(cfg, model)
    default = cfg.predict.model
    try:
        if is_uri(default) and not cfg.tracking.enabled:
            raise ModelError(f"{default}: tracking.enabled is false")
        return _resolve_explicit(cfg, default, how="mlflow" if is_uri(default) else "local")
    except (ModelError, TrackingError) as exc:
        if cfg.predict.fallback is None:
            hint = (
                "(train and register one with `dvc repro`: only a model that reads real faces "
                "becomes the champion, never one fitted to the sandbox's drawn faces; or pass "
                "--model DIR_OR_URI or pretrained:NAME, or set predict.fallback)"
            )
            raise type(exc)(
                f"predict.model {default}: {str(exc).removeprefix(f'model {default!r}: ')} "
                + ("" if isinstance(exc, TrackingError) else hint)
            ) from None
        why = str(exc)
    fallback = _resolve_explicit(cfg, cfg.predict.fallback, how="fallback")
    import sys

    print(
        f"warning: {why}; using predict.fallback {cfg.predict.fallback} instead",
        file=sys.stderr,
    )
    return fallback


PRETRAINED = "pretrained:"
"""``--model pretrained:NAME``: a packaged real-face model as it is (zero-shot), no training."""


def pretrained_model(cfg: Config, name: str) -> Path:
    """A model folder for packaged real-face weights, zero-shot; built once, then reused.

    The 7 emotions are pooled into our classes by ``import.fer2013`` + ``taxonomy``; faces are
    cut by the model's own package's recipe (PyPI ``fer``'s box for minixception, face-api's
    landmark box for faceexpr; :func:`~fer.learning.models.pretrained.package_recipe`), found
    by its package's detector where fer has it (PyPI ``fer``'s Haar cascade for minixception,
    :func:`~fer.learning.models.pretrained.package_detector`), else params'. Written under
    ``train.cache_dir/pretrained/``, keyed by all of that, so a params change builds a new one.

    Raises:
        ModelError: unknown name, or its weights missing or corrupt (run `fer weights`).
    """
    import hashlib
    import json

    from fer.learning.models.pretrained import (
        CATALOG,
        package_detector,
        package_recipe,
        provenance,
    )

    classifiers = [n for n, source in CATALOG.items() if source.role == "expressions"]
    if name not in classifiers:
        known = ", ".join(classifiers)
        raise ModelError(f"--model {PRETRAINED}{name}: no such pretrained model (known: {known})")
    from fer.learning.models.emotions import emotion_classes

    mapping = emotion_classes(cfg.import_.fer2013, cfg.taxonomy)
    config = {
        "arch": name,
        "pretrained": provenance(name),
        "emotion_classes": mapping,
        "crop": cfg.detect.crop.model_dump(mode="json"),
        "detect": package_detector(name, cfg.detect.detector()).model_dump(mode="json"),
        "max_pixels": cfg.ingest.max_pixels,
    }
    recipe = package_recipe(name)
    key_of = {**config, "recipe": recipe.to_dict()}
    key = hashlib.sha256(json.dumps(key_of, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cfg.train.cache_dir) / "pretrained" / f"{name}-{key}"
    if not (folder / WEIGHTS).is_file():
        _write_pretrained(folder / WEIGHTS, name, mapping, config, recipe)
    return folder


def _write_pretrained(
    path: Path, name: str, mapping: dict, config: dict, recipe: FaceRecipe
) -> None:
    import torch

    from fer.config import ModelSpec
    from fer.io import atomic_path
    from fer.learning.models import build_model, input_spec
    from fer.prediction.inference import model_payload

    spec = ModelSpec(pretrained=True)
    net = build_model(name, spec, emotion_classes=mapping)
    payload = model_payload(
        net, arch=name, spec=spec.for_rebuild().model_dump(mode="json"),
        input_spec=input_spec(name), config={**config, "model": spec.model_dump(mode="json")},
        recipe=recipe,
    )  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _resolve_explicit(cfg: Config, text: str, how: str | None = None) -> ResolvedModel:
    if text.startswith(PRETRAINED):
        return ResolvedModel(pretrained_model(cfg, text[len(PRETRAINED) :]), text, how or "local")
    if is_uri(text) and not text.startswith("file:"):
        return ResolvedModel(_from_mlflow(cfg, text), text, how or "mlflow")
    if text.startswith("file:"):
        # file: URIs may point at a logged model folder on disk: no mlflow needed then.
        from urllib.parse import unquote, urlparse

        local = Path(unquote(urlparse(text).path))
        folder = find_weights(local) if local.exists() else None
        if folder is None:
            raise ModelError(f"--model {text}: {local} holds no {WEIGHTS}")
        return ResolvedModel(folder, text, how or "local")
    folder = _local(text)
    if folder is not None:
        return ResolvedModel(folder, text, how or "local")
    named = Path(cfg.train.out_dir) / text
    if "/" not in text and "\\" not in text and (named / WEIGHTS).is_file():
        return ResolvedModel(named, text, how or "local")
    raise ModelError(
        f"--model {text}: not found (looked for a folder or file {Path(text)}, "
        f"{named / WEIGHTS}, and it is not an MLflow URI such as models:/NAME@ALIAS)"
    )

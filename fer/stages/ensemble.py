"""`fer ensemble MODEL MODEL... --out DIR [--weights W...] [--fit DIR]`: several models as one.

Each ``MODEL`` is what ``fer predict --model`` takes (a folder, an MLflow URI,
``pretrained:NAME``). The ensemble is one ``DIR/model.pt`` (fer.prediction.ensemble) that
``fer predict --model DIR`` and ``fer api --model DIR`` load like any model: every member cuts
each face by its own recipe, and their probabilities are averaged with the weights.

The weights are given (``--weights``; default equal), or fitted (``--fit DIR``): the grid
weights whose mix reads a labelled folder best (one sub-folder per expression of the taxonomy,
like ``ingest.raw_dir``, or per FER2013 emotion: ``fear``, ``sad``...; the largest face of
each image, or the whole image with ``--precropped``). Fit on faces the ensemble will not be
tested on. ``DIR/ensemble.json`` records the members, the weights and the fit. An existing
``DIR/model.pt`` is never replaced.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES
from fer.config import MAX_TTA_SHIFT
from fer.errors import InputError
from fer.io import atomic_path, write_json
from fer.prediction.inference import WEIGHTS
from fer.progress import bar

if TYPE_CHECKING:
    from fer.config import Config
    from fer.prediction.ensemble import FaceEnsemble

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def run(
    cfg: Config,
    *,
    models: list[str],
    out: Path,
    weights: list[float] | None = None,
    fit: Path | None = None,
    fit_pattern: str = "*",
    precropped: bool = False,
    flip: bool = False,
    shift: float = 0.0,
    step: float = 0.1,
) -> dict[str, Any]:
    """Build the ensemble and write ``out/model.pt`` and ``out/ensemble.json``.

    ``flip``, ``shift``: test-time views of every member (``train.tta_flip``, ``tta_shift``).

    Returns:
        What ``ensemble.json`` holds: ``members``, ``weights``, ``flip``, ``shift``, ``fit``.

    Raises:
        InputError: ``out`` already holds a model, both or neither of weights/fit problems,
            a ``shift`` outside [0, ``MAX_TTA_SHIFT``], or a fit folder with no usable labelled
            image.
        ModelError: a member does not resolve or load, or the members do not fit together.
    """
    import torch

    from fer.prediction.ensemble import FaceEnsemble, ensemble_payload
    from fer.prediction.inference import read_payload
    from fer.prediction.model_resolution import resolve_model

    target = out / WEIGHTS
    if target.exists():
        raise InputError(f"{target}: exists; choose another --out (nothing is replaced)")
    if weights is not None and fit is not None:
        raise InputError("give --weights or --fit, not both")
    if not 0.0 <= shift <= MAX_TTA_SHIFT:
        raise InputError(f"--shift {shift}: a fraction of the face's side in [0, {MAX_TTA_SHIFT}]")
    payloads = [read_payload(resolve_model(cfg, m).path) for m in models]
    detect = {"detect": ensemble_detector(cfg, payloads)}
    start = weights if weights is not None else [1.0] * len(models)
    payload = ensemble_payload(
        payloads, start, names=models, flip=flip, shift=shift, config=detect
    )
    summary: dict[str, Any] = {"members": models, "flip": flip, "shift": shift, "fit": None}
    if fit is not None:
        ensemble = FaceEnsemble.from_payload(payload, batch_size=cfg.predict.batch_size)
        fitted, summary["fit"] = fit_on_folder(cfg, ensemble, fit, fit_pattern, precropped, step)
        payload["weights"] = fitted
    summary["weights"] = payload["weights"]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    write_json(out / "ensemble.json", summary)
    shown = ", ".join(f"{m} {w:.2f}" for m, w in zip(models, payload["weights"], strict=True))
    print(f"ensemble: {shown} -> {target}", file=sys.stderr)
    return summary


def ensemble_detector(cfg: Config, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """The detector settings an ensemble finds faces with: params' ``detect``, or for one
    member (a model read with test-time views) the member's own (PyPI fer's Haar cascade for
    ``pretrained:minixception``)."""
    own = payloads[0].get("config", {}).get("detect") if len(payloads) == 1 else None
    return own if isinstance(own, dict) else cfg.detect.detector().model_dump(mode="json")


def labelled_images(
    root: Path, class_of: Callable[[str], str | None], pattern: str = "*"
) -> list[tuple[Path, int]]:
    """``(image, class index)`` for every image under ``root/<folder>/`` whose name matches
    ``pattern``, sorted; ``class_of`` names each folder's class, and a folder it does not know
    is an error.

    Raises:
        InputError: ``root`` is not a folder, or holds unknown folders.
    """
    if not root.is_dir():
        raise InputError(f"--fit {root}: not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if class_of(p.name) is None]
    if unknown:
        raise InputError(
            f"--fit {root}: folders not in the taxonomy (nor FER2013 emotions): "
            + ", ".join(unknown)
        )
    return [
        (path, CLASSES.index(str(class_of(folder.name))))
        for folder in folders
        for path in sorted(folder.rglob(pattern))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]


def folder_classes(cfg: Config) -> Callable[[str], str | None]:
    """A folder name's class: an expression of the taxonomy, or a FER2013 emotion (``fear``,
    ``sad``...) through ``import.fer2013``, as ``fer import`` files it."""
    from fer.labels import Taxonomy

    taxonomy = Taxonomy(cfg.taxonomy)
    emotions = {k.lower(): v for k, v in cfg.import_.fer2013.items()}

    def class_of(name: str) -> str | None:
        return taxonomy.class_of(name) or taxonomy.class_of(emotions.get(name.strip().lower(), ""))

    return class_of


def fit_on_folder(
    cfg: Config, ensemble: FaceEnsemble, root: Path, pattern: str, precropped: bool, step: float
) -> tuple[list[float], dict[str, Any]]:
    """Fit the weights on a labelled folder (largest face per image).

    Returns:
        ``(weights, fit)``: ``fit`` holds the folder, ``images``, ``faces`` (read), the best
        mix's ``accuracy`` and ``log_loss``, and each member's own ``member_accuracy``.

    Raises:
        InputError: no labelled image, or no face found in any.
    """
    from fer.data.images import DecodeError, load_rgb
    from fer.faces.detectors import create_detector
    from fer.faces.recipes import WholeImage
    from fer.prediction.ensemble import fit_weights

    items = labelled_images(root, folder_classes(cfg), pattern)
    if not items:
        raise InputError(f"--fit {root}: no images matching {pattern!r} in expression folders")
    cutter = ensemble.face_cutter(default=cfg.detect.crop)
    if precropped:
        cutter, detector = cutter.whole_image(), WholeImage()
    else:
        detector = create_detector(ensemble.detector_settings(default=cfg.detect.detector()))
    crops, labels = [], []
    for path, label in bar(items, desc="fit ensemble", unit="img"):
        try:
            rgb = load_rgb(path, max_pixels=cfg.ingest.max_pixels)
        except DecodeError:
            continue
        faces = detector.detect(rgb)
        if faces:
            largest = max(faces, key=lambda f: f.w * f.h)
            crops.extend(cutter.cut(rgb, [largest]))
            labels.append(label)
    if not labels:
        raise InputError(f"--fit {root}: no face found in any of {len(items)} images")
    probs = ensemble.member_probs(crops)
    y = np.asarray(labels)
    fitted, score = fit_weights(probs, y, step=step)
    return fitted, {
        "folder": root.name,
        "pattern": pattern,
        "images": len(items),
        "faces": len(labels),
        **score,
        "member_accuracy": [float((p.argmax(1) == y).mean()) for p in probs],
    }

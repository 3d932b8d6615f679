"""Ensembles: several models read each face, each cut by its own recipe; probabilities averaged.

An ensemble is one ``model.pt`` (``arch: "ensemble"``) that holds its members' own ``model.pt``
dicts, their weights, and their test-time views (``tta_flip``, ``tta_shift``), so ``fer
predict`` and ``fer api`` load it like any model (:func:`load_for_inference`). Each member keeps
its face recipe: the ensemble's cutter (:class:`EnsembleCutter`) gives every face one crop per
member, and :meth:`FaceEnsemble.predict_proba` returns ``sum_i w_i * p_i``.
:func:`fit_weights` picks the weights that read a labelled set best (``fer ensemble --fit``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer.config import ENSEMBLE
from fer.errors import ModelError
from fer.prediction.inference import FaceClassifier, face_records, read_payload, weights_file

if TYPE_CHECKING:
    from fer.config import Config, CropConfig, DetectorSettings
    from fer.faces.detectors import Face
    from fer.faces.recipes import FaceCutter
    from fer.learning.splits import SplitData

MemberCrops = tuple[np.ndarray, ...]
"""One face cut once per member, in member order."""


def ensemble_payload(
    members: Sequence[dict[str, Any]],
    weights: Sequence[float],
    *,
    names: Sequence[str],
    flip: bool = False,
    shift: float = 0.0,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``model.pt`` dict of an ensemble of member ``model.pt`` dicts (plain types, tensors).

    ``flip``, ``shift``: every member also reads the mirrored face, and the face moved by
    ``shift`` of its input side (``train.tta_flip``, ``train.tta_shift``); with either, one
    member is enough (a model read with test-time views).
    ``config``: kept as the ensemble's ``config`` (e.g. ``detect``: its detector settings).

    Raises:
        ModelError: fewer than two members (one without test-time views), a nested ensemble,
            mismatched classes, or weights that are not one non-negative number per member
            with a positive sum.
    """
    if len(members) < (1 if flip or shift > 0 else 2):
        raise ModelError("an ensemble needs at least two models (or one read with --flip or "
                         "--shift)")  # fmt: skip
    if any(m.get("arch") == ENSEMBLE for m in members):
        raise ModelError("an ensemble cannot hold another ensemble")
    classes = [list(m.get("classes", [])) for m in members]
    if any(c != classes[0] for c in classes):
        raise ModelError(f"ensemble members answer different classes: {classes}")
    w = normalized_weights(weights, len(members))
    stored = [_with_views(m, flip, shift) for m in members]
    return {
        "format": 1,
        "arch": ENSEMBLE,
        "classes": classes[0],
        "members": stored,
        "names": list(names),
        "weights": w,
        "config": config or {},
    }


def normalized_weights(weights: Sequence[float], n: int) -> list[float]:
    """Weights scaled to sum to 1.

    Raises:
        ModelError: not ``n`` of them, a negative one, or a zero sum.
    """
    w = [float(v) for v in weights]
    if len(w) != n or min(w) < 0 or sum(w) <= 0:
        raise ModelError(f"ensemble weights {w}: need {n} non-negative numbers, sum > 0")
    return [v / sum(w) for v in w]


def _with_views(payload: dict[str, Any], flip: bool, shift: float) -> dict[str, Any]:
    """``payload`` whose test-time views also include ``flip`` and ``shift`` (never fewer)."""
    if not flip and shift <= 0:
        return payload
    config = dict(payload.get("config", {}))
    train = dict(config.get("train", {}))
    train["tta_flip"] = bool(train.get("tta_flip", False)) or flip
    if shift > 0:
        train["tta_shift"] = shift
    config["train"] = train
    return {**payload, "config": config}


class EnsembleCutter:
    """Cuts every face once per member, each by its member's recipe."""

    def __init__(self, cutters: Sequence[FaceCutter]) -> None:
        self.cutters = list(cutters)

    def cut(self, image_rgb: np.ndarray, faces: Sequence[Face]) -> list[MemberCrops]:
        """One :data:`MemberCrops` per face, in order."""
        return self.cut_many([(image_rgb, faces)])[0]

    def cut_many(
        self, images: Sequence[tuple[np.ndarray, Sequence[Face]]]
    ) -> list[list[MemberCrops]]:
        """:meth:`cut` of several images, each member's landmarks found in one batch."""
        per_member = [c.cut_many(images) for c in self.cutters]
        return [
            [tuple(crops) for crops in zip(*per_image, strict=True)]
            for per_image in zip(*per_member, strict=True)
        ]

    def whole_image(self) -> EnsembleCutter:
        """The cutter for images that are already one face crop (``--precropped``)."""
        return EnsembleCutter([c.whole_image() for c in self.cutters])


class FaceEnsemble:
    """Members (:class:`FaceClassifier`) and weights; the interface of a classifier."""

    arch = ENSEMBLE

    def __init__(
        self,
        members: Sequence[FaceClassifier],
        weights: Sequence[float],
        *,
        names: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.members = list(members)
        self.weights = normalized_weights(weights, len(self.members))
        self.names = list(names) or [m.arch for m in self.members]
        self.classes = self.members[0].classes
        self.meta = meta or {}
        self.threads = self.members[0].threads

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        inference: bool = True,
    ) -> FaceEnsemble:
        """The ensemble of an ``arch: ensemble`` ``model.pt`` dict, members ready to predict
        (``inference``: as :meth:`FaceClassifier.for_inference`, else as evaluation loads).

        Raises:
            ModelError: a member that does not load, or no members.
        """
        members = payload.get("members")
        if not isinstance(members, list) or not members:
            raise ModelError("ensemble model file: needs a list of members")
        load = FaceClassifier.for_inference_payload if inference else FaceClassifier.from_payload
        loaded = [load(m, device=device, batch_size=batch_size) for m in members]
        meta = {k: v for k, v in payload.items() if k != "members"}
        ensemble = cls(loaded, payload.get("weights", []), names=payload.get("names", []),
                       meta=meta)  # fmt: skip
        if ensemble.needs_landmarks:  # one landmark net for every member that cuts by them
            first = next(m for m in loaded if m.recipe().needs_landmarks)
            ensemble.share_landmarker(first.landmarker())
        return ensemble

    @property
    def needs_landmarks(self) -> bool:
        """Does a member cut its faces by landmarks?"""
        return any(m.recipe().needs_landmarks for m in self.members)

    def share_landmarker(self, landmarker: Any) -> None:
        """Every member that cuts by landmarks uses ``landmarker``."""
        for member in self.members:
            member.share_landmarker(landmarker)

    def face_cutter(self, default: CropConfig | None = None) -> EnsembleCutter:
        """One cutter per member (:meth:`FaceClassifier.face_cutter`)."""
        return EnsembleCutter([m.face_cutter(default) for m in self.members])

    def detector_settings(self, default: DetectorSettings | None = None) -> DetectorSettings:
        """The ensemble's stored detector settings, else its first member's."""
        from fer.config import DetectorSettings

        saved = self.meta.get("config", {}).get("detect")
        if isinstance(saved, dict):
            return DetectorSettings.from_stored(saved)
        return self.members[0].detector_settings(default)

    def member_probs(self, crops: Sequence[MemberCrops]) -> list[np.ndarray]:
        """Each member's probabilities ``(N, classes)`` for its own crops."""
        return [m.predict_proba([face[i] for face in crops]) for i, m in enumerate(self.members)]

    def predict_proba(self, crops: Sequence[MemberCrops]) -> np.ndarray:
        """The weighted mean of the members' probabilities, ``(N, classes)``."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return combine(self.member_probs(crops), self.weights)

    def records(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """``{"probs": {class: p}, "label"}`` per row of ``probs``."""
        return face_records(self.classes, probs)


def combine(member_probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_i w_i * p_i`` as float32; pure."""
    pairs = zip(weights, member_probs, strict=True)
    total = sum(w * np.asarray(p, dtype=np.float64) for w, p in pairs)
    return np.asarray(total, dtype=np.float32)


def weight_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``n`` members on a ``step`` grid of the simplex (sum 1); pure."""
    ticks = round(1 / step)
    if ticks < 1 or abs(ticks * step - 1) > 1e-9:
        raise ValueError(f"step {step}: must divide 1 (e.g. 0.1, 0.05)")
    return [
        tuple(k / ticks for k in combo)
        for combo in itertools.product(range(ticks + 1), repeat=n)
        if sum(combo) == ticks
    ]


def fit_weights(
    member_probs: Sequence[np.ndarray], labels: np.ndarray, *, step: float = 0.1
) -> tuple[list[float], dict[str, float]]:
    """The grid weights whose mix reads ``labels`` best: highest accuracy, then lowest log loss.

    Args:
        member_probs: per member, ``(N, classes)`` probabilities of the same N faces.
        labels: the true class index per face.
        step: grid step (weights are multiples of it, summing to 1).

    Returns:
        ``(weights, {"accuracy", "log_loss"})`` of the best mix.
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("no labelled faces to fit ensemble weights on")
    best: tuple[tuple[float, float], list[float], dict[str, float]] | None = None
    for w in weight_grid(len(member_probs), step):
        mix = combine(member_probs, w).astype(np.float64)
        score = {
            "accuracy": float((mix.argmax(1) == y).mean()),
            "log_loss": float(-np.log(np.clip(mix[np.arange(len(y)), y], 1e-12, 1)).mean()),
        }
        key = (-score["accuracy"], score["log_loss"])
        if best is None or key < best[0]:
            best = (key, list(w), score)
    assert best is not None
    return best[1], best[2]


def load_for_inference(
    path: str | Path, *, device: str = "cpu", batch_size: int = 64
) -> FaceClassifier | FaceEnsemble:
    """A model folder or ``model.pt`` ready for ``fer predict`` / ``fer api`` / the pyfunc: a
    :class:`FaceClassifier` (:meth:`FaceClassifier.for_inference`), or a :class:`FaceEnsemble`.

    Raises:
        ModelError: missing, unreadable or not a fer model file.
    """
    payload = read_payload(path)
    if payload.get("arch") == ENSEMBLE:
        return FaceEnsemble.from_payload(payload, device=device, batch_size=batch_size)
    return FaceClassifier.for_inference_payload(
        payload, device=device, batch_size=batch_size, source=weights_file(path)
    )


def load_model(
    path: str | Path, *, device: str = "cpu", batch_size: int = 64
) -> FaceClassifier | FaceEnsemble:
    """A model folder or ``model.pt`` as evaluation loads it (:meth:`FaceClassifier.load`:
    the process's threads, batch norms as trained), a single model or an ensemble.

    Raises:
        ModelError: missing, unreadable or not a fer model file.
    """
    payload = read_payload(path)
    if payload.get("arch") == ENSEMBLE:
        return FaceEnsemble.from_payload(
            payload, device=device, batch_size=batch_size, inference=False
        )
    return FaceClassifier.from_payload(
        payload, device=device, batch_size=batch_size, source=weights_file(path)
    )


def assemble_on_split(
    cfg: Config, name: str, data: SplitData, config: dict[str, Any], *, device: str = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``model.pt`` dict of the ensemble entry ``models.<name>`` and its validation record.

    Its members (``pretrained:NAME``) are read as shipped; each validation face is cut again by
    each member's recipe (:func:`fer.prediction.recut.model_crops`). Without given ``weights``
    they are the grid weights that read the validation split best (:func:`fit_weights`).

    Returns:
        ``(payload, record)``: ``record`` holds the columns of ``history.csv`` ("epoch 0"),
        scored on the validation split, plus ``weights``, ``member_val_acc`` and
        ``needs_landmarks`` (a member cuts by landmarks).

    Raises:
        InputError: no validation faces.
        ModelError: a member that does not resolve or load.
    """
    from fer import CLASSES
    from fer.errors import InputError
    from fer.learning.evaluation import classification_report
    from fer.learning.splits import subset
    from fer.prediction.model_resolution import resolve_model
    from fer.prediction.recut import model_crops

    rows, crops, y = subset(data, "val")
    if len(rows) == 0:
        raise InputError(f"models.{name}: an ensemble is scored (and its weights fitted) on "
                         "the validation split, and it has no faces")  # fmt: skip
    spec = cfg.model_spec(name)
    payloads = [read_payload(resolve_model(cfg, m).path) for m in spec.members]
    start = spec.weights if spec.weights is not None else [1.0] * len(payloads)
    payload = ensemble_payload(payloads, start, names=spec.members, flip=spec.flip,
                               shift=spec.shift, config=config)  # fmt: skip
    ensemble = FaceEnsemble.from_payload(payload, device=device, batch_size=256, inference=False)
    table = data.table.iloc[rows].reset_index(drop=True)
    probs = ensemble.member_probs(model_crops(cfg, ensemble, table, crops))
    if spec.weights is None:
        payload["weights"], _ = fit_weights(probs, y, step=spec.weight_step)
    mix = combine(probs, payload["weights"])
    report = classification_report(y, mix.argmax(1), CLASSES)
    picked = np.clip(mix[np.arange(len(y)), y], 1e-12, 1)
    nan = float("nan")
    record = {
        "epoch": 0, "train_loss": nan, "train_acc": nan, "val_loss": float(-np.log(picked).mean()),
        "val_acc": report["accuracy"], "val_macro_f1": report["macro_f1"], "lr": 0.0,
        "images_per_s": 0.0, "weights": payload["weights"],
        "member_val_acc": [float((p.argmax(1) == y).mean()) for p in probs],
        "needs_landmarks": ensemble.needs_landmarks,
    }  # fmt: skip
    return payload, record

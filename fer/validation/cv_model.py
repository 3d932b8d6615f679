"""The fast model behind mislabel detection: K-fold out-of-sample class probabilities.

Confident learning needs, for every face, class probabilities from a model that never saw that
face. We train one small CNN per fold on the other folds' faces (crops downsampled to
``input_size`` px, decoded once into a uint8 array) and predict the held-out fold. Folds are
stratified by label and grouped by source image, so faces of one photo (or one duplicate group)
never sit on both sides of a fold.

Pure: arrays in, arrays out; the stage decodes the crop files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fer.numerics import pin_cpu_kernels


@dataclass(frozen=True)
class CVSettings:
    """Knobs of the K-fold pass (defaults tuned to meet P/R ≥ 0.8 on the sandbox, fast on CPU)."""

    folds: int = 5
    epochs: int = 8
    seed: int = 0
    input_size: int = 32
    width: int = 32
    batch_size: int = 128
    lr: float = 3e-3
    min_steps: int = 200  # small sets get smaller batches and more epochs, or they underfit
    max_steps: int = 300  # large sets get fewer epochs: the K-fold pass must stay fast
    threads: int = 0  # 0 = auto: one per CPU core for large sets, 1 for small ones


def prepare(images: np.ndarray, input_size: int) -> np.ndarray:
    """Downsample NxHxWx3 uint8 crops to NxSxSx3 uint8 (area interpolation, once)."""
    import cv2

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 images, got shape {images.shape}")
    if images.shape[1:3] == (input_size, input_size):
        return np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty((len(images), input_size, input_size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = cv2.resize(img, (input_size, input_size), interpolation=cv2.INTER_AREA)
    return out


def small_cnn(num_classes: int, width: int = 32) -> object:
    """Three conv blocks (w, 2w, 4w channels) + global average pooling + linear head."""
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, width),
        *block(width, 2 * width),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(4 * width, num_classes),
    )


def fold_indices(
    labels: np.ndarray, groups: Sequence[str] | None, folds: int, seed: int
) -> list[np.ndarray]:
    """Held-out index arrays of a stratified (and, with ``groups``, group-aware) K-fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n = len(labels)
    counts = np.bincount(labels)
    k = int(min(folds, n))
    if k < 2:
        raise ValueError(f"need at least 2 faces for {folds}-fold cross-validation (got {n})")
    x = np.zeros(n)
    if groups is not None and len(set(groups)) < k:
        groups = None  # too few groups to keep them apart; faces are still held out
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [test for _, test in splitter.split(x, labels, groups=np.asarray(groups))]
    if counts[counts > 0].min() < k:
        # StratifiedKFold refuses classes smaller than k; plain shuffled folds still work.
        rng = np.random.default_rng(seed)
        return [np.sort(part) for part in np.array_split(rng.permutation(n), k)]
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(x, labels)]


def out_of_fold_probs(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    settings: CVSettings = CVSettings(),
    *,
    groups: Sequence[str] | None = None,
    on_fold: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Class probabilities for every sample from a model trained without it (K-fold).

    Args:
        images: NxHxWx3 uint8 crops (any size; downsampled to ``settings.input_size``).
        labels: N integer labels (the given, possibly noisy ones).
        num_classes: width of the probability vectors.
        settings: folds, epochs, seed, model size.
        groups: optional group per sample (e.g. source image); a group never spans folds.
        on_fold: called as ``on_fold(done, total)`` after each fold (progress).

    Returns:
        N x num_classes float array of out-of-sample probabilities (rows sum to 1).
    """
    import torch

    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    pin_cpu_kernels()
    x = prepare(images, settings.input_size)
    held_out = fold_indices(labels, groups, settings.folds, settings.seed)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(_threads(settings.threads, len(labels)))
    try:
        for k, test in enumerate(held_out):
            train = np.setdiff1d(np.arange(len(labels)), test, assume_unique=True)
            model = _fit(x[train], labels[train], num_classes, settings, seed=settings.seed + k)
            probs[test] = _predict(model, x[test], settings.batch_size)
            if on_fold is not None:
                on_fold(k + 1, len(held_out))
    finally:
        torch.set_num_threads(previous_threads)
    return probs


def _threads(requested: int, n: int) -> int:
    """Intra-op threads. Small sets use one: their small batches gain nothing from more, and on a
    busy machine OpenMP's spinning threads made them 8x slower (measured: 12 s vs 97 s)."""
    if requested > 0:
        return requested
    return 1 if n < 4000 else (os.cpu_count() or 1)


def _to_tensor(x: np.ndarray) -> object:
    """uint8 NHWC → float NCHW in [-1, 1] (fixed scaling: no statistics to leak across folds)."""
    import torch

    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _fit(x: np.ndarray, y: np.ndarray, num_classes: int, s: CVSettings, *, seed: int) -> object:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = small_cnn(num_classes, s.width)
    batch_size = int(min(s.batch_size, max(16, len(x) // 20)))
    per_epoch = max(1, int(np.ceil(len(x) / batch_size)))
    epochs = max(s.epochs, int(np.ceil(s.min_steps / per_epoch)))
    epochs = max(1, min(epochs, int(np.ceil(s.max_steps / per_epoch))))
    steps = epochs * per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=steps)
    # Class weights: a rare class must not be drowned, or its faces all look "mislabeled".
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / np.maximum(counts, 1) / num_classes, 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    xt = _to_tensor(x)
    yt = torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = xt[idx]
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb[flip] = xb[flip].flip(3)  # horizontal flip: expressions are left-right symmetric
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yt[idx]).backward()
            opt.step()
            sched.step()
    return model


def _predict(model: object, x: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size * 4):
            xb = _to_tensor(x[start : start + batch_size * 4])
            # Average with the mirrored view: cheap test-time augmentation, steadier probabilities.
            logits = model(xb).softmax(1) + model(xb.flip(3)).softmax(1)
            out.append((logits / 2).numpy())
    return np.concatenate(out).astype(np.float64)

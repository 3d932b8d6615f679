"""The training data path: a uint8 crop cache and a tensor-based augmenting batch iterator.

Crops are decoded once into one ``(N, size, size, 3)`` uint8 ``.npy`` under
``.fer_cache/train/<content-hash>.npy`` (memory-mapped on later runs), so an epoch costs only
model compute: no PNG decoding, no PIL, no DataLoader worker processes fighting the training
threads for 2 CPU cores. Augmentation (flip, small rotation/scale/shift, colour jitter) runs on
whole batches with a few tensor ops, drawn from a seeded ``torch.Generator`` whose state is
checkpointed, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fer.io import atomic_path, contained, write_text
from fer.learning.preprocess import InputSpec, preprocess

if TYPE_CHECKING:
    import torch

CACHE_VERSION = 1


@dataclass
class CropSet:
    """Decoded crops, row-aligned with the table they came from.

    ``ok[i]`` is False for rows whose crop could not be read; ``problems`` maps those row
    indices to a reason (``missing``, ``undecodable``), and their image rows are zeros.
    """

    images: np.ndarray
    ok: np.ndarray
    problems: dict[int, str] = field(default_factory=dict)
    key: str = ""


def _decode(data: bytes, size: int) -> np.ndarray | None:
    """PNG/JPEG bytes → RGB uint8 ``(size, size, 3)``, or None when undecodable."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None or arr.ndim != 3 or min(arr.shape[:2]) < 1:
        return None
    if arr.shape[:2] != (size, size):
        arr = cv2.resize(arr, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def load_crops(
    crop_paths: Sequence[str],
    *,
    root: Path,
    size: int,
    cache_dir: Path | None,
    progress: bool = True,
    inside: Path | None = None,
) -> CropSet:
    """Decode crops once into a uint8 cache keyed by their bytes; reuse it when unchanged.

    The key hashes every file's path and bytes (reading ~2k small PNGs takes well under a
    second; decoding them is what the cache saves), so a changed, added or removed crop makes a
    new cache and a DVC checkout that only touches mtimes does not.

    Args:
        crop_paths: paths relative to ``root`` (``splits.parquet``'s ``crop_path``), in row order.
        root: project root.
        size: side of the cached crops (resized when a file differs).
        cache_dir: where ``<key>.npy`` lives; None disables caching (tests, one-off runs).
        inside: the folder every crop must lie in (``detect.crops_dir``); a path resolving
            elsewhere is never read and is reported as ``outside_crops_dir``.
    """
    from fer.progress import bar, enabled

    blobs: list[bytes | None] = []
    problems: dict[int, str] = {}
    h = hashlib.sha256(f"v{CACHE_VERSION}:{size}".encode())
    for i, rel in enumerate(crop_paths):
        path = contained(inside, Path(root).resolve() / rel) if inside else Path(root) / rel
        try:
            data = path.read_bytes() if path is not None else None
            if path is None:
                problems[i] = "outside_crops_dir"
        except OSError:
            data = None
            problems[i] = "missing"
        blobs.append(data)
        h.update(str(rel).encode() + b"\0")
        h.update(hashlib.sha256(data).digest() if data is not None else b"-")
    key = h.hexdigest()[:24]
    n = len(blobs)

    if cache_dir is not None:
        npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        if npy.is_file() and meta.is_file():
            info = json.loads(meta.read_text(encoding="utf-8"))
            images = np.load(npy, mmap_mode="r")
            if images.shape == (n, size, size, 3):
                bad = {int(k): v for k, v in info["problems"].items()}
                ok = np.ones(n, dtype=bool)
                ok[list(bad)] = False
                return CropSet(images=images, ok=ok, problems=bad, key=key)

    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    show = progress and enabled()
    for i, data in enumerate(bar(blobs, desc="decode crops", unit="crop", disable=not show)):
        if data is None:
            continue
        rgb = _decode(data, size)
        if rgb is None:
            problems[i] = "undecodable"
        else:
            images[i] = rgb
    ok = np.ones(n, dtype=bool)
    ok[list(problems)] = False
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_dir / f"{key}.npy") as tmp:
            np.save(tmp, images)
        write_text(
            cache_dir / f"{key}.json",
            json.dumps(
                {"n": n, "size": size, "problems": {str(k): v for k, v in problems.items()}}
            ),
        )
        images = np.load(cache_dir / f"{key}.npy", mmap_mode="r")
    return CropSet(images=images, ok=ok, problems=problems, key=key)


@dataclass(frozen=True)
class AugmentSpec:
    """Augmentation strengths (from ``train``: flip, rotation_deg, crop_jitter, color_jitter)."""

    flip: bool = True
    rotation_deg: float = 10.0
    crop_jitter: float = 0.1
    color_jitter: float = 0.2

    @property
    def active(self) -> bool:
        """Whether any transform would change a pixel."""
        return self.flip or self.rotation_deg > 0 or self.crop_jitter > 0 or self.color_jitter > 0


def augment_batch(x: torch.Tensor, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    """Randomly flip, rotate/scale/shift and colour-jitter a float [0, 1] NCHW batch.

    Geometry is one ``affine_grid``/``grid_sample`` call for the whole batch (reflection
    padding, so no black corners that would teach the model where the crop ends). All randomness
    comes from ``gen`` (a CPU generator, so its state is checkpointable on any device).
    """
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    if n == 0:
        return x
    # Every random number in one CPU draw and one copy: on a GPU, eight small copies per batch
    # would each stall the stream.
    r = torch.rand(8, n, generator=gen).to(x.device, non_blocking=True)

    def u(row: int, lo: float, hi: float) -> torch.Tensor:
        return r[row] * (hi - lo) + lo

    flip = r[0] < 0.5 if spec.flip else None
    if spec.rotation_deg > 0 or spec.crop_jitter > 0:
        angle = u(1, -spec.rotation_deg, spec.rotation_deg) * (math.pi / 180.0)
        scale = u(2, 1.0 - spec.crop_jitter, 1.0)  # zoom in up to crop_jitter, like a random crop
        tx = u(3, -spec.crop_jitter, spec.crop_jitter)
        ty = u(4, -spec.crop_jitter, spec.crop_jitter)
        # The flip rides along in the same sampling pass: mirror the x axis of the grid.
        sx = torch.where(flip, -1.0, 1.0) if flip is not None else 1.0
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        grid = _affine_grid(cos * sx, -sin, tx, sin * sx, cos, ty, x.shape[-2], x.shape[-1])
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    elif flip is not None:
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    if spec.color_jitter > 0:
        j = spec.color_jitter
        bright = u(5, 1 - j, 1 + j).view(n, 1, 1, 1)
        contrast = u(6, 1 - j, 1 + j).view(n, 1, 1, 1)
        sat = u(7, 1 - j, 1 + j).view(n, 1, 1, 1)
        # brightness then contrast around the image mean, as one affine map per image
        mean = x.mean(dim=(1, 2, 3), keepdim=True) * bright
        x = x.mul_(bright * contrast).add_(mean * (1 - contrast))
        grey = x.mean(dim=1, keepdim=True)
        x = x.mul_(sat).add_(grey * (1 - sat))
        x = x.clamp_(0.0, 1.0)
    return x


def _affine_grid(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
    d: torch.Tensor, e: torch.Tensor, f: torch.Tensor, h: int, w: int,
) -> torch.Tensor:  # fmt: skip
    """``F.affine_grid(theta, align_corners=False)`` by broadcasting: 2-5x faster on CPU.

    theta = [[a, b, c], [d, e, f]] per sample (each argument has shape ``(n,)``).
    """
    import torch

    xs = ((torch.arange(w, dtype=torch.float32, device=a.device) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, dtype=torch.float32, device=a.device) * 2 + 1) / h - 1).view(1, h, 1)
    v = [t.view(-1, 1, 1) for t in (a, b, c, d, e, f)]
    gx = v[0] * xs + v[1] * ys + v[2]
    gy = v[3] * xs + v[4] * ys + v[5]
    return torch.stack((gx, gy), dim=-1)


def batches(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    *,
    batch_size: int,
    input_spec: InputSpec,
    device: str | torch.device = "cpu",
    gen: torch.Generator | None = None,
    shuffle: bool = False,
    sample_weights: np.ndarray | None = None,
    augment: AugmentSpec | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches: uint8 rows gathered per batch, then :func:`preprocess`.

    ``images`` is a uint8 array, or a uint8 tensor already on ``device`` (see
    :func:`to_device_if_fits`), gathered there. ``shuffle`` permutes with ``gen``;
    ``sample_weights`` instead draws ``len(labels)`` indices with replacement (balanced
    sampling). The last partial batch is kept (small datasets). ``labels`` is one class index
    per row, or ``(N, classes)`` soft targets (then ``y`` is a float batch of distributions).
    """
    import torch

    n = len(labels)
    if sample_weights is not None:
        w = torch.as_tensor(sample_weights, dtype=torch.double)
        order = torch.multinomial(w, n, replacement=True, generator=gen)
    elif shuffle:
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    resident = isinstance(images, torch.Tensor)
    if resident:
        order = order.to(images.device)
    labels = np.asarray(labels)
    y_type = torch.float32 if labels.ndim == 2 else torch.long
    y_all = torch.as_tensor(labels, dtype=y_type).to(device)
    aug = None
    if augment is not None and augment.active and gen is not None:
        spec = augment

        def aug(x: torch.Tensor) -> torch.Tensor:
            return augment_batch(x, spec, gen)

    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        rows = images[idx] if resident else np.ascontiguousarray(images[idx.numpy()])
        x = preprocess(rows, input_spec, device=device, augment=aug)
        yield x, y_all[idx.to(y_all.device)]


def to_device_if_fits(
    images: np.ndarray, device: str, *, share: float = 0.25
) -> np.ndarray | torch.Tensor:
    """The uint8 crops as a tensor on a CUDA ``device`` when they take at most ``share`` of its
    free memory (batches are then gathered on the GPU, no copy per step); else unchanged."""
    import torch

    if not str(device).startswith("cuda") or images.nbytes == 0:
        return images
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    if images.nbytes > share * free:
        return images
    return torch.from_numpy(np.ascontiguousarray(images)).to(device)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over present classes (absent classes get 0)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0)
    return w


def cpu_threads(requested: int) -> int:
    """``train.threads``: 0 means every core."""
    return requested if requested > 0 else (os.cpu_count() or 1)

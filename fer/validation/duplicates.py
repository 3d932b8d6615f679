"""Exact and near-duplicate images: 64-bit difference hashes, banded lookup, union-find groups.

Duplicates leak between train and test when they land in different splits, so validation lists
them and the split stage keeps each group in one split. Near duplicates (a re-encoded, resized
or slightly edited copy) are found with a difference hash (dHash) of the whole image and of
each face crop: two images are near duplicates when the Hamming distance of their hashes is at
most ``max_distance``.

Comparing all pairs is O(n²). Instead the 64 bits are cut into ``max_distance + 1`` bands: by
the pigeonhole principle two hashes within ``max_distance`` bits agree exactly on at least one
band, so only hashes sharing a band value are compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fer.data.groups import UnionFind

KINDS: tuple[str, ...] = ("exact", "near_image", "near_crop")
"""Duplicate kinds, strongest first (a member's kind is the strongest link it has)."""


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash of an HxW (grey) or HxWx3 uint8 image.

    The image is shrunk to 9x8 grey pixels and each bit says whether a pixel is brighter than
    its right neighbour: robust to re-encoding, scaling and mild colour changes, cheap to compute.
    """
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(image, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


@dataclass(frozen=True)
class Fingerprint:
    """What near-duplicate matching compares: a 64-bit dHash and an 8x8 colour thumbnail."""

    hash: int
    thumb: np.ndarray  # 8x8xC uint8


def fingerprint(image: np.ndarray, min_bits: int = 16, min_step: int = 2) -> Fingerprint | None:
    """Fingerprint of an RGB (or grey) image, or None when it is too flat to compare.

    An image with fewer than ``min_bits`` neighbour pairs differing by ``min_step`` grey levels
    (a blank scene, a smooth crop) hashes to nearly all-zero bits and would match every other
    flat image; such images are left to the exact (content-id) check.
    """
    import cv2

    if image.size == 0 or min(image.shape[:2]) < 2:
        return None  # nothing to compare (a 1x1 file; ingest rejects those by default)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    if int((np.abs(small[:, 1:] - small[:, :-1]) >= min_step).sum()) < min_bits:
        return None
    thumb = cv2.resize(image, (8, 8), interpolation=cv2.INTER_AREA)
    return Fingerprint(dhash(grey), thumb.reshape(8, 8, -1))


def thumb_rms(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two thumbnails, in grey levels (0–255)."""
    if a.shape != b.shape:  # grey vs colour: compare luminance
        a, b = a.mean(axis=-1), b.mean(axis=-1)
    return float(np.sqrt(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2)))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (a ^ b).bit_count()


def near_pairs(
    hashes: Sequence[int],
    max_distance: int,
    verify: Callable[[int, int], bool] | None = None,
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``max_distance`` bits
    (and, with ``verify``, for which ``verify(i, j)`` holds).

    Hashes are bucketed by each of ``max_distance + 1`` bands; only hashes sharing a bucket are
    compared, so the cost grows with the number of true candidates, not with n².
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0 (got {max_distance})")
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    for lo, width in _bands(max_distance):
        mask = (1 << width) - 1
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, h in enumerate(hashes):
            buckets[(int(h) >> lo) & mask].append(i)
        for bucket in buckets.values():
            for pos, i in enumerate(bucket):
                for j in bucket[pos + 1 :]:
                    if (i, j) in seen:
                        continue
                    seen.add((i, j))
                    if hamming(int(hashes[i]), int(hashes[j])) <= max_distance and (
                        verify is None or verify(i, j)
                    ):
                        pairs.append((i, j))
    return sorted(pairs)


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """``(low bit, width)`` of ``max_distance + 1`` bands covering the 64 bits."""
    n = min(max_distance + 1, 64)
    edges = [round(k * 64 / n) for k in range(n + 1)]
    return [(edges[k], edges[k + 1] - edges[k]) for k in range(n)]


def duplicate_groups(
    paths: Sequence[str],
    image_ids: Sequence[str],
    image_prints: Sequence[Fingerprint | None],
    crop_links: Iterable[tuple[int, int]] = (),
    *,
    max_distance: int,
    max_rms: float,
) -> list[dict[str, object]]:
    """Group images that are exact or near duplicates of each other.

    Args:
        paths: one entry per image (unique).
        image_ids: content hash per image; equal ids are exact duplicates.
        image_prints: fingerprint of each image, or None (unreadable or too flat).
        crop_links: pairs of image indices whose face crops are near duplicates
            (see :func:`crop_links`).
        max_distance: largest dHash Hamming distance of a near-duplicate candidate.
        max_rms: largest thumbnail RMS difference (grey levels) confirming a candidate.

    Returns:
        Rows ``{"group", "path", "image_id", "kind"}`` for every image in a group of two or
        more, groups numbered ``dup00001, ...`` in order of their first path, members sorted by
        path; ``kind`` is the strongest link of that member (exact > near_image > near_crop).
    """
    n = len(paths)
    if not (len(image_ids) == len(image_prints) == n):
        raise ValueError("paths, image_ids and image_prints must have the same length")
    order = sorted(range(n), key=lambda i: paths[i])
    rank = {i: r for r, i in enumerate(order)}  # deterministic numbering by path
    uf = UnionFind(n)
    kind_of: dict[int, int] = {}

    def link(i: int, j: int, kind: int) -> None:
        uf.union(rank[i], rank[j])
        for k in (i, j):
            kind_of[k] = min(kind_of.get(k, kind), kind)

    by_id: dict[str, list[int]] = defaultdict(list)
    for i, image_id in enumerate(image_ids):
        if image_id:  # "" means unreadable; never a duplicate of another unreadable file
            by_id[image_id].append(i)
    for members in by_id.values():
        for m in members[1:]:
            link(members[0], m, 0)

    for i, j in _near(image_prints, max_distance, max_rms):
        if image_ids[i] != image_ids[j] or not image_ids[i]:
            link(i, j, 1)
    for i, j in crop_links:
        if i != j:
            link(i, j, 2)

    rows: list[dict[str, object]] = []
    number = 0
    for component in uf.components():
        if len(component) < 2:
            continue
        number += 1
        for r in component:
            i = order[r]
            rows.append(
                {
                    "group": f"dup{number:05d}",
                    "path": paths[i],
                    "image_id": image_ids[i],
                    "kind": KINDS[kind_of[i]],
                }
            )
    return rows


def crop_links(
    crop_image_index: Sequence[int],
    crop_prints: Sequence[Fingerprint | None],
    *,
    max_distance: int,
    max_rms: float,
) -> list[tuple[int, int]]:
    """Pairs of image indices owning near-duplicate face crops (crops of one image ignored).

    Args:
        crop_image_index: for each crop, the index of its source image.
        crop_prints: fingerprint of each crop, or None (unreadable or too flat).
        max_distance: largest dHash Hamming distance of a candidate.
        max_rms: largest thumbnail RMS difference confirming a candidate.
    """
    links: set[tuple[int, int]] = set()
    for a, b in _near(crop_prints, max_distance, max_rms):
        i, j = crop_image_index[a], crop_image_index[b]
        if i != j:
            links.add((min(i, j), max(i, j)))
    return sorted(links)


def _near(
    prints: Sequence[Fingerprint | None], max_distance: int, max_rms: float
) -> list[tuple[int, int]]:
    """Near pairs among fingerprints: dHash candidates confirmed by thumbnails.

    The hash alone is not enough: different faces of similar pose (and drawn sandbox faces)
    have nearby dHashes, measured 4 bits apart at the 5th percentile while re-encoded copies
    reach 6; their colour thumbnails differ by ≥ 15 grey levels RMS, copies by ≤ 5.
    """
    kept = [k for k, fp in enumerate(prints) if fp is not None]
    fps = [prints[k] for k in kept]

    def same(a: int, b: int) -> bool:
        return thumb_rms(fps[a].thumb, fps[b].thumb) <= max_rms  # type: ignore[union-attr]

    pairs = near_pairs([fp.hash for fp in fps], max_distance, same)  # type: ignore[union-attr]
    return [(kept[a], kept[b]) for a, b in pairs]

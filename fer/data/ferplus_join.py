"""FER+ votes → FER2013 images: by row for the CSV, by pixels for Kaggle's image folders.

Kaggle's folders carry no row order, but FER+'s PNGs carry each row's original pixels, so an
image finds its row by its pixels (:class:`PixelIndex`): exact bytes first, then the nearest
pixels within an accept threshold. Pixel-identical rows (FER2013's own duplicates) form a group;
an image takes the group's first row with its Usage (:func:`pick_in_group`). FER+ wrote no PNG
for some rows (empty Image name); when all such rows of a Usage carry the same votes, an image of
that Usage that matches no PNG takes them (:func:`give_png_less_votes`). Pure: arrays and rows
in, matches and counts out (``fer import`` reads the files and writes the votes table).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fer.data.ferplus import SIZE, VoteRow, not_face
from fer.progress import bar

RowMatch = tuple[int, str, float]
"""``(FER+ row or -1, how, distance)`` per image; ``how``: ``row`` | ``exact`` | ``nearest``
(a row), ``no_png`` (the votes of its Usage's PNG-less rows, row -1), ``none`` (no votes) or
``not_48x48`` (not a 48x48 grey image: never compared)."""
NO_MATCH: RowMatch = (-1, "none", float("nan"))
NOT_48X48: RowMatch = (-1, "not_48x48", float("nan"))


def duplicate_vote_groups(keys: Sequence[bytes], votes: Sequence[Sequence[int]]) -> dict[str, int]:
    """Groups of equal ``keys`` (pixel-identical images): how many, and whether their votes
    agree (``identical_votes``) or not (``different_votes``)."""
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    multi = [g for g in groups.values() if len(g) > 1]
    same = sum(len({tuple(votes[i]) for i in g}) == 1 for g in multi)
    return {
        "groups": len(multi),
        "images": sum(len(g) for g in multi),
        "identical_votes": same,
        "different_votes": len(multi) - same,
    }


@dataclass(frozen=True)
class Match:
    """Where an image's pixels were found: an index into :class:`PixelIndex` (-1: none).

    ``how`` is ``exact`` (identical bytes), ``nearest`` (within the threshold) or ``none``;
    ``distance`` the mean absolute grey difference to the match (or to the nearest image, when
    none matched); ``runner_up`` the distance to the nearest image whose pixels differ from it.
    """

    index: int
    how: str
    distance: float
    runner_up: float


def pixel_key(grey: np.ndarray) -> bytes:
    """Identity of exact 48x48 grey pixels (a digest, so keys stay small)."""
    return hashlib.blake2b(
        np.ascontiguousarray(grey, dtype=np.uint8).tobytes(), digest_size=16
    ).digest()


def coarse(images: np.ndarray, block: int = 8) -> np.ndarray:
    """``(N, (48/block)^2)`` float32 block means: a compact key robust to JPEG noise."""
    images = np.asarray(images, dtype=np.float32).reshape(-1, SIZE, SIZE)
    n, cells = len(images), SIZE // block
    return images.reshape(n, cells, block, cells, block).mean(axis=(2, 4)).reshape(n, -1)


class PixelIndex:
    """FER+ rows' 48x48 grey pixels, searchable by exact bytes then by nearest pixels.

    Nearest search: the ``candidates`` images whose 6x6 block means are closest (one matrix
    product per batch of queries), then the full mean absolute difference to each. A JPEG
    re-encoding of the same face stays within ~2 grey levels; another face is far away (FER2013:
    >= 7), so ``accept`` (default 4) separates them with margin on both sides.
    """

    def __init__(self, images: np.ndarray, *, candidates: int = 8) -> None:
        self.images = np.asarray(images, dtype=np.uint8).reshape(-1, SIZE, SIZE)
        self.candidates = max(1, min(candidates, len(self.images)))
        self.keys = [pixel_key(g) for g in self.images]
        self.exact: dict[bytes, list[int]] = {}
        for i, key in enumerate(self.keys):
            self.exact.setdefault(key, []).append(i)
        self._coarse = coarse(self.images)
        self._norms = (self._coarse**2).sum(axis=1)

    def __len__(self) -> int:
        return len(self.images)

    def group(self, index: int) -> list[int]:
        """Every index whose pixels equal ``index``'s (itself included, ascending)."""
        return self.exact[self.keys[index]]

    def match(self, queries: np.ndarray, *, accept: float = 4.0, batch: int = 512) -> list[Match]:
        """The match of each ``(48, 48)`` uint8 query (see :class:`Match`)."""
        queries = np.asarray(queries, dtype=np.uint8).reshape(-1, SIZE, SIZE)
        out: list[Match] = []
        for start in range(0, len(queries), batch):
            chunk = queries[start : start + batch]
            near = self._nearest_candidates(chunk)
            out.extend(self._best(q, cand, accept) for q, cand in zip(chunk, near, strict=True))
        return out

    def _nearest_candidates(self, chunk: np.ndarray) -> np.ndarray:
        if len(self.images) == 0:
            return np.zeros((len(chunk), 0), dtype=np.int64)
        q = coarse(chunk)
        d2 = (q**2).sum(axis=1)[:, None] + self._norms[None, :] - 2.0 * q @ self._coarse.T
        k = self.candidates
        if k >= d2.shape[1]:
            return np.argsort(d2, axis=1)
        return np.argpartition(d2, k - 1, axis=1)[:, :k]

    def _best(self, query: np.ndarray, cand: np.ndarray, accept: float) -> Match:
        hit = self.exact.get(pixel_key(query))
        q = query.astype(np.int16)
        if len(cand) == 0 and hit is None:
            return Match(-1, "none", float("inf"), float("inf"))
        if hit is not None:
            cand = np.union1d(cand, hit[:1])
        dist = np.abs(self.images[cand].astype(np.int16) - q).mean(axis=(1, 2))
        order = np.argsort(dist, kind="stable")
        best = int(cand[order[0]])
        best_key = self.keys[best]
        others = [float(dist[o]) for o in order if self.keys[int(cand[o])] != best_key]
        runner_up = others[0] if others else float("inf")
        distance = float(dist[order[0]])
        if hit is not None:
            return Match(best, "exact", 0.0, runner_up)
        if distance <= accept:
            return Match(best, "nearest", distance, runner_up)
        return Match(-1, "none", distance, runner_up)


def pick_in_group(group: Sequence[int], usages: Sequence[str], usage: str) -> int:
    """The row among pixel-identical rows for an image of ``usage``: the first with that
    Usage, else the first (deterministic; :func:`duplicate_vote_groups` says if votes differ)."""
    for i in group:
        if usages[i].lower() == usage.lower():
            return i
    return group[0]


def grey48(data: bytes) -> np.ndarray | None:
    """Encoded image bytes → ``(48, 48)`` uint8 grey, or None when undecodable or not 48x48."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if arr is None or arr.shape != (SIZE, SIZE):
        return None
    return arr


def distance_summary(values: Sequence[float]) -> dict[str, float]:
    """Min, median, 99th percentile and max of finite distances (empty: {})."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {}
    return {
        "min": round(float(v.min()), 3),
        "median": round(float(np.median(v)), 3),
        "p99": round(float(np.percentile(v, 99)), 3),
        "max": round(float(v.max()), 3),
    }


def match_by_row(
    rows: Sequence[int],
    usages: Sequence[str],
    keys: Sequence[bytes],
    by_row: Mapping[int, VoteRow],
) -> tuple[list[RowMatch], dict[str, Any]]:
    """CSV rows: row i of fer2013.csv is row i of fer2013new.csv (its Usage checked).

    ``keys`` (:func:`pixel_key` of each image) find the pixel-identical rows, whose votes are
    reported as agreeing or not.
    """
    matches: list[RowMatch] = []
    missing = usage_mismatch = 0
    for row, usage in zip(rows, usages, strict=True):
        vote = by_row.get(row)
        if vote is None:
            missing += 1
            matches.append(NO_MATCH)
            continue
        usage_mismatch += vote.usage.lower() != usage.lower()
        matches.append((row, "row", 0.0))
    voted = [(k, by_row[m[0]].votes) for k, m in zip(keys, matches, strict=True) if m[0] >= 0]
    return matches, {
        "by": "row",
        "rows_without_votes": missing,
        "usage_mismatch": usage_mismatch,
        "duplicate_groups": duplicate_vote_groups([k for k, _ in voted], [v for _, v in voted]),
    }


def match_by_pixels(
    greys: Sequence[np.ndarray | None],
    usages: Sequence[str],
    rows: Sequence[VoteRow],
    pixels: np.ndarray,
    *,
    accept: float,
    batch: int = 1024,
) -> tuple[list[RowMatch], dict[str, Any]]:
    """Image folders: each image's 48x48 grey pixels (None: not such an image) looked up among
    the FER+ rows' ``pixels``; returns the matches and what happened (counts, distances)."""
    index = PixelIndex(pixels)
    row_usages = [r.usage for r in rows]
    ok = [i for i, g in enumerate(greys) if g is not None]
    queries = np.array([greys[i] for i in ok]).reshape(-1, SIZE, SIZE)
    found: list[Match] = []
    for start in bar(range(0, len(queries), batch), unit="batch", desc="match pixels"):
        found.extend(index.match(queries[start : start + batch], accept=accept))
    matches: list[RowMatch] = [NOT_48X48] * len(greys)
    for i, m in zip(ok, found, strict=True):
        if m.index >= 0:
            pick = pick_in_group(index.group(m.index), row_usages, usages[i])
            matches[i] = (rows[pick].row, m.how, m.distance)
        else:
            matches[i] = (-1, "none", m.distance)
    accepted = [m for m in found if m.index >= 0]
    rejected = [m for m in found if m.index < 0]
    used = [m[0] for m in matches if m[0] >= 0]
    return matches, {
        "by": "pixels",
        "threshold": accept,
        "ferplus_images": len(rows),
        "not_48x48_grey": len(greys) - len(ok),
        "exact": sum(m.how == "exact" for m in accepted),
        "nearest": sum(m.how == "nearest" for m in accepted),
        "distance_matched": distance_summary([m.distance for m in accepted]),
        "distance_runner_up": distance_summary([m.runner_up for m in accepted]),
        "distance_unmatched": distance_summary([m.distance for m in rejected]),
        "ferplus_duplicate_groups": duplicate_vote_groups(index.keys, [r.votes for r in rows]),
        "rows_matched_twice": len(used) - len(set(used)),
    }


@dataclass(frozen=True)
class PngLess:
    """The FER+ rows of one Usage that name no PNG: how many, and the votes they all carry
    (None: their votes differ)."""

    rows: int
    votes: tuple[int, ...] | None


def png_less_rows(rows: Sequence[VoteRow]) -> dict[str, PngLess]:
    """Per Usage (lower-cased), the rows with an empty Image name: FER+ wrote no PNG for them."""
    groups: dict[str, list[tuple[int, ...]]] = {}
    for r in rows:
        if not r.image:
            groups.setdefault(r.usage.lower(), []).append(tuple(r.votes))
    return {
        usage: PngLess(len(votes), votes[0] if len(set(votes)) == 1 else None)
        for usage, votes in sorted(groups.items())
    }


def give_png_less_votes(
    matches: Sequence[RowMatch],
    usages: Sequence[str],
    png_less: Mapping[str, PngLess],
    *,
    missing_pngs: int,
) -> tuple[list[RowMatch], list[tuple[int, ...] | None], dict[str, Any]]:
    """Images whose pixels matched no FER+ PNG (``how`` ``none``) take the votes that every
    PNG-less row of their Usage carries: whichever of those rows an image is, its votes are
    these. They become ``(-1, "no_png", distance to the nearest PNG)``.

    Only when no PNG named by the votes is missing (``missing_pngs`` 0): else an image whose
    PNG is missing would take them. Images beyond a Usage's PNG-less rows (the report's
    ``given`` > ``rows``) are images that should have matched a PNG and did not.

    Returns:
        The matches, the votes given to each image (None: none) and the report
        ``{"given", "missing_pngs", "by_usage": {usage: {"rows", "given", "votes"}}}``
        (``votes``: the shared vote vector, None when the Usage's rows differ).
    """
    out = list(matches)
    given: list[tuple[int, ...] | None] = [None] * len(matches)
    by_usage = {
        u: {"rows": p.rows, "given": 0, "votes": list(p.votes) if p.votes is not None else None}
        for u, p in png_less.items()
    }
    if missing_pngs == 0:
        for i, ((_, how, distance), usage) in enumerate(zip(matches, usages, strict=True)):
            shared = png_less.get(usage.lower())
            if how == "none" and shared is not None and shared.votes is not None:
                out[i], given[i] = (-1, "no_png", distance), shared.votes
                by_usage[usage.lower()]["given"] += 1
    report = {
        "given": sum(v is not None for v in given),
        "missing_pngs": missing_pngs,
        "by_usage": by_usage,
    }
    return out, given, report


def vote_counts(votes: Sequence[Sequence[int]]) -> dict[str, int]:
    """Among voted images: "not a face" (NF most voted) and ties for the most-voted emotion (a
    class-level tie is counted later, by train and evaluate, under the taxonomy in use)."""
    ties = 0
    for v in votes:
        emotions = list(v[:-2])
        top = max(emotions)
        ties += top > 0 and emotions.count(top) > 1
    nf = int(not_face(np.array(votes)).sum()) if len(votes) else 0
    return {"not_face": nf, "emotion_ties": ties}

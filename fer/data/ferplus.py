"""FER+ crowd votes: parse ``fer2013new.csv``, join them to FER2013 images, turn them into labels.

Microsoft's FER+ gives each FER2013 row 10 crowd votes over ``neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, NF`` (NF: not a face), one CSV row per
``fer2013.csv`` row in the same order. Votes join a FER2013 CSV by row; Kaggle's image folders
have no row order, so they join by pixels (:class:`PixelIndex`) against FER+'s own PNGs, which
carry each row's original pixels.

Labels from votes: each FER+ emotion is an expression folder (the FER2013 emotion's
``import.fer2013`` folder; contempt its own ``import.ferplus_contempt``), its votes count for
that folder's class in the taxonomy; ``unknown`` and ``NF`` votes count for no class.

- majority: the class with the most votes; a tie for the most, or no class vote, gives no label;
- soft: the class votes divided by their sum (a distribution over the 3 classes);
- not a face: ``NF`` has more votes than every other column.

Pure: arrays and rows in, arrays and rows out (the import and ingest stages read and write).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fer import CLASSES
from fer.errors import ConfigError, InputError
from fer.labels import Taxonomy, normalize

FERPLUS_EMOTIONS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
)  # fmt: skip
FERPLUS_COLUMNS: tuple[str, ...] = (*FERPLUS_EMOTIONS, "unknown", "NF")
"""The vote columns of ``fer2013new.csv``, in its order."""
VOTE_COLUMNS: tuple[str, ...] = tuple(f"votes_{c.lower()}" for c in FERPLUS_COLUMNS)
"""The vote columns of the votes table and the manifest (``votes_neutral`` ... ``votes_nf``)."""
ROW_COLUMN = "ferplus_row"
"""FER2013/FER+ row (0-based data row) an image's votes came from; -1 in the manifest: none."""
VOTES_FILE = ".ferplus_votes.csv"
"""The votes table `fer import --votes` writes next to the images (ingest joins it by path)."""
AS_FER2013: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear",
}  # fmt: skip
NF_INDEX = FERPLUS_COLUMNS.index("NF")
SIZE = 48


@dataclass(frozen=True)
class VoteRow:
    """One ``fer2013new.csv`` row: its 0-based row, Usage, FER+ PNG name ("" when none), votes."""

    row: int
    usage: str
    image: str
    votes: tuple[int, ...]


def parse_votes(lines: Iterable[Sequence[str]], source: str = "fer2013new.csv") -> list[VoteRow]:
    """Rows of a ``fer2013new.csv`` read with :mod:`csv` (header first).

    Raises:
        InputError: a header without the FER+ columns, or a vote that is not a count.
    """
    it = iter(lines)
    header = [h.strip() for h in next(it, [])]
    lower = [h.lower() for h in header]
    missing = [c for c in ("usage", "image name", *(c.lower() for c in FERPLUS_COLUMNS))
               if c not in lower]  # fmt: skip
    if missing:
        raise InputError(
            f"{source}: not a FER+ votes CSV (missing column {missing[0]!r}; expected "
            f"Usage, Image name, {', '.join(FERPLUS_COLUMNS)})"
        )
    i_usage, i_image = lower.index("usage"), lower.index("image name")
    i_votes = [lower.index(c.lower()) for c in FERPLUS_COLUMNS]
    rows: list[VoteRow] = []
    for row, fields in enumerate(it):
        if not fields:
            continue
        try:
            votes = tuple(int(fields[i]) for i in i_votes)
        except (ValueError, IndexError):
            raise InputError(
                f"{source}: row {row} (line {row + 2}): votes are not counts"
            ) from None
        if min(votes) < 0:
            raise InputError(f"{source}: row {row} (line {row + 2}): negative vote count")
        rows.append(VoteRow(row, fields[i_usage].strip(), fields[i_image].strip(), votes))
    return rows


def emotion_folders(
    fer2013: Mapping[str, str], contempt: str, taxonomy: Taxonomy
) -> tuple[str, ...]:
    """The expression folder of each FER+ emotion (:data:`FERPLUS_EMOTIONS` order).

    Raises:
        ConfigError: ``import.ferplus_contempt`` (or a FER2013 folder) outside the taxonomy.
    """
    folders = []
    for emotion in FERPLUS_EMOTIONS:
        if emotion == "contempt":
            key, folder = "import.ferplus_contempt", contempt
        else:
            fer = AS_FER2013[emotion]
            key, folder = f"import.fer2013.{fer}", fer2013.get(fer, "")
        if folder not in taxonomy:
            raise ConfigError(
                f"{key}: folder {folder!r} is not in the taxonomy "
                f"(one of {', '.join(taxonomy.expressions)})"
            )
        folders.append(normalize(folder))
    return tuple(folders)


def votes_matrix(frame: Any) -> np.ndarray:
    """``(N, 10)`` int vote counts from a table's ``votes_*`` columns."""
    return frame[list(VOTE_COLUMNS)].to_numpy(dtype=np.int64)


def has_votes(frame: Any) -> bool:
    """Whether a table (the manifest) carries FER+ vote columns."""
    return all(c in frame.columns for c in VOTE_COLUMNS)


def class_votes(votes: np.ndarray, folders: Sequence[str], taxonomy: Taxonomy) -> np.ndarray:
    """``(N, 3)`` votes per class (:data:`fer.CLASSES` order); unknown and NF count for none."""
    votes = np.asarray(votes, dtype=np.float64).reshape(-1, len(FERPLUS_COLUMNS))
    out = np.zeros((len(votes), len(CLASSES)))
    for j, folder in enumerate(folders):
        out[:, CLASSES.index(taxonomy.class_of(folder) or "")] += votes[:, j]
    return out


def majority(per_class: np.ndarray) -> np.ndarray:
    """The most-voted class index per row; -1 for a tie for the most or no class votes."""
    per_class = np.asarray(per_class, dtype=np.float64)
    if len(per_class) == 0:
        return np.zeros(0, dtype=np.int64)
    top = per_class.max(axis=1)
    n_top = (per_class == top[:, None]).sum(axis=1)
    label = per_class.argmax(axis=1)
    return np.where((top > 0) & (n_top == 1), label, -1).astype(np.int64)


def is_tie(per_class: np.ndarray) -> np.ndarray:
    """Rows with class votes whose most-voted classes tie."""
    per_class = np.asarray(per_class, dtype=np.float64)
    return (per_class.sum(axis=1) > 0) & (majority(per_class) < 0)


def soft_targets(per_class: np.ndarray) -> np.ndarray:
    """Class votes as distributions (rows sum to 1; rows without class votes are all 0)."""
    per_class = np.asarray(per_class, dtype=np.float64)
    total = per_class.sum(axis=1, keepdims=True)
    return np.divide(per_class, total, out=np.zeros_like(per_class), where=total > 0)


def not_face(votes: np.ndarray) -> np.ndarray:
    """Rows whose ``NF`` (not a face) votes outnumber every other column's."""
    votes = np.asarray(votes).reshape(-1, len(FERPLUS_COLUMNS))
    others = np.delete(votes, NF_INDEX, axis=1).max(axis=1)
    return votes[:, NF_INDEX] > others


def top_folder_in(votes: np.ndarray, folders: Sequence[str], chosen: Iterable[str]) -> np.ndarray:
    """Rows whose most-voted expression folder (ties included) is one of ``chosen``.

    FER+'s counterpart of ``evaluate.without``: e.g. ``[awe]`` leaves out the faces the crowd
    called surprise most often.
    """
    chosen = {normalize(c) for c in chosen}
    votes = np.asarray(votes, dtype=np.float64).reshape(-1, len(FERPLUS_COLUMNS))
    names = sorted(set(folders))
    per_folder = np.zeros((len(votes), len(names)))
    for j, folder in enumerate(folders):
        per_folder[:, names.index(folder)] += votes[:, j]
    if not chosen & set(names) or len(votes) == 0:
        return np.zeros(len(votes), dtype=bool)
    hit = [names.index(n) for n in names if n in chosen]
    top = per_folder.max(axis=1)
    return (per_folder[:, hit].max(axis=1) >= top) & (top > 0)


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


# --- The join by pixels ---------------------------------------------------------------------


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


# --- The votes table and the manifest -------------------------------------------------------

TABLE_COLUMNS: tuple[str, ...] = ("path", ROW_COLUMN, "match", "distance", *VOTE_COLUMNS)
"""Columns of :data:`VOTES_FILE`: one row per image that got votes."""


def check_votes_table(frame: Any, source: str) -> None:
    """Raise a one-line InputError unless ``frame`` is a votes table (:data:`TABLE_COLUMNS`)."""
    missing = [c for c in ("path", ROW_COLUMN, *VOTE_COLUMNS) if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: not a FER+ votes table (missing column {missing[0]!r})")
    try:
        votes = votes_matrix(frame)
    except (TypeError, ValueError):
        raise InputError(f"{source}: vote columns must hold counts") from None
    if len(votes) and votes.min() < 0:
        raise InputError(f"{source}: negative vote count")
    if frame["path"].duplicated().any():
        dup = frame.loc[frame["path"].duplicated(), "path"].iloc[0]
        raise InputError(f"{source}: path {dup!r} listed twice")


def attach_votes(rows: list[dict[str, Any]], frame: Any) -> dict[str, int]:
    """Give every manifest row its votes by path (in place): ``votes_*`` counts and
    ``ferplus_row``; rows the table does not list get 0 votes and row -1.

    Returns:
        ``{"with_votes", "without_votes", "unused"}``: rows joined, rows left without, and
        table rows that name no file (files removed since the import).
    """
    by_path = {
        str(p): (int(r), v)
        for p, r, v in zip(frame["path"], frame[ROW_COLUMN], votes_matrix(frame), strict=True)
    }
    zeros = (0,) * len(VOTE_COLUMNS)
    used = 0
    for row in rows:
        ferplus_row, votes = by_path.get(row["path"], (-1, zeros))
        used += ferplus_row >= 0
        row[ROW_COLUMN] = ferplus_row
        row.update(zip(VOTE_COLUMNS, (int(v) for v in votes), strict=True))
    return {"with_votes": used, "without_votes": len(rows) - used, "unused": len(by_path) - used}

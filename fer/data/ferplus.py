"""FER+ crowd votes: parse ``fer2013new.csv``, join them to FER2013 images, turn them into labels.

Microsoft's FER+ gives each FER2013 row 10 crowd votes over ``neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, NF`` (NF: not a face), one CSV row per
``fer2013.csv`` row in the same order. Votes join a FER2013 CSV by row; Kaggle's image folders
have no row order, so they join by pixels against FER+'s own PNGs, which carry each row's
original pixels (:mod:`fer.data.ferplus_join`).

Labels from votes: each FER+ emotion is an expression folder (the FER2013 emotion's
``import.fer2013`` folder; contempt its own ``import.ferplus_contempt``), its votes count for
that folder's class in the taxonomy; ``unknown`` and ``NF`` votes count for no class.

- majority: the class with the most votes; a tie for the most, or no class vote, gives no label;
- soft: the class votes divided by their sum (a distribution over the 3 classes);
- not a face: ``NF`` has more votes than every other column.

Pure: arrays and rows in, arrays and rows out (the stages read and write).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fer import CLASSES
from fer.errors import InputError
from fer.labels import Taxonomy, normalize

FERPLUS_EMOTIONS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
)  # fmt: skip
FERPLUS_COLUMNS: tuple[str, ...] = (*FERPLUS_EMOTIONS, "unknown", "NF")
"""The vote columns of ``fer2013new.csv``, in its order."""
VOTE_COLUMNS: tuple[str, ...] = tuple(f"votes_{c.lower()}" for c in FERPLUS_COLUMNS)
"""The vote columns of the votes table and the manifest (``votes_neutral`` ... ``votes_nf``)."""
ROW_COLUMN = "ferplus_row"
"""FER2013/FER+ row (0-based data row) an image's votes came from; -1: no votes, or votes not
from one known row (match ``no_png``: the votes all PNG-less rows of its Usage share)."""
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
        folders.append(taxonomy.folder(key, folder))
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


# --- The votes table and the manifest -------------------------------------------------------

TABLE_COLUMNS: tuple[str, ...] = ("path", ROW_COLUMN, "match", "distance", *VOTE_COLUMNS)
"""Columns of :data:`VOTES_FILE`: one row per image that got votes (``match``: ``row``,
``exact``, ``nearest`` or ``no_png``, the last with ``ferplus_row`` -1)."""


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
    ``ferplus_row``; rows the table does not list get 0 votes and row -1 (a listed row may
    have row -1 too: match ``no_png``).

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
        listed = by_path.get(row["path"])
        ferplus_row, votes = listed if listed is not None else (-1, zeros)
        used += listed is not None
        row[ROW_COLUMN] = ferplus_row
        row.update(zip(VOTE_COLUMNS, (int(v) for v in votes), strict=True))
    return {"with_votes": used, "without_votes": len(rows) - used, "unused": len(by_path) - used}

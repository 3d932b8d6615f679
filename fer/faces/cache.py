"""Incremental detection cache: one SQLite file per detection-settings hash.

Key = image id (sha256 of the file bytes), file = settings hash (backend, model digest,
thresholds, resize, logic version), so a hit can never be stale: different content or
different settings simply miss. Only the parent process reads and writes it; workers return
results. Each batch is committed on its own, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from fer.faces.detectors import Face

_SCHEMA = "CREATE TABLE IF NOT EXISTS detections (id TEXT PRIMARY KEY, faces TEXT, error TEXT)"


def faces_to_json(faces: Iterable[Face]) -> str:
    """Compact JSON ``[[x, y, w, h, score], ...]``."""
    return json.dumps([[f.x, f.y, f.w, f.h, f.score] for f in faces], separators=(",", ":"))


def faces_from_json(text: str) -> list[Face]:
    """Inverse of :func:`faces_to_json`."""
    return [Face(int(x), int(y), int(w), int(h), float(s)) for x, y, w, h, s in json.loads(text)]


class DetectionCache:
    """``id -> (faces, error)`` for one settings hash, stored in ``<dir>/<hash>.sqlite``."""

    def __init__(self, cache_dir: str | Path, settings_hash: str) -> None:
        self.path = Path(cache_dir) / f"{settings_hash}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        # WAL: a crash mid-write never corrupts earlier batches; readers are not blocked.
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: no fsync per batch commit; WAL still survives a killed process intact.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, ids: Iterable[str], chunk: int = 500) -> dict[str, tuple[list[Face], str]]:
        """Cached entries for the given ids (missing ids are absent from the result)."""
        out: dict[str, tuple[list[Face], str]] = {}
        for part in _chunks(list(dict.fromkeys(ids)), chunk):
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT id, faces, error FROM detections WHERE id IN ({marks})", part
            )
            for image_id, faces, error in rows:
                out[image_id] = (faces_from_json(faces), error or "")
        return out

    def put_many(self, rows: Iterable[tuple[str, list[Face], str]]) -> None:
        """Store ``(id, faces, error)`` rows in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO detections (id, faces, error) VALUES (?, ?, ?)",
                [(i, faces_to_json(f), e) for i, f, e in rows],
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM detections").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> DetectionCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

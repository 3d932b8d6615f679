"""The decisions file behind the review page: one lock, atomic rewrites, an undo stack.

Every change re-reads the file when it changed on disk since the last read (a hand edit while
the page is open is kept, not overwritten), replaces the row of the decided face or image, and
rewrites the whole file atomically (:func:`fer.validation.decisions.write_decisions`). A face's
existing row is found the way ``fer split`` finds it (box IoU), so deciding again replaces it
even when it was written against an older detection.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fer.validation import decisions as dec
from fer.validation.decisions import Box, Decision


@dataclass(frozen=True)
class Target:
    """What a decision is about: one face (with its image's other boxes) or a whole image."""

    image_id: str
    path: str
    box: Box | None = None
    image_boxes: tuple[Box, ...] = ()


class DecisionStore:
    """Thread-safe access to the decisions file."""

    def __init__(self, path: Path, reviewer: str) -> None:
        self.path = Path(path)
        self.reviewer = reviewer
        self._lock = threading.Lock()
        self._rows: list[Decision] = []
        self._stamp: tuple[int, int] | str | None = "unread"
        self._undo: list[tuple[Decision | None, Decision | None]] = []
        self.version = 0
        """Bumped whenever the rows change (here or on disk)."""
        self._reload()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _reload(self) -> None:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._rows = dec.read_decisions(self.path)
            self._stamp = stamp
            self.version += 1

    def rows(self) -> tuple[int, list[Decision]]:
        """(version, current rows), re-read when the file changed."""
        with self._lock:
            self._reload()
            return self.version, list(self._rows)

    def current(self, target: Target) -> Decision | None:
        """The decision that applies to ``target`` now (face row, else whole-image row)."""
        with self._lock:
            self._reload()
            return self._find(target, whole_fallback=True)

    def _find(self, target: Target, *, whole_fallback: bool) -> Decision | None:
        rows = [d for d in self._rows if d.image_id == target.image_id]
        if target.box is None:
            return next((d for d in rows if d.box is None), None)
        boxes = list(target.image_boxes) or [target.box]
        per_box, _ = dec.decisions_for_faces(
            rows if whole_fallback else [d for d in rows if d.box is not None], boxes
        )
        return per_box[boxes.index(target.box)]

    def decide(self, target: Target, action: str, label: str = "") -> Decision:
        """Record a decision (replacing this face's or image's row) and save the file.

        Raises:
            InputError: a bad action/label, or the file on disk no longer parses.
        """
        new = Decision(
            target.image_id, target.box, action, label, self.reviewer, dec.now(), target.path
        )
        new = dec.parse_row(new.row(), "decision")  # the checks a row of the file gets
        with self._lock:
            self._reload()
            old = self._find(target, whole_fallback=False)
            self._replace(old, new)
            self._undo.append((old, new))
        return new

    def undo(self) -> tuple[Decision | None, Decision | None] | None:
        """Revert the last change made through this store; returns (restored, removed)."""
        with self._lock:
            if not self._undo:
                return None
            self._reload()
            old, new = self._undo.pop()
            self._replace(new, old)
            return old, new

    def _replace(self, old: Decision | None, new: Decision | None) -> None:
        gone = [(d.image_id, d.box) for d in (old, new) if d is not None]
        rows = [d for d in self._rows if (d.image_id, d.box) not in gone]
        if new is not None:
            rows.append(new)
        dec.check_unique(rows, str(self.path))
        dec.write_decisions(self.path, rows)
        self._rows = rows
        self._stamp = self._file_stamp()
        self.version += 1

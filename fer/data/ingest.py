"""Raw tree → manifest rows: the scan plan, the per-file inspection, duplicates, the table.

The stage (``fer.stages.ingest``) runs :func:`inspect_file` over :func:`scan_tree`'s plan in a
process pool and writes :func:`to_frame`'s table; everything here works on a root folder given
as an argument and knows nothing of params or the project layout. See docs/data-contracts.md
(``data/manifest.parquet``) for the columns.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from fer.data.images import DecodeError, probe
from fer.labels import Taxonomy, normalize

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id",
    "path",
    "expression",
    "label",
    "bytes",
    "width",
    "height",
    "format",
    "status",
    "reason",
    "duplicate_of",
    "usage",
)
_INT_COLUMNS = ("bytes", "width", "height")

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
    | {".ppm", ".pgm", ".pbm", ".avif", ".mpo"}
)
# OS and tool droppings, never listed. Names starting with "." (.DS_Store, ._AppleDouble,
# .git, the sandbox's marker file) are junk too.
JUNK_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "icon\r"})

# Every `reason` a manifest row can carry (plus `decoder_error:<Exception>` for decoder bugs).
REASONS: dict[str, str] = {
    "zero_bytes": "empty file",
    "truncated": "image data ends early",
    "corrupt": "damaged header or pixel data",
    "not_an_image": "not an image, or a format we do not open",
    "decompression_bomb": "width x height above ingest.max_pixels",
    "too_small": "width or height below ingest.min_side (too small to detect or crop)",
    "unsupported_mode": "pixel mode we cannot turn into RGB",
    "unreadable": "cannot be read (permissions, I/O error, vanished)",
    "too_large": "file larger than MAX_FILE_BYTES",
    "is_directory": "a folder named like an image (its files are listed too)",
    "not_a_file": "a FIFO, socket or device",
    "symlink_outside_raw": "a symlink leaving the raw dir",
    "broken_symlink": "a symlink to nothing",
    "symlink_loop": "a symlink to a folder that encloses it",
    "unknown_folder": "expression folder not in the taxonomy (ingest.unknown_folders: ignore)",
    "no_expression_folder": "file directly in the raw dir",
}

# Files larger than this are not read into memory: no usable photo is this big.
MAX_FILE_BYTES = 512 * 1024 * 1024


class Entry(NamedTuple):
    """One manifest row to produce: a file to inspect, or a row already decided by the scan.

    A NamedTuple: cheap to build and to pickle to pool workers, per file.

    ``reason`` set means the scan rejected it (``unknown_folder``, ``is_directory``, ...);
    files rejected for their location are still hashed, so they stay traceable.
    """

    path: str  # relative to the raw root, posix
    abs_path: str  # what to open (a followed symlink keeps its own relative path)
    expression: str
    label: str
    reason: str = ""
    readable: bool = True  # False: do not open (directory, broken or escaping symlink, fifo)


@dataclass(frozen=True)
class Scan:
    """The plan: entries in path order, and expression folders the taxonomy does not know."""

    entries: list[Entry]
    unknown_folders: list[str]


def is_junk(name: str) -> bool:
    """Hidden files and OS droppings that ingest ignores without listing."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def scan_tree(root: str | os.PathLike[str], taxonomy: Taxonomy) -> Scan:
    """List every non-junk file under ``root`` as an :class:`Entry`.

    Top-level folders are expressions (matched case-insensitively); deeper folders belong to
    their top-level folder. Symlinks resolving inside ``root`` are followed (a linked folder's
    files are listed under the link's path too, so they show up as duplicates); those leaving
    it, broken ones, links back to an enclosing folder (loops), directories named like images
    and special files become rejected entries. Nothing non-junk is left out.
    """
    root_real = os.path.realpath(root)
    entries: list[Entry] = []
    unknown: set[str] = set()

    def inside(real: str) -> bool:
        return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)

    def add(rel: str, abs_path: str, expression: str, label: str, reason: str = "") -> None:
        readable = reason in ("", "unknown_folder", "no_expression_folder")
        entries.append(Entry(rel, abs_path, expression, label, reason, readable))

    def walk(
        dir_abs: str, dir_rel: str, expression: str | None, label: str, ancestors: tuple[str, ...]
    ) -> None:
        try:
            with os.scandir(dir_abs) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError:
            add(dir_rel, dir_abs, expression or "", label, "unreadable")
            return
        for child in children:
            if is_junk(child.name):
                continue
            rel = f"{dir_rel}/{child.name}" if dir_rel else child.name
            top = expression is None  # a child of the root
            expr = normalize(child.name) if top else expression
            lab = (taxonomy.class_of(child.name) or "") if top else label
            reason_here = ""
            kind, real = _kind(child)
            if kind == "broken_symlink" or (real and not inside(real)):
                add(rel, child.path, "" if top else expr, lab, _escape_reason(kind))
                continue
            if kind == "dir":
                if top:
                    if not lab:
                        unknown.add(child.name)
                elif child.name.lower().endswith(tuple(IMAGE_SUFFIXES)):
                    # Listed so the user sees it, then walked: its files are still rows.
                    add(rel, child.path, expr, lab, "is_directory")
                if real in ancestors:  # a link to an enclosing folder: walking it never ends
                    add(rel, child.path, expr, lab, "symlink_loop")
                    continue
                walk(child.path, rel, expr, lab, (*ancestors, real))
                continue
            if top:
                expr, lab, reason_here = "", "", "no_expression_folder"
            elif not lab:
                reason_here = "unknown_folder"
            if kind == "file":
                add(rel, child.path, expr, lab, reason_here)
            elif kind == "missing":
                add(rel, child.path, expr, lab, "unreadable")
            else:
                add(rel, child.path, expr, lab, "not_a_file")

    walk(str(root), "", None, "", (root_real,))
    entries.sort(key=lambda e: e.path)
    return Scan(entries, sorted(unknown, key=str.lower))


def _kind(entry: os.DirEntry[str]) -> tuple[str, str]:
    """('file' | 'dir' | 'special' | 'broken_symlink' | 'missing', real path or "").

    A plain file costs no system call (the directory listing's type is used) and has no
    real path to check: only symlinks can leave the tree, and folders need theirs for the
    loop guard. This keeps the scan far below the cost of reading the files.
    """
    try:
        if not entry.is_symlink():
            if entry.is_file(follow_symlinks=False):
                return "file", ""
            if entry.is_dir(follow_symlinks=False):
                return "dir", os.path.realpath(entry.path)
    except OSError:
        return "missing", ""
    real = os.path.realpath(entry.path)
    try:
        st = os.stat(entry.path)  # follows symlinks
    except FileNotFoundError:
        return ("broken_symlink" if os.path.islink(entry.path) else "missing"), ""
    except OSError:
        return "missing", ""
    if stat.S_ISDIR(st.st_mode):
        return "dir", real
    if stat.S_ISREG(st.st_mode):
        return "file", real
    return "special", real


def _escape_reason(kind: str) -> str:
    return "broken_symlink" if kind == "broken_symlink" else "symlink_outside_raw"


def inspect_file(entry: Entry, max_pixels: int, min_side: int = 1) -> dict[str, Any]:
    """Read the file once, hash it and probe the image from memory; never raises.

    Returns a manifest row (without ``duplicate_of``).
    """
    row: dict[str, Any] = {
        "id": "",
        "path": entry.path,
        "expression": entry.expression,
        "label": entry.label,
        "bytes": 0,
        "width": 0,
        "height": 0,
        "format": "",
        "status": "rejected",
        "reason": entry.reason,
    }
    if not entry.readable:
        return row
    try:
        with open(entry.abs_path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                row.update(bytes=size, reason=entry.reason or "too_large")
                return row
            data = fh.read()
    except OSError:
        row["reason"] = entry.reason or "unreadable"
        return row
    row["bytes"] = len(data)
    row["id"] = hashlib.sha256(data).hexdigest()
    if entry.reason:  # rejected for where it lives: hashed, not decoded
        return row
    try:
        info = probe(data, max_pixels=max_pixels)
    except DecodeError as exc:
        row["reason"] = exc.reason
        return row
    except Exception as exc:  # a decoder bug must not stop the run; record it
        row["reason"] = f"decoder_error:{type(exc).__name__}"
        return row
    row.update(width=info.width, height=info.height, format=info.format)
    if min(info.width, info.height) < min_side:
        row["reason"] = "too_small"
        return row
    row["status"] = "ok"
    return row


def inspect_chunk(
    entries: list[Entry], max_pixels: int, min_side: int = 1
) -> list[dict[str, Any]]:
    """:func:`inspect_file` over a chunk (one pickling round-trip per chunk in a pool)."""
    return [inspect_file(e, max_pixels, min_side) for e in entries]


def mark_duplicates(rows: list[dict[str, Any]]) -> None:
    """Set ``duplicate_of`` in place: among ``ok`` rows with the same id, every row but the
    first in path order points to the first. Rejected rows get ""."""
    first: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        row["duplicate_of"] = ""
        if row["status"] != "ok" or not row["id"]:
            continue
        if row["id"] in first:
            row["duplicate_of"] = first[row["id"]]
        else:
            first[row["id"]] = row["path"]


def to_frame(rows: list[dict[str, Any]], int_columns: tuple[str, ...] = ()) -> Any:
    """The manifest as a pandas DataFrame: contract columns and dtypes, sorted by path.

    ``int_columns``: extra integer columns the rows carry (FER+'s ``ferplus_row``,
    ``votes_*``), appended after the contract's.
    """
    import pandas as pd

    ordered = sorted(rows, key=lambda r: r["path"])
    ints = (*_INT_COLUMNS, *int_columns)
    data = {
        col: pd.array(
            [r.get(col, 0 if col in ints else "") for r in ordered],
            dtype="int64" if col in ints else "str",
        )
        for col in (*MANIFEST_COLUMNS, *int_columns)
    }
    return pd.DataFrame(data)


def add_usage(rows: list[dict[str, Any]], pattern: str | None) -> None:
    """Set ``usage`` in place: the lower-cased group of ``pattern`` in the file name, or "".

    A dataset's own split travels this way (FER2013's ``Training_…``/``PrivateTest_…`` names;
    ``split.strategy: given`` maps the values to train/val/test).
    """
    import re

    regex = re.compile(pattern) if pattern else None
    for row in rows:
        match = regex.search(row["path"].rsplit("/", 1)[-1]) if regex else None
        row["usage"] = match.group(1).lower() if match else ""


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the run summary: total, ok, rejected by reason, duplicate groups."""
    rejected = Counter(r["reason"] for r in rows if r["status"] != "ok")
    dups = [r["duplicate_of"] for r in rows if r.get("duplicate_of")]
    return {
        "total": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "rejected": dict(sorted(rejected.items())),
        "duplicate_groups": len(set(dups)),
        "duplicates": len(dups),
    }

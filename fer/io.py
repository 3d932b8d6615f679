"""Atomic file output: write to a temp file beside the target, then rename.

A killed stage therefore never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it onto ``path``.

    ``suffix`` defaults to the target's suffix so writers that infer a format from the name
    (pandas, OpenCV, matplotlib) still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.tmp.",
        suffix=suffix if suffix is not None else target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write a binary file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write JSON (indented, keys in insertion order, NaN rejected)."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def write_parquet(df: Any, path: str | os.PathLike[str]) -> None:
    """Atomically write a pandas DataFrame as parquet."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df: Any, path: str | os.PathLike[str]) -> None:
    """Atomically write a pandas DataFrame as CSV."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars and arrays, which json cannot."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_table(path: str | os.PathLike[str], *, producer: str, columns: Iterable[str] = ()) -> Any:
    """Read a parquet table another stage wrote; every problem is a one-line InputError.

    Args:
        path: the table.
        producer: the command that writes it, named in the "not found" hint.
        columns: columns the caller needs; the first missing one is named.
    """
    import pandas as pd

    from fer.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (run `{producer}` first)")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: cannot read parquet ({type(exc).__name__})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return table


@lru_cache(maxsize=16)
def _file_sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) since model files are hashed often."""
    st = Path(path).stat()
    return _file_sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def contained(root: str | os.PathLike[str], rel: str | os.PathLike[str]) -> Path | None:
    """``root / rel`` when it resolves (symlinks followed) inside ``root``, else None.

    Every path read from a table goes through here before it is opened: a row holding
    ``../../etc/passwd``, an absolute path or a link out of the tree is refused.
    """
    base = Path(root).resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        return None
    return target if target == base or target.is_relative_to(base) else None

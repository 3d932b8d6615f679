"""`fer import fer2013 SOURCE --out DIR`: FER2013 (CSV or Kaggle image folders) to a raw tree.

A CSV is streamed row by row, so the 35k-row original is fine; bad rows are reported with
their row numbers and skipped, never fatal. Each PNG is written atomically, and names are
deterministic (``<expression>/fer2013_<usage>_<row:06d>.png``), so a re-run overwrites rather
than duplicates. The image-folder layout (``<train|test>/<emotion>/<Usage>_<n>.jpg``) is copied
file by file, bytes unchanged. Both keep the Usage in the names; the summary prints the params
that read it back (``ingest.usage_pattern``) and follow it (``split.strategy: given``).
"""

from __future__ import annotations

import csv as csvlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer.data.importers import (
    FER2013_USAGE_PATTERN,
    BadRow,
    convert_fer2013_row,
    fer2013_folder_files,
    fer2013_folders,
    png_bytes,
)
from fer.errors import InputError
from fer.io import write_bytes
from fer.labels import Taxonomy
from fer.progress import bar

if TYPE_CHECKING:
    from fer.config import Config

MAX_SHOWN_BAD_ROWS = 20


def run(
    cfg: Config,
    *,
    format: str,
    csv: Path,
    out: Path,
    use: bool = False,
    params: Path | None = None,
) -> dict[str, Any]:
    """Convert ``csv`` (format ``fer2013``: a CSV file or the image-folder tree) into
    ``out/<expression>/*``; print a summary. With ``use``, also point ``params`` (default
    ``params.yaml``) at it with the FER2013 settings (:func:`fer2013_settings`), comments kept.

    Returns:
        ``{"out", "written", "unchanged", "by_expression", "by_usage", "bad_rows"}`` with
        ``bad_rows`` a list of ``(row, reason)``; rows are 0-based data rows (CSV line row + 2).

    Raises:
        InputError: unknown format, CSV missing or without ``emotion``/``pixels`` columns.
        ConfigError: ``import.fer2013`` maps an emotion to a folder outside the taxonomy.
    """
    if format != "fer2013":
        raise InputError(f"unknown import format {format!r} (supported: fer2013)")
    folders = fer2013_folders(cfg.import_.fer2013, Taxonomy(cfg.taxonomy))
    if Path(csv).is_dir():
        summary = _import_fer2013_folders(Path(csv), Path(out), folders)
    else:
        summary = _import_fer2013(Path(csv), Path(out), folders)
    _print_summary(Path(csv), summary, show_settings=not use)
    if use:
        from fer.params_edit import apply_overrides

        target = Path(params or "params.yaml")
        settings = fer2013_settings(Path(out), cfg)
        apply_overrides(target, settings)
        print(f"{target}: set for FER2013 (then `dvc repro`):")
        for item in settings:
            print(f"  {item}")
    return summary


def fer2013_settings(out: Path, cfg: Config) -> list[str]:
    """The params that run FER2013 as the literature does, with the models measured best.

    The dataset's own split (Training → train, PublicTest → val, PrivateTest → test, read
    from the file names), the images taken as the face crops they are, surprise reported
    apart (its valence is ambiguous), label auditing helped by FaceExpressionNet (the K-fold model
    alone is too weak to trust there), and the models of the README's FER2013 table, as measured.
    """
    surprise = cfg.import_.fer2013["surprise"]
    return [
        f"ingest.raw_dir={out.as_posix()}",
        f"ingest.usage_pattern='{FER2013_USAGE_PATTERN}'",
        "detect.mode=precropped",
        "split.strategy=given",
        f"evaluate.without=[{surprise}]",
        "validate.teacher=faceexpr",
        "train.models=[minixception-zeroshot, minixception, baseline]",
        "train.tta_flip=true",
        "models.baseline={width: 32, epochs: 20}",
        "models.minixception={pretrained: true, lr: 0.0001, epochs: 3, "
        "freeze: [stem, blocks.0, blocks.1]}",
    ]


def _import_fer2013_folders(src: Path, out: Path, folders: tuple[str, ...]) -> dict[str, Any]:
    """Copy the Kaggle image folders' files into ``out/<expression>/`` (bytes unchanged)."""
    import re

    usage_of = re.compile(FER2013_USAGE_PATTERN)
    written: Counter[str] = Counter()
    usages: Counter[str] = Counter()
    unchanged = 0
    files = list(fer2013_folder_files(src, folders))
    if not files:
        raise InputError(f"{src}: no images in <train|test>/<emotion>/")
    for path, rel in bar(files, unit="img", desc="import fer2013"):
        data, target = path.read_bytes(), out / rel
        if _same_content(target, data):
            unchanged += 1
        else:
            write_bytes(target, data)
        written[rel.split("/", 1)[0]] += 1
        match = usage_of.search(path.name)
        usages[match.group(1).lower() if match else "unknown"] += 1
    return {
        "out": str(out),
        "written": sum(written.values()),
        "unchanged": unchanged,
        "by_expression": dict(sorted(written.items())),
        "by_usage": dict(sorted(usages.items())),
        "bad_rows": [],
    }


def _import_fer2013(path: Path, out: Path, folders: tuple[str, ...]) -> dict[str, Any]:
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: CSV not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read CSV ({exc.strerror})") from None
    written: Counter[str] = Counter()
    usages: Counter[str] = Counter()
    bad: list[tuple[int, str]] = []
    unchanged = 0
    # The original's pixel field is ~9 kB; raise the csv module's field limit well above it.
    csvlib.field_size_limit(max(csvlib.field_size_limit(), 1 << 24))
    with fh:
        reader = csvlib.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "emotion" not in header or "pixels" not in header:
            raise InputError(
                f"{path}: not a FER2013 CSV (header must have emotion and pixels columns, "
                f"got {','.join(header)[:80]!r})"
            )
        i_emotion, i_pixels = header.index("emotion"), header.index("pixels")
        i_usage = header.index("usage") if "usage" in header else None
        for row, fields in enumerate(bar(reader, unit="row", desc="import fer2013")):
            if not fields:
                continue  # blank line
            try:
                if len(fields) != len(header):
                    raise BadRow(f"{len(fields)} fields, expected {len(header)}")
                usage = fields[i_usage] if i_usage is not None else ""
                image = convert_fer2013_row(
                    row, fields[i_emotion], fields[i_pixels], usage, folders
                )
            except BadRow as exc:
                bad.append((row, str(exc)))
                continue
            data, target = png_bytes(image.pixels), out / image.relpath
            if _same_content(target, data):
                unchanged += 1  # a re-run: skip the rename, the slow part on many file systems
            else:
                write_bytes(target, data)
            written[image.expression] += 1
            usages[image.usage] += 1
    if not written and not bad:
        raise InputError(f"{path}: no data rows")
    summary = {
        "out": str(out),
        "written": sum(written.values()),
        "unchanged": unchanged,
        "by_expression": dict(sorted(written.items())),
        "by_usage": dict(sorted(usages.items())),
        "bad_rows": bad,
    }
    return summary


def _same_content(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _print_summary(path: Path, s: dict[str, Any], *, show_settings: bool = True) -> None:
    per = ", ".join(f"{k} {v}" for k, v in s["by_expression"].items())
    use = ", ".join(f"{k} {v}" for k, v in s["by_usage"].items())
    print(
        f"import fer2013: {s['written']} images from {path} → {s['out']} "
        f"({s['unchanged']} already there and identical)"
    )
    print(f"  by expression: {per or '-'}")
    print(f"  by usage:      {use or '-'}")
    if show_settings:
        print(
            "  to train on it with the dataset's own split, re-run with --use (sets "
            "params.yaml), or set ingest.raw_dir, ingest.usage_pattern, detect.mode: "
            "precropped and split.strategy: given yourself"
        )
    bad = s["bad_rows"]
    print(f"  bad rows skipped: {len(bad)}")
    for row, reason in bad[:MAX_SHOWN_BAD_ROWS]:
        print(f"    row {row} (line {row + 2}): {reason}")
    if len(bad) > MAX_SHOWN_BAD_ROWS:
        print(f"    ... and {len(bad) - MAX_SHOWN_BAD_ROWS} more")

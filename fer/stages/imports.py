"""`fer import fer2013 SOURCE --out DIR`: FER2013 (CSV or Kaggle image folders) to a raw tree.

A CSV is streamed row by row, so the 35k-row original is fine; bad rows are reported with
their row numbers and skipped, never fatal. Each PNG is written atomically, and names are
deterministic (``<expression>/fer2013_<usage>_<row:06d>.png``), so a re-run overwrites rather
than duplicates. The image-folder layout (``<train|test>/<emotion>/<Usage>_<n>.jpg``) is copied
file by file, bytes unchanged. Both keep the Usage in the names; the summary prints the params
that read it back (``ingest.usage_pattern``) and follow it (``split.strategy: given``).

With ``--votes fer2013new.csv`` (FER+) each image also gets its 10 crowd votes, in the table
``<out>/.ferplus_votes.csv`` that ingest joins into the manifest by path: by row for the CSV, by
pixels for image folders (``--ferplus-images``: FER+'s PNGs give each row's pixels).
"""

from __future__ import annotations

import csv as csvlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer.data.ferplus_join import pixel_key
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


@dataclass(frozen=True)
class Imported:
    """An image written: its path in the raw tree, CSV row (-1: image folders), Usage, and the
    file's bytes (image folders only: the join by pixels decodes them)."""

    relpath: str
    row: int
    usage: str
    data: bytes
    key: bytes = b""  # CSV rows: identity of the pixels (duplicate groups)


def run(
    cfg: Config,
    *,
    format: str,
    csv: Path,
    out: Path,
    use: bool = False,
    params: Path | None = None,
    votes: Path | None = None,
    ferplus_images: Path | None = None,
    match_threshold: float = 4.0,
) -> dict[str, Any]:
    """Convert ``csv`` (format ``fer2013``: a CSV file or the image-folder tree) into
    ``out/<expression>/*``; print a summary. With ``use``, also point ``params`` (default
    ``params.yaml``) at it with the FER2013 settings (:func:`fer2013_settings`), comments kept.

    Returns:
        ``{"out", "written", "unchanged", "by_expression", "by_usage", "bad_rows"}`` with
        ``bad_rows`` a list of ``(row, reason)``; rows are 0-based data rows (CSV line row + 2);
        with ``votes`` also ``"votes"`` (:func:`_join_votes`).

    Raises:
        InputError: unknown format, CSV missing or without ``emotion``/``pixels`` columns.
        ConfigError: ``import.fer2013`` maps an emotion to a folder outside the taxonomy.
    """
    if format != "fer2013":
        raise InputError(f"unknown import format {format!r} (supported: fer2013)")
    folders = fer2013_folders(cfg.import_.fer2013, Taxonomy(cfg.taxonomy))
    if not match_threshold > 0:
        raise InputError(f"--match-threshold {match_threshold}: must be a positive grey level")
    vote_rows = _read_votes(Path(votes)) if votes is not None else None
    if vote_rows is not None and Path(csv).is_dir() and ferplus_images is None:
        raise InputError(
            "--votes with image folders joins by pixels: also give --ferplus-images FERPLUS_DIR "
            "(FER+'s fer*.png files)"
        )
    if Path(csv).is_dir():
        summary = _import_fer2013_folders(Path(csv), Path(out), folders)
    else:
        summary = _import_fer2013(Path(csv), Path(out), folders)
    _print_summary(Path(csv), summary, show_settings=not use)
    if vote_rows is not None:
        by_pixels = ferplus_images if Path(csv).is_dir() else None  # the CSV joins by row
        summary["votes"] = _join_votes(
            summary.pop("images"), vote_rows, Path(out), ferplus_images=by_pixels,
            accept=match_threshold,
        )  # fmt: skip
    summary.pop("images", None)
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
    alone is too weak to trust there), and the models of the README's FER2013 table, as measured
    (with the ensemble of both packaged models), every face also read mirrored and moved by 4 %
    of its side (mini-Xception as shipped then reads PrivateTest at 0.832 without surprise).
    """
    surprise = cfg.import_.fer2013["surprise"]
    return [
        f"ingest.raw_dir={out.as_posix()}",
        f"ingest.usage_pattern='{FER2013_USAGE_PATTERN}'",
        "detect.mode=precropped",
        "split.strategy=given",
        f"evaluate.without=[{surprise}]",
        "validate.teacher=faceexpr",
        "train.models=[minixception-zeroshot, minixception, baseline, real-ensemble]",
        "train.tta_flip=true",
        "train.tta_shift=0.04",
        "models.baseline={width: 32, epochs: 20}",
        "models.minixception={pretrained: true, lr: 0.0001, epochs: 3, "
        "freeze: [stem, blocks.0, blocks.1]}",
        'models.real-ensemble={arch: ensemble, members: ["pretrained:minixception", '
        '"pretrained:faceexpr"], weights: null, weight_step: 0.05, flip: true, shift: 0.04}',
    ]


def _import_fer2013_folders(src: Path, out: Path, folders: tuple[str, ...]) -> dict[str, Any]:
    """Copy the Kaggle image folders' files into ``out/<expression>/`` (bytes unchanged)."""
    import re

    usage_of = re.compile(FER2013_USAGE_PATTERN)
    written: Counter[str] = Counter()
    usages: Counter[str] = Counter()
    unchanged = 0
    images: list[Imported] = []
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
        images.append(Imported(rel, -1, match.group(1) if match else "", data))
    return {
        "out": str(out),
        "written": sum(written.values()),
        "unchanged": unchanged,
        "by_expression": dict(sorted(written.items())),
        "by_usage": dict(sorted(usages.items())),
        "bad_rows": [],
        "images": images,
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
    images: list[Imported] = []
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
            images.append(Imported(image.relpath, row, usage, b"", pixel_key(image.pixels)))
    if not written and not bad:
        raise InputError(f"{path}: no data rows")
    summary = {
        "out": str(out),
        "written": sum(written.values()),
        "unchanged": unchanged,
        "by_expression": dict(sorted(written.items())),
        "by_usage": dict(sorted(usages.items())),
        "bad_rows": bad,
        "images": images,
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


# --- FER+ votes ---------------------------------------------------------------------------


def _read_votes(path: Path) -> list[Any]:
    """The rows of a FER+ ``fer2013new.csv``."""
    from fer.data.ferplus import parse_votes

    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return parse_votes(csvlib.reader(fh), source=str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: FER+ votes CSV not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read FER+ votes ({exc.strerror})") from None


def _join_votes(
    images: list[Imported],
    vote_rows: list[Any],
    out: Path,
    *,
    ferplus_images: Path | None,
    accept: float,
) -> dict[str, Any]:
    """Give each imported image its FER+ row (by row; by pixels when ``ferplus_images`` is
    given, for image folders), write ``out/.ferplus_votes.csv``, print and return the report.

    By pixels, an image that matches no PNG takes the votes its Usage's PNG-less rows all share
    (:func:`fer.data.ferplus_join.give_png_less_votes`), when the folder misses no PNG."""
    import pandas as pd

    from fer.data import ferplus, ferplus_join
    from fer.data.ferplus_join import match_by_pixels, match_by_row, vote_counts
    from fer.io import write_csv

    by_row = {v.row: v for v in vote_rows}
    usages = [img.usage for img in images]
    given: list[tuple[int, ...] | None] = [None] * len(images)
    if ferplus_images is None:  # the CSV (run() requires FER+'s images for folders)
        rows = [img.row for img in images]
        matches, report = match_by_row(rows, usages, [img.key for img in images], by_row)
    else:
        ferplus_rows, pixels = _ferplus_pixels(ferplus_images, vote_rows)
        greys = [ferplus_join.grey48(img.data) for img in bar(images, unit="img", desc="decode")]
        matches, report = match_by_pixels(greys, usages, ferplus_rows, pixels, accept=accept)
        missing = sum(bool(r.image) for r in vote_rows) - len(ferplus_rows)
        png_less = ferplus_join.png_less_rows(vote_rows)
        matches, given, report["png_less"] = ferplus_join.give_png_less_votes(
            matches, usages, png_less, missing_pngs=missing
        )
    votes = [by_row[m[0]].votes if m[0] >= 0 else g for m, g in zip(matches, given, strict=True)]
    table = pd.DataFrame(
        [
            {"path": img.relpath, ferplus.ROW_COLUMN: row, "match": how,
             "distance": round(dist, 3),
             **dict(zip(ferplus.VOTE_COLUMNS, v, strict=True))}
            for img, (row, how, dist), v in zip(images, matches, votes, strict=True)
            if v is not None
        ],
        columns=list(ferplus.TABLE_COLUMNS),
    )  # fmt: skip
    write_csv(table, out / ferplus.VOTES_FILE)
    voted = [v for v in votes if v is not None]
    report.update(
        table=str(out / ferplus.VOTES_FILE),
        images=len(images),
        matched=sum(m[0] >= 0 for m in matches),
        no_png=len(voted) - sum(m[0] >= 0 for m in matches),
        unmatched=len(images) - len(voted),
        **vote_counts(voted),
    )
    _print_votes(report)
    return report


def _ferplus_pixels(folder: Path, vote_rows: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The vote rows that have a readable 48x48 FER+ PNG under ``folder`` (by Image name), and
    its pixels."""
    from fer.data import ferplus_join

    if not folder.is_dir():
        raise InputError(f"{folder}: FER+ image folder not found (--ferplus-images)")
    files = {p.name: p for p in folder.rglob("fer*.png") if p.is_file()}
    rows = [r for r in vote_rows if r.image and r.image in files]
    if not rows:
        raise InputError(
            f"{folder}: no FER+ PNG named as in the votes CSV's Image name (fer0000000.png ...)"
        )
    pixels = np.zeros((len(rows), 48, 48), dtype=np.uint8)
    keep = np.ones(len(rows), dtype=bool)
    for i, r in enumerate(bar(rows, unit="img", desc="read FER+ PNGs")):
        grey = ferplus_join.grey48(files[r.image].read_bytes())
        if grey is None:
            keep[i] = False
        else:
            pixels[i] = grey
    return [r for r, k in zip(rows, keep, strict=True) if k], pixels[keep]


def _print_votes(r: dict[str, Any]) -> None:
    no_png = f"{r['no_png']} given the PNG-less rows' votes, " if "png_less" in r else ""
    print(
        f"  FER+ votes by {r['by']}: {r['matched']} of {r['images']} images matched, {no_png}"
        f"{r['unmatched']} without votes (kept) → {r['table']}"
    )
    if r["by"] == "row":
        d = r["duplicate_groups"]
        print(
            f"    rows without a FER+ row: {r['rows_without_votes']}, Usage differing: "
            f"{r['usage_mismatch']}; pixel-identical rows: {d['groups']} groups "
            f"({d['identical_votes']} with identical votes, {d['different_votes']} differing)"
        )
    else:
        print(
            f"    {r['ferplus_images']} FER+ PNGs; {r['exact']} exact, {r['nearest']} nearest "
            f"(mean |grey diff| <= {r['threshold']}); {r['not_48x48_grey']} not 48x48 images"
        )
        print(f"    distance of matches:      {r['distance_matched']}")
        print(f"    nearest different image:  {r['distance_runner_up']}")
        print(f"    nearest for the unmatched: {r['distance_unmatched']}")
        d = r["ferplus_duplicate_groups"]
        print(
            f"    pixel-identical FER+ rows: {d['groups']} groups ({d['identical_votes']} with "
            f"identical votes, {d['different_votes']} differing); images sharing a row: "
            f"{r['rows_matched_twice']}"
        )
        _print_png_less(r["png_less"])
    print(
        f"    not a face (NF most voted): {r['not_face']}; ties among emotions: "
        f"{r['emotion_ties']}\n"
        "  `fer ingest` joins the votes into the manifest; `evaluate` then also scores against "
        "FER+, and train.labels: ferplus_majority | ferplus_soft trains on them"
    )


def _print_png_less(p: dict[str, Any]) -> None:
    """Per Usage: unmatched images given the PNG-less rows' votes, beside how many rows."""
    if not p["by_usage"]:
        print("    FER+ rows without a PNG (empty Image name): none")
        return
    print(
        "    FER+ rows without a PNG (empty Image name), per Usage: unmatched images given "
        "their votes (match no_png) / rows"
    )
    for usage, u in p["by_usage"].items():
        if u["votes"] is None:
            note = "their votes differ: none given"
        else:
            note = "votes " + " ".join(map(str, u["votes"]))
        if u["given"] > u["rows"]:
            note += f"; {u['given'] - u['rows']} more than rows: images that missed their PNG"
        print(f"      {usage}: {u['given']} / {u['rows']} ({note})")
    if p["missing_pngs"]:
        print(
            f"    none given: {p['missing_pngs']} PNG(s) named by the votes CSV missing or "
            "unreadable in --ferplus-images (their images would take these votes); unmatched "
            "images keep no votes"
        )

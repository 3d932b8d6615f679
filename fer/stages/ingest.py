"""`fer ingest`: scan the raw tree into ``data/manifest.parquet`` (docs/data-contracts.md).

Every file found is a row, ``ok`` or ``rejected`` with a reason; one bad file never stops the
run. Files are read once each (hash and header probe from the same bytes) in a process pool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer.data.ferplus import ROW_COLUMN, VOTE_COLUMNS, VOTES_FILE, attach_votes, check_votes_table
from fer.data.images import preload
from fer.data.ingest import (
    Entry,
    add_usage,
    inspect_chunk,
    mark_duplicates,
    scan_tree,
    summarize,
    to_frame,
)
from fer.errors import InputError
from fer.io import write_parquet
from fer.labels import Taxonomy
from fer.progress import bar

if TYPE_CHECKING:
    from fer.config import Config

CHUNKSIZE = 64


def run(cfg: Config) -> dict[str, Any]:
    """Scan ``ingest.raw_dir``, inspect every file, write the manifest, print a summary.

    Returns:
        The summary: total, ok, rejected (by reason), duplicate_groups, duplicates,
        manifest, seconds, files_per_s.

    Raises:
        InputError: the raw dir is missing, not a folder or empty, or holds expression
            folders the taxonomy does not know (unless ``ingest.unknown_folders: ignore``).
    """
    icfg = cfg.ingest
    raw = Path(icfg.raw_dir)
    if not raw.exists():
        raise InputError(
            f"raw dir {raw} not found; create it with `fer sample --out {raw}` or "
            f"`fer import fer2013 CSV --out {raw}`, or set ingest.raw_dir"
        )
    if not raw.is_dir():
        raise InputError(f"raw dir {raw} is not a folder; set ingest.raw_dir to a folder")
    start = time.perf_counter()
    scan = scan_tree(raw, Taxonomy(cfg.taxonomy))
    if not scan.entries:
        raise InputError(
            f"raw dir {raw} is empty (no files besides hidden/system files); expected "
            f"{raw}/<expression>/<image>"
        )
    if scan.unknown_folders and icfg.unknown_folders == "error":
        shown = ", ".join(scan.unknown_folders[:8])
        more = len(scan.unknown_folders) - 8
        shown += f" (+{more} more)" if more > 0 else ""
        raise InputError(
            f"{raw}: folder(s) not in the taxonomy: {shown}; add them to `taxonomy` in params, "
            "or set `ingest.unknown_folders: ignore` to list their files as rejected"
        )
    rows = list(_inspect_all(scan.entries, icfg.max_pixels, icfg.min_side, _workers(icfg.workers)))
    mark_duplicates(rows)
    add_usage(rows, icfg.usage_pattern)
    votes = _attach_votes(raw, rows)
    extra = (ROW_COLUMN, *VOTE_COLUMNS) if votes else ()
    write_parquet(to_frame(rows, extra), icfg.manifest)
    seconds = time.perf_counter() - start
    summary = summarize(rows)
    if votes:
        summary["ferplus"] = votes
    summary.update(
        manifest=str(icfg.manifest),
        seconds=round(seconds, 3),
        files_per_s=round(len(rows) / seconds, 1) if seconds > 0 else 0.0,
    )
    _print_summary(summary)
    return summary


def _attach_votes(raw: Path, rows: list[dict[str, Any]]) -> dict[str, int] | None:
    """Join ``<raw>/.ferplus_votes.csv`` (written by `fer import --votes`) by path, if there."""
    import pandas as pd

    path = raw / VOTES_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"path": str})
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the FER+ votes table ({exc})") from None
    check_votes_table(table, str(path))
    return attach_votes(rows, table)


def _workers(configured: int) -> int:
    if configured > 0:
        return configured
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _inspect_all(
    entries: list[Entry], max_pixels: int, min_side: int, workers: int
) -> Iterator[dict[str, Any]]:
    """Rows for all entries, in completion order, with a files/s progress bar."""
    chunks = [entries[i : i + CHUNKSIZE] for i in range(0, len(entries), CHUNKSIZE)]
    with bar(total=len(entries), unit="file", desc="ingest") as progress:
        if workers <= 1 or len(chunks) <= 1:
            # No pool for one process or a tiny tree: start-up would cost more than it saves.
            for chunk in chunks:
                rows = inspect_chunk(chunk, max_pixels, min_side)
                progress.update(len(rows))
                yield from rows
            return
        # Import and register PIL's plugins once here: forked workers inherit them.
        preload()
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            futures = [pool.submit(inspect_chunk, chunk, max_pixels, min_side) for chunk in chunks]
            for fut in as_completed(futures):
                rows = fut.result()  # inspect_file never raises; a dead worker should
                progress.update(len(rows))
                yield from rows


def _print_summary(s: dict[str, Any]) -> None:
    rejected = sum(s["rejected"].values())
    by_reason = ", ".join(f"{reason} {n}" for reason, n in s["rejected"].items())
    print(
        f"ingest: {s['total']} files in {s['seconds']:.1f} s ({s['files_per_s']:.0f} files/s)\n"
        f"  ok        {s['ok']}\n"
        f"  rejected  {rejected}" + (f"  ({by_reason})" if by_reason else "") + "\n"
        f"  duplicates {s['duplicates']} files in {s['duplicate_groups']} groups "
        "(listed in duplicate_of, not merged)\n"
        f"  wrote {s['manifest']}"
    )
    if "ferplus" in s:
        v = s["ferplus"]
        print(
            f"  FER+ votes: {v['with_votes']} files with votes, {v['without_votes']} without; "
            f"{v['unused']} table rows name no file"
        )

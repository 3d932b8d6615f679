"""`fer sample`: render the synthetic sandbox to ``sample.out`` and its truth CSV.

Worker processes render and write whole chunks of images and send back only the truth rows,
which are appended in index order to a temp CSV renamed into place at the end: memory stays
bounded whatever ``n`` is, and the output does not depend on the number of workers.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer import CLASSES
from fer.config import Config
from fer.errors import ConfigError, InputError
from fer.io import atomic_path, write_bytes, write_text
from fer.progress import bar

if TYPE_CHECKING:
    from fer.data.synthetic import SandboxParams

MARKER = ".fer_sandbox"
"""Dotfile that marks a folder as a sandbox this stage may delete and rewrite."""

CHUNK = 32  # images per task: big enough to amortise IPC, small enough for a smooth bar


def sandbox_params(
    cfg: Config, *, n: int | None = None, seed: int | None = None, noise: float | None = None
) -> SandboxParams:
    """The picklable :class:`~fer.data.synthetic.SandboxParams` of ``cfg`` with overrides."""
    from fer.data.synthetic import SandboxParams

    s = cfg.sample
    noise = s.noise if noise is None else noise
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"--noise must be between 0 and 1 (got {noise!r})")
    seed = s.seed if seed is None else seed
    if seed < 0:
        raise ConfigError(f"seed must be 0 or more (got {seed!r})")
    if n is not None and n < 1:
        raise ConfigError(f"--n must be at least 1 (got {n!r})")
    return SandboxParams.build(
        cfg.taxonomy,
        s.class_weights,
        seed=seed,
        noise=noise,
        no_face_rate=s.no_face_rate,
        multi_face_rate=s.multi_face_rate,
        max_faces=s.max_faces,
        width=s.width,
        height=s.height,
    )


def run(
    cfg: Config,
    *,
    out: Path | None = None,
    truth: Path | None = None,
    n: int | None = None,
    seed: int | None = None,
    noise: float | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Render ``n`` images under ``out/<expression>/`` and the truth CSV; return a summary.

    Arguments left as None take their value from ``cfg.sample``.

    Raises:
        ConfigError: a bad override (``n < 1``, noise outside [0, 1], negative workers).
        InputError: ``out`` exists and is not a previous sandbox, ``truth`` lies inside it,
            or the files cannot be written.
    """
    s = cfg.sample
    out = Path(out if out is not None else s.out)
    truth = Path(truth if truth is not None else s.truth)
    n = s.n if n is None else n
    workers = s.workers if workers is None else workers
    if workers < 0:
        raise ConfigError(f"--workers must be 0 (one per core) or more (got {workers!r})")
    params = sandbox_params(cfg, n=n, seed=seed, noise=noise)
    if truth.resolve().is_relative_to(out.resolve()):
        raise InputError(f"{truth}: the truth CSV must not be inside the sandbox folder {out}")
    _clear(out)
    procs = min(os.cpu_count() or 1, max(1, -(-n // CHUNK))) if workers == 0 else workers
    t0 = time.perf_counter()
    try:
        counts = _write(params, out, truth, n, procs)
    except OSError as exc:  # disk full, permissions: one line, not a traceback
        where = exc.filename or out
        raise InputError(f"{where}: cannot write the sandbox ({exc.strerror or exc})") from None
    seconds = time.perf_counter() - t0
    summary = {
        "n": n,
        "out": str(out),
        "truth": str(truth),
        "seed": params.seed,
        "noise": params.noise,
        "workers": procs,
        "given_class": {c: counts[f"given:{c}"] for c in CLASSES},
        "true_class": {c: counts[f"true:{c}"] for c in CLASSES},
        "single_face": counts["single"],
        "multi_face": counts["multi"],
        "no_face": counts["no_face"],
        "faces": counts["faces"],
        "mislabeled": counts["mislabeled"],
        "seconds": round(seconds, 2),
        "images_per_s": round(n / seconds, 1) if seconds > 0 else None,
    }
    _print_summary(summary)
    return summary


def _write(params: SandboxParams, out: Path, truth: Path, n: int, procs: int) -> Counter[str]:
    """Render into ``out`` and stream the truth rows to ``truth``; return summary counts."""
    from fer.data.synthetic import TRUTH_COLUMNS

    out.mkdir(parents=True, exist_ok=True)
    # The marker goes first: a run killed half-way leaves a folder the next run may clear.
    write_text(out / MARKER, json.dumps({"n": n, "seed": params.seed, "noise": params.noise}))
    for _, names in params.taxonomy:
        for name in names:
            (out / name).mkdir(exist_ok=True)
    counts: Counter[str] = Counter()
    with (
        atomic_path(truth) as tmp,
        tmp.open("w", newline="", encoding="utf-8") as fh,
        bar(total=n, unit="img", desc="sample") as progress,
    ):
        writer = csv.DictWriter(fh, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        for rows in _render(params, out, n, procs):
            writer.writerows(rows)
            for row in rows:
                counts[f"given:{row['given_class']}"] += 1
                counts[f"true:{row['true_class']}"] += 1
                faces = int(row["n_faces"])
                counts["no_face" if faces == 0 else "single" if faces == 1 else "multi"] += 1
                counts["faces"] += faces
                counts["mislabeled"] += bool(row["mislabeled"])
            progress.update(len(rows))
    return counts


def _clear(out: Path) -> None:
    """Remove a previous sandbox; refuse to touch anything else."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; remove it or choose another --out")
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise InputError(
            f"{out}: folder exists and is not a sandbox made by `fer sample` (no {MARKER} "
            "marker); remove it yourself or choose another --out"
        )
    shutil.rmtree(out)


def _render(
    params: SandboxParams, out: Path, n: int, procs: int
) -> Iterator[list[dict[str, Any]]]:
    """Truth rows chunk by chunk, in index order; rendering in ``procs`` processes."""
    chunks = [(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
    task = functools.partial(_render_chunk, params, str(out))
    if procs <= 1:
        yield from map(task, chunks)
        return
    import multiprocessing as mp

    # spawn, not fork: a forked child deadlocks in OpenCV's thread pool once the parent used it.
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs, initializer=_init_worker) as pool:
        yield from pool.imap(task, chunks)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would oversubscribe


def _render_chunk(
    params: SandboxParams, out: str, bounds: tuple[int, int]
) -> list[dict[str, Any]]:
    """Render, encode and atomically write images ``bounds[0]:bounds[1]``; return truth rows."""
    from fer.data.synthetic import make_image

    rows = []
    for i in range(*bounds):
        path, data, row = make_image(params, i)
        write_bytes(Path(out) / path, data)
        rows.append(row)
    return rows


def _print_summary(s: dict[str, Any]) -> None:
    given = ", ".join(f"{c} {k}" for c, k in s["given_class"].items())
    rate = s["mislabeled"] / s["n"] if s["n"] else 0.0
    print(
        f"fer sample: {s['n']} images in {s['out']} ({s['seconds']} s, {s['images_per_s']} img/s,"
        f" {s['workers']} workers)\n"
        f"  folders by class: {given}\n"
        f"  single-face {s['single_face']}, multi-face {s['multi_face']}, no-face {s['no_face']}"
        f" ({s['faces']} faces)\n"
        f"  mislabeled {s['mislabeled']} ({rate:.1%}); truth: {s['truth']}"
    )

"""Benchmark `fer ingest` against its I/O bound: read + sha256 + PIL header parse per file.

Generates N small JPEGs (320×240, smooth shapes plus noise, three expression folders) in a
temp dir, then measures in the same run, interleaved over ``--repeats`` rounds (median kept):

- bound, 1 process: read bytes, sha256, ``Image.open(...).size`` for every file;
- bound, W processes: the same spread over a process pool (chunks of 64, start-up included);
- ``fer.stages.ingest.run``: scan + hash + probe + manifest write, ``ingest.workers = W``,
  in this process (imports warm), and ``python -m fer.cli ingest`` as a new process
  (interpreter start-up and imports of pydantic, numpy, PIL, pandas included).

Goal: ingest / bound(W) ≥ 0.8. Usage::

    python benchmarks/bench_ingest.py --n 10000 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

EXPRESSIONS = ("happy", "angry", "neutral")


def _make_chunk(args: tuple[str, int, int]) -> int:
    import cv2

    root, start, stop = args
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        img = np.empty((240, 320, 3), np.uint8)
        img[:] = rng.integers(40, 220, 3)
        for _ in range(6):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            center = (int(rng.integers(0, 320)), int(rng.integers(0, 240)))
            cv2.circle(img, center, int(rng.integers(10, 80)), color, -1)
        img = cv2.add(img, rng.integers(0, 12, img.shape, dtype=np.uint8))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        path = Path(root) / EXPRESSIONS[i % 3] / f"{i:06d}.jpg"
        path.write_bytes(buf.tobytes())
    return stop - start


def generate(root: Path, n: int, workers: int) -> None:
    for e in EXPRESSIONS:
        (root / e).mkdir(parents=True, exist_ok=True)
    step = 250
    jobs = [(str(root), s, min(s + step, n)) for s in range(0, n, step)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(_make_chunk, jobs)) == n


def _bound_chunk(paths: list[str]) -> int:
    from PIL import Image

    pixels = 0
    for p in paths:
        with open(p, "rb") as fh:
            data = fh.read()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
        pixels += w * h
    return pixels


def list_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.jpg"))


def bound(root: Path, workers: int) -> float:
    """Seconds for read + sha256 + header over all files (listing included, like ingest)."""
    t = time.perf_counter()
    files = list_files(root)
    if workers <= 1:
        _bound_chunk(files)
    else:
        chunks = [files[i : i + 64] for i in range(0, len(files), 64)]
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_bound_chunk, chunks))
    return time.perf_counter() - t


def _params(root: Path, workers: int) -> dict:
    taxonomy = {"positive": ["happy"], "negative": ["angry"], "neutral": ["neutral"]}
    manifest = root.parent / "manifest.parquet"
    return {
        "taxonomy": taxonomy,
        "ingest": {"raw_dir": str(root), "manifest": str(manifest), "workers": workers},
    }


def ingest(root: Path, workers: int) -> float:
    """Seconds for ``fer.stages.ingest.run`` in this process (imports already warm)."""
    from fer.config import config_from_dict
    from fer.stages.ingest import run

    cfg = config_from_dict(_params(root, workers))
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run(cfg)
    seconds = time.perf_counter() - t
    assert summary["ok"] == summary["total"], summary
    return seconds


def ingest_cli(root: Path, workers: int) -> float:
    """Seconds for ``python -m fer.cli ingest`` as a new process (start-up and imports too)."""
    import yaml

    params = root.parent / "params.yaml"
    params.write_text(yaml.safe_dump(_params(root, workers)))
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fer.cli", "ingest", "--params", str(params)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="images to generate")
    ap.add_argument("--workers", type=int, default=2, help="processes for bound and ingest")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the median is reported")
    args = ap.parse_args()
    os.environ.setdefault("FER_PROGRESS", "0")

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        root = Path(tmp) / "raw"
        t = time.perf_counter()
        generate(root, args.n, args.workers)
        size = sum(p.stat().st_size for p in root.rglob("*.jpg"))
        print(
            f"generated {args.n} JPEGs ({size / args.n / 1024:.1f} KiB avg) in "
            f"{time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        bound(root, 1)  # warm the page cache: every measurement below reads from memory
        ingest(root, args.workers)  # warm the stage's imports (pandas, pyarrow)
        b1, bw, ing, cli = [], [], [], []
        for r in range(args.repeats):
            b1.append(bound(root, 1))
            bw.append(bound(root, args.workers))
            ing.append(ingest(root, args.workers))
            cli.append(ingest_cli(root, args.workers))
            print(
                f"round {r + 1}: bound1 {b1[-1]:.2f} s, bound{args.workers} {bw[-1]:.2f} s, "
                f"ingest {ing[-1]:.2f} s, CLI {cli[-1]:.2f} s",
                file=sys.stderr,
            )

    n, w = args.n, args.workers
    f1, fw, fi, fc = (n / statistics.median(x) for x in (b1, bw, ing, cli))
    cmd = "python benchmarks/bench_ingest.py " + shlex.join(
        ["--n", str(n), "--workers", str(w), "--repeats", str(args.repeats)]
    )
    print(f"command: {cmd}")
    print(f"cpus visible: {os.cpu_count()}; median of {args.repeats} rounds, warm page cache")
    print(
        f"| files | bound 1 proc | bound {w} procs | ingest.run, {w} workers | ingest / bound | "
        "`fer ingest` CLI (new process) | CLI / bound |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {n} | {f1:.0f} files/s | {fw:.0f} files/s | {fi:.0f} files/s | {fi / fw:.2f} | "
        f"{fc:.0f} files/s | {fc / fw:.2f} |"
    )


if __name__ == "__main__":
    main()

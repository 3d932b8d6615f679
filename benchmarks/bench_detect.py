"""Benchmark `fer detect` against its bound: decode + detect only, on all cores.

Renders a 640×480 sandbox with ``fer sample`` (plus 1% held back), ingests it, then measures
in the same run:

- bound A: one process, OpenCV's own threads: ``load_rgb`` + ``detector.detect`` per image;
- bound B: a spawn process pool, one OpenCV thread per process (pool warmed before timing);
- ``fer.stages.detect.run`` from a cold cache and empty crops dir (start-up included);
  the three are interleaved over ``--repeats`` rounds and the medians kept;
- the re-run after adding the held-back 1% (goal: ≤ 5% of the full run's time);
- ssd vs haar images/s (bare loop, same pool shape) and image-level F1 on a subset;
- optionally (``--memory 5000,20000``) the peak RSS of the whole `fer detect` process tree
  at each size (goal: flat).

Goal: detect / max(bound A, bound B) ≥ 0.85. Usage::

    python benchmarks/bench_detect.py --n 1000 --workers 2
    python benchmarks/bench_detect.py --n 5000 --memory 5000,20000
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from _common import REPO, detect_config, quiet

os.environ.setdefault("FER_PROGRESS", "0")


def _sandbox(root: Path, n: int, workers: int, hold_back: float = 0.01) -> list[Path]:
    """Render ``n`` images; move ``n * hold_back / (1 + hold_back)`` aside, return them."""
    from fer.stages import sample

    cfg = detect_config(root)
    quiet(sample.run, cfg, out=root / "raw", truth=root / "truth.csv", n=n, workers=workers)
    files = sorted(p for p in (root / "raw").rglob("*") if p.is_file() and p.name[0] != ".")
    extra = round(len(files) * hold_back / (1 + hold_back))
    held = []
    for path in files[:: max(1, len(files) // extra)][:extra] if extra else []:
        dest = root / "held" / path.relative_to(root / "raw")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, dest)
        held.append(dest)
    return held


def _ingest(root: Path, workers: int) -> list[Path]:
    import pandas as pd

    from fer.stages import ingest

    quiet(ingest.run, detect_config(root, workers=workers).model_copy())
    m = pd.read_parquet(root / "m.pq")
    m = m[m.status == "ok"]
    return [root / "raw" / p for p in m.path]


# -- the bound: decode + detect only -------------------------------------------------------

_DET: Any = None


def _init(backend: str, threads: int) -> None:
    global _DET
    import cv2

    from fer.config import DetectConfig
    from fer.faces.detectors import create_detector

    if threads:
        cv2.setNumThreads(threads)
    _DET = create_detector(DetectConfig(backend=backend))


def _decode_detect(path: str) -> tuple[str, int]:
    from fer.data.images import load_rgb

    return path, len(_DET.detect(load_rgb(path)))


def bound_serial(paths: list[Path], backend: str) -> tuple[float, dict[str, int]]:
    """One process, OpenCV's default thread count. Returns (images/s, faces per path)."""
    _init(backend, 0)
    start = time.perf_counter()
    found = dict(_decode_detect(str(p)) for p in paths)
    return len(paths) / (time.perf_counter() - start), found


def bound_pool(paths: list[Path], backend: str, workers: int) -> tuple[float, dict[str, int]]:
    """Process pool, one OpenCV thread each, warmed up before the clock starts."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(backend, 1)) as pool:
        pool.map(time.sleep, [0.3] * workers)  # every worker has run its initializer
        start = time.perf_counter()
        found = dict(pool.imap_unordered(_decode_detect, map(str, paths), chunksize=8))
        rate = len(paths) / (time.perf_counter() - start)
    return rate, found


# -- memory of a process tree (from /proc, no psutil) --------------------------------------


def _tree_rss(pid: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def peak_tree_rss(cmd: list[str], cwd: Path) -> tuple[int, float, int]:
    """Run ``cmd``; return (peak summed RSS of its process tree, seconds, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    done.set()
    thread.join()
    return peak, time.perf_counter() - start, code


def memory_at(size: int, base: Path, workers: int) -> tuple[int, float]:
    root = base / f"mem{size}"
    _sandbox(root, size, workers, hold_back=0)
    _ingest(root, workers)
    params = root / "params.yaml"
    cfg = detect_config(root, workers=workers)
    params.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    cmd = [sys.executable, "-m", "fer.cli", "detect", "--params", str(params)]
    peak, seconds, code = peak_tree_rss(cmd, REPO)
    if code:
        raise SystemExit(f"fer detect failed at n={size} (exit {code})")
    shutil.rmtree(root / "raw", ignore_errors=True)
    shutil.rmtree(root / "crops", ignore_errors=True)
    return peak, seconds


def _f1(paths: list[Path], found: dict[str, int], truth_csv: Path, raw: Path) -> float:
    import pandas as pd

    from fer.faces.scoring import image_level_prf

    truth = dict(zip(*pd.read_csv(truth_csv)[["path", "n_faces"]].T.values, strict=True))
    rel = [p.relative_to(raw).as_posix() for p in paths]
    t = [truth[r] > 0 for r in rel]
    pr = [found[str(p)] > 0 for p in paths]
    return image_level_prf(t, pr)["f1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="sandbox images (default 1000)")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = cores)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument("--compare-n", type=int, default=150, help="images for ssd vs haar")
    parser.add_argument("--memory", default="", help="sizes for peak memory, e.g. 5000,20000")
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: a temp dir)")
    args = parser.parse_args(argv)

    from fer.faces.runner import resolve_workers
    from fer.stages import detect

    workers = resolve_workers(args.workers)
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench_detect_"))
    base.mkdir(parents=True, exist_ok=True)
    root = base / "main"
    command = "python benchmarks/bench_detect.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(
        f"# bench_detect: n={args.n}, workers={workers}, cpus={os.cpu_count()}, "
        f"repeats={args.repeats}, dir={base}"
    )

    held = _sandbox(root, args.n + max(1, args.n // 100), workers)  # n ok + 1% held back
    paths = _ingest(root, workers)
    n = len(paths)

    # Interleaved rounds, median kept: other load on the machine hits all three alike.
    rates_a, rates_b, stage_s = [], [], []
    cfg = detect_config(root, workers=workers)
    for _ in range(args.repeats):
        rates_a.append(bound_serial(paths, "ssd")[0])
        rates_b.append(bound_pool(paths, "ssd", workers)[0])
        for folder in ("cache", "crops"):  # a cold run each round
            shutil.rmtree(root / folder, ignore_errors=True)
        start = time.perf_counter()
        full = quiet(detect.run, cfg)
        stage_s.append(time.perf_counter() - start)
    rate_a, rate_b = statistics.median(rates_a), statistics.median(rates_b)
    bound = max(rate_a, rate_b)
    full_s = statistics.median(stage_s)
    rate_stage = n / full_s

    for path in held:  # add the 1% and re-run
        dest = root / "raw" / path.relative_to(root / "held")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, dest)
    _ingest(root, workers)
    start = time.perf_counter()
    inc = quiet(detect.run, cfg)
    inc_s = time.perf_counter() - start

    loc = full.get("localization", {})
    print("\n| measurement | value | note |\n|---|---|---|", flush=True)
    _row("bound A: 1 process, OpenCV threads (decode+detect)", f"{rate_a:.1f} img/s")
    _row(f"bound B: {workers} processes x 1 thread (decode+detect)", f"{rate_b:.1f} img/s")
    _row(
        f"`fer detect` cold ({n} images, {workers} workers)",
        f"{rate_stage:.1f} img/s",
        f"{rate_stage / bound:.2f} x bound (goal >= 0.85)",
    )
    _row(
        f"`fer detect` after adding {inc['detected']} images (1%)",
        f"{inc_s:.2f} s",
        f"{inc_s / full_s:.1%} of the cold run {full_s:.1f} s (goal <= 5%)",
    )
    if loc:
        im, bx = loc["image"], loc["box"]
        _row(
            f"ssd localization on {loc['scored_images']} images (fer detect)",
            f"image F1 {im['f1']:.3f}",
            f"box P/R/F1@{loc['iou_threshold']:g} "
            f"{bx['precision']:.3f}/{bx['recall']:.3f}/{bx['f1']:.3f}",
        )

    subset = paths[: args.compare_n]
    for backend in ("ssd", "haar"):
        rate, found = bound_pool(subset, backend, workers)
        f1 = _f1(subset, found, root / "truth.csv", root / "raw")
        _row(
            f"{backend} bare loop, {len(subset)} images", f"{rate:.1f} img/s", f"image F1 {f1:.3f}"
        )

    for size in [int(s) for s in args.memory.split(",") if s.strip()]:
        peak, seconds = memory_at(size, base, workers)
        _row(
            f"peak RSS, `fer detect` process tree, {size} images",
            f"{peak / 2**20:.0f} MiB",
            f"{size / seconds:.1f} img/s incl. start-up",
        )

    print(f"\nReproduce: `{command}`")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def _row(*cells: str) -> None:
    print("| " + " | ".join([*cells, ""][:3]) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())

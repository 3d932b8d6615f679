"""Throughput and peak memory of `fer sample` (the real CLI, in a child process).

Memory is the peak of the *sum* of resident set sizes over the whole process tree (the CLI
and its worker processes), sampled every 50 ms with psutil from a thread; shared pages are
therefore counted once per process, so the figure is an upper bound. The largest single
process (``ru_maxrss`` of the children) is printed too.

    python benchmarks/bench_sample.py --n 2000 20000 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def tree_rss(proc: psutil.Process) -> int:
    """Sum of RSS over a process and its descendants (bytes); vanished processes count 0."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def measure(n: int, workers: int, params: Path, seed: int) -> dict[str, float]:
    """Run `fer sample` once into a temp folder; return seconds, images/s and memory peaks."""
    tmp = Path(tempfile.mkdtemp(prefix="fer-bench-sample-"))
    cmd = [
        sys.executable, "-m", "fer.cli", "sample", "--params", str(params),
        "--out", str(tmp / "raw"), "--truth", str(tmp / "truth.csv"),
        "--n", str(n), "--workers", str(workers), "--seed", str(seed),
    ]  # fmt: skip
    env = {**os.environ, "FER_PROGRESS": "0"}
    peak = 0
    done = threading.Event()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        ps = psutil.Process(child.pid)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(ps))
                time.sleep(0.05)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        out, _ = child.communicate()
        seconds = time.perf_counter() - t0
        done.set()
        watcher.join()
        if child.returncode != 0:
            raise SystemExit(f"fer sample failed ({child.returncode}): {out}")
        images = sum(1 for p in (tmp / "raw").rglob("*") if p.is_file()) - 1  # minus marker
        if images != n:
            raise SystemExit(f"expected {n} images, found {images}")
        size_mb = sum(p.stat().st_size for p in (tmp / "raw").rglob("*") if p.is_file()) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the CLI and its (waited-for) workers: unlike wall time, barely moved by
    # other load on a shared machine.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # ru_maxrss: KiB on Linux; the largest single child process waited for so far.
    max_child = after.ru_maxrss / 1024
    return {
        "n": n,
        "workers": workers,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "cpu_ms_per_image": 1000 * cpu / n,
        "peak_tree_rss_mb": peak / 2**20,
        "max_single_process_rss_mb": max_child,
        "dataset_mb": size_mb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        "wall time includes process start and imports"
    )
    print(
        "| n | workers | seconds | images/s | CPU ms/image | peak RSS, process tree (MB) "
        "| dataset (MB) |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    for n in args.n:
        r = measure(n, args.workers, args.params.resolve(), args.seed)
        results.append(r)
        print(
            f"| {n} | {r['workers']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['cpu_ms_per_image']:.1f} | {r['peak_tree_rss_mb']:.0f} | {r['dataset_mb']:.0f} |",
            flush=True,
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"throughput ratio n={b['n']} / n={a['n']}: "
            f"{b['images_per_s'] / a['images_per_s']:.2f} (1.0 = perfectly linear time)"
        )
    print(f"largest single process: {max(r['max_single_process_rss_mb'] for r in results):.0f} MB")
    ns = " ".join(str(n) for n in args.n)
    print(f"reproduce: python benchmarks/bench_sample.py --n {ns} --workers {args.workers}")


if __name__ == "__main__":
    main()

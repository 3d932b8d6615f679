"""Benchmark detection on Dask through prefect-dask against the local process pool.

Renders an ``--n`` image 640×480 sandbox (``fer sample``), ingests it, then measures in the
same run, on the same images:

- the per-task overhead: ``--noop`` no-op Prefect tasks through the same ``detect-batches``
  flow and ``DaskTaskRunner`` (LocalCluster of ``--workers``), and as many plain Dask tasks;
- ``fer.stages.detect.run`` from a cold cache and empty crops dir (fresh dirs per run) with
  ``executor: local`` (spawn pool) and ``executor: dask`` (LocalCluster through prefect-dask),
  interleaved over ``--repeats`` rounds, medians kept; start-up included;
- each executor's start-up (pool or cluster + flow, model loaded, one image per worker), and
  the throughput once started (images / (wall - start-up)).

Goal: dask / local images/s ≥ 0.85. The machine may be shared: the load average is printed.

    python benchmarks/bench_dask.py --n 300 --workers 2
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import detect_config, quiet

os.environ.setdefault("FER_PROGRESS", "0")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def _noop(x: int) -> int:
    return x


def noop_prefect(m: int, workers: int) -> tuple[float, float]:
    """``m`` no-op tasks through the flow: (seconds to the first result, wall s per task)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    from flows.dask_runner import run_flow

    noop = task(_noop, name="noop", persist_result=False, cache_policy=NO_CACHE)
    start = time.perf_counter()
    stamps = [
        time.perf_counter()
        for _ in run_flow(
            lambda i: noop.submit(i),
            range(m),
            workers=workers,
            address=None,
            window=2 * workers,
            on_error=lambda i, exc: None,
        )
    ]
    return stamps[0] - start, (stamps[-1] - stamps[0]) / max(1, m - 1)


def _noop(x: int) -> int:
    return x


def noop_dask(m: int, workers: int) -> float:
    """``m`` no-op plain Dask tasks (``client.submit``) on a warm LocalCluster: s per task."""
    import logging

    from distributed import Client, LocalCluster, wait

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        wait(client.map(_noop, range(workers), pure=False))
        start = time.perf_counter()
        wait(client.map(_noop, range(m), pure=False))
        return (time.perf_counter() - start) / m


class _Spy:
    """Wraps ``fer.stages.detect.run_batches`` to record the batch sizes the stage used."""

    def __init__(self) -> None:
        from fer.faces import runner

        self.real = runner.run_batches
        self.sizes: list[int] = []

    def __call__(self, spec: Any, batches: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            for batch in batches:
                self.sizes.append(len(batch))
                yield batch

        return self.real(spec, counted(), **kwargs)


def startup(root: Path, executor: str, workers: int) -> float:
    """Seconds for the executor to start and return one one-image batch per worker."""
    import pandas as pd

    from fer.faces.runner import run_batches
    from fer.faces.worker import Task, WorkerSpec

    cfg = detect_config(root, run=f"start_{executor}")
    m = pd.read_parquet(root / "m.pq")
    m = m[m.status == "ok"].drop_duplicates("id").head(workers)
    tasks = [[Task(i, str(root / "raw" / p))] for i, p in zip(m.id, m.path, strict=True)]
    spec = WorkerSpec(cfg.detect, cfg.detect.crop, str(root / "start_crops"), 10**8)
    start = time.perf_counter()
    for _ in run_batches(spec, tasks, executor=executor, workers=workers):
        pass
    return time.perf_counter() - start


def _same_outputs(a: Path, b: Path) -> None:
    """The comparison means nothing unless both executors produced the same tables."""
    import pandas as pd

    for name in ("faces.parquet", "detections.parquet"):
        x, y = (pd.read_parquet(d / name) for d in (a, b))
        if "crop_path" in x:  # each run has its own crops dir: compare the file names
            x["crop_path"], y["crop_path"] = (
                t["crop_path"].map(lambda p: Path(p).name) for t in (x, y)
            )
        pd.testing.assert_frame_equal(x, y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="sandbox images (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="pool / Dask workers (default 2)")
    parser.add_argument("--batch-size", type=int, default=0, help="detect.batch_size (0: params)")
    parser.add_argument("--noop", type=int, default=60, help="no-op tasks for the overhead")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: a temp dir)")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_dask.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench_dask_"))
    base.mkdir(parents=True, exist_ok=True)
    # Our own Prefect database: the benchmark's flow runs never mix with a user's.
    os.environ.setdefault("PREFECT_HOME", str(base / "prefect"))
    from fer.stages import detect, ingest, sample
    from flows.dask_runner import shared_api

    w = args.workers
    print(f"# bench_dask: n={args.n}, workers={w}, cpus={os.cpu_count()}, load {_load()}")
    quiet(sample.run, detect_config(base), out=base / "raw", truth=base / "truth.csv", n=args.n)
    quiet(ingest.run, detect_config(base))
    extra = {"batch_size": args.batch_size} if args.batch_size else {}

    start = time.perf_counter()
    with shared_api():  # started once per process, as `fer detect` would (without a server)
        server_s = time.perf_counter() - start
    first_s, per_task = noop_prefect(args.noop, w)
    dask_task = noop_dask(args.noop, w)

    walls: dict[str, list[float]] = {"local": [], "dask": []}
    starts: dict[str, list[float]] = {"local": [], "dask": []}
    sizes: dict[str, list[int]] = {}
    images = 0
    for r in range(args.repeats):
        for executor in ("local", "dask"):
            starts[executor].append(startup(base, executor, w))
            cfg = detect_config(base, run=f"{executor}{r}", executor=executor, workers=w, **extra)
            spy = _Spy()
            detect.run_batches = spy
            try:
                begin = time.perf_counter()
                out = quiet(detect.run, cfg)
                walls[executor].append(time.perf_counter() - begin)
            finally:
                detect.run_batches = spy.real
            sizes[executor] = spy.sizes
            images = out["images"]
    _same_outputs(base / "local0", base / "dask0")

    wall = {k: statistics.median(v) for k, v in walls.items()}
    up = {k: statistics.median(v) for k, v in starts.items()}
    rate = {k: images / wall[k] for k in wall}
    warm = {k: images / max(1e-9, wall[k] - up[k]) for k in wall}
    per_image = w / warm["local"]  # worker-seconds of compute per image, from the pool
    batch = max(sizes["dask"])
    overhead = per_task * w  # worker-seconds per task (w tasks run at once)

    print(f"\nload average after: {_load()} (1/5 min); batch sizes: "
          f"local {max(sizes['local'])} x {len(sizes['local'])}, "
          f"dask {batch} x {len(sizes['dask'])}")  # fmt: skip
    print("\n| measurement | local pool | Dask via prefect-dask | note |\n|---|---|---|---|")
    _row(
        f"`detect.run`, {images} images, cold",
        f"{rate['local']:.1f} img/s",
        f"{rate['dask']:.1f} img/s",
        f"ratio {rate['dask'] / rate['local']:.2f} (goal >= 0.85)",
    )
    _row(
        "start-up (+1 image per worker)",
        f"{up['local']:.1f} s",
        f"{up['dask']:.1f} s",
        "pool spawn vs flow run + LocalCluster; both load the model",
    )
    _row(
        "throughput once started",
        f"{warm['local']:.1f} img/s",
        f"{warm['dask']:.1f} img/s",
        f"ratio {warm['dask'] / warm['local']:.2f}",
    )
    _row(
        f"per-task overhead ({args.noop} no-op tasks)",
        "",
        f"{per_task * 1e3:.0f} ms wall, {overhead * 1e3:.0f} worker-ms",
        f"plain Dask: {dask_task * 1e3:.1f} ms wall/task",
    )
    _row(
        "per-batch compute",
        f"{per_image * 1e3:.0f} worker-ms/image",
        f"{per_image * batch:.2f} s per {batch}-image batch",
        f"overhead {overhead / (overhead + per_image * batch):.0%} of a batch; <=5% needs "
        f">= {19 * overhead / per_image:.0f} images/batch",
    )
    _row("Prefect temporary server start", "", f"{server_s:.1f} s", "once per process; 0 with "
         "PREFECT_API_URL")  # fmt: skip
    _row("flow + LocalCluster start (to first no-op)", "", f"{first_s:.1f} s", "")
    print(f"\nReproduce: `{command}`")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def _row(*cells: str) -> None:
    print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())

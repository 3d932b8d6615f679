"""Parallel detection: runs :func:`fer.faces.worker.process_batch` over batches of images.

``local`` runs in this process (one worker) or in a spawn-based process pool; other executors
(``dask``) are looked up by name in :data:`EXECUTORS`. Every executor keeps a bounded number of
batches in flight, so memory does not grow with the dataset, and yields each batch's results
as it completes (order is not preserved).
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from fer.faces.worker import Result, Task, WorkerSpec, crashed, init_worker, process_batch

EXECUTORS: dict[str, str] = {"dask": "flows.dask_runner:run_batches_prefect"}
"""``detect.executor`` names besides ``local``: ``module:function(spec, batches, n, address)``."""


def resolve_workers(workers: int) -> int:
    """``0`` means one per CPU core."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def run_batches(
    spec: WorkerSpec,
    batches: Iterable[list[Task]],
    *,
    executor: str = "local",
    workers: int = 0,
    dask_address: str | None = None,
) -> Iterator[list[Result]]:
    """Run :func:`process_batch` over ``batches``, yielding each batch's results.

    ``local`` with one worker runs in this process (OpenCV keeps its own threads); more
    workers use a spawn-based process pool, one OpenCV thread each. ``dask`` runs the same
    function as Prefect tasks in a ``detect-batches`` flow on a Dask cluster through
    ``prefect_dask`` (``dask_address`` or a fresh ``LocalCluster`` of ``workers``).
    """
    n = resolve_workers(workers)
    if executor != "local":
        yield from _executor(executor)(spec, batches, n, dask_address)
    elif n == 1:
        local = dataclasses.replace(spec, cv_threads=0)
        for batch in batches:
            yield process_batch(local, batch)
    else:
        yield from _run_pool(spec, batches, n)


def _run_pool(spec: WorkerSpec, batches: Iterable[list[Task]], n: int) -> Iterator[list[Result]]:
    """Process pool with at most ``2n`` batches in flight.

    If a worker dies (segfault, OOM kill) the pool breaks and every in-flight batch fails;
    their images are retried one at a time in a fresh pool, so only the image that kills a
    worker is recorded as crashed.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    source = iter(batches)
    retry: deque[list[Task]] = deque()
    exhausted = False
    while True:
        pool = ProcessPoolExecutor(
            max_workers=n,
            mp_context=mp.get_context("spawn"),
            initializer=init_worker,
            initargs=(spec,),
        )
        inflight: dict[Future[list[Result]], list[Task]] = {}
        broken = False
        try:
            while True:
                # While retrying suspects, run one at a time to pin down the culprit.
                window = 1 if retry else 2 * n
                while len(inflight) < window:
                    if retry:
                        batch = retry.popleft()
                    elif not exhausted:
                        batch = next(source, None)
                        if batch is None:
                            exhausted = True
                            break
                    else:
                        break
                    inflight[pool.submit(process_batch, spec, batch)] = batch
                if not inflight:
                    return
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    batch = inflight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        if len(batch) == 1 and len(inflight) == 0:
                            yield crashed(batch, str(exc) or "process pool broken")
                        else:
                            retry.extend([t] for t in batch)
                if broken:
                    for fut, batch in inflight.items():
                        if fut.done() and fut.exception() is None:
                            yield fut.result()
                        else:
                            retry.extend([t] for t in batch)
                    inflight.clear()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _executor(name: str) -> Callable[..., Iterator[list[Result]]]:
    """An executor outside the library, by name (``detect.executor``); imported on use only.

    Prefect lives in ``flows/``, never in ``fer/``: the Dask executor runs batches as Prefect
    tasks, so it is looked up here by name rather than imported.
    """
    import importlib

    module, _, func = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), func)

"""Parallel detection: the per-batch worker function and its executors (processes or Dask).

Workers load the detector once per process, decode, detect, write crops themselves
(atomically) and send back only small results: boxes, errors, crop counts. Executors keep a
bounded number of batches in flight, so memory does not grow with the dataset, and yield
each batch's results as it completes (order is not preserved).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer.faces.crops import crop_face, crop_name, kept_indices
from fer.faces.detectors import Face

if TYPE_CHECKING:
    from fer.config import CropConfig, DetectConfig
    from fer.faces.detectors import Detector


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable: detector settings, crop settings, limits."""

    detect: DetectConfig
    crop: CropConfig
    crops_dir: str
    max_pixels: int
    cv_threads: int = 1  # 1 in pool workers (one process per core); 0 = OpenCV's default


@dataclass(frozen=True)
class Task:
    """One unique image. ``faces`` given means "detection is cached, only write crops"."""

    image_id: str
    path: str
    faces: tuple[Face, ...] | None = None


@dataclass
class Result:
    """What a worker sends back for one task."""

    image_id: str
    faces: list[Face] = field(default_factory=list)
    error: str = ""  # detection or decode failure: the image has no usable faces
    cacheable: bool = True  # False for failures that may not recur (I/O, crashes)
    detected: bool = False  # detection ran (a cache miss) rather than crop-only
    crops_written: int = 0
    crop_error: str = ""


_STATE: dict[str, Any] = {"cfg": None, "detector": None, "threads": None}


def _detector(spec: WorkerSpec) -> Detector:
    """The process's detector, built once and reused across batches (and Dask tasks)."""
    import cv2

    if _STATE["threads"] != spec.cv_threads:
        if spec.cv_threads:
            cv2.setNumThreads(spec.cv_threads)
        _STATE["threads"] = spec.cv_threads
    if _STATE["detector"] is None or _STATE["cfg"] != spec.detect:
        from fer.faces.detectors import create_detector

        _STATE["detector"] = create_detector(spec.detect)
        _STATE["cfg"] = spec.detect
    return _STATE["detector"]


def init_worker(spec: WorkerSpec) -> None:
    """Process-pool initializer: one OpenCV thread per process, model loaded up front."""
    _detector(spec)


def write_crops(image_rgb: Any, image_id: str, faces: list[Face], spec: WorkerSpec) -> int:
    """Write the missing crops of the faces the policy keeps; returns how many were written."""
    import cv2

    from fer.io import atomic_path

    written = 0
    for index in kept_indices(faces, spec.crop.policy):
        face = faces[index]
        target = Path(spec.crops_dir) / crop_name(image_id, index)
        if target.is_file():
            # Same name = same content, settings and face: the stage wipes the dir whenever
            # crop or detection settings change, and writes are atomic (never partial).
            continue
        crop = crop_face(image_rgb, face, spec.crop)
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {target}")
        written += 1
    return written


def process_batch(spec: WorkerSpec, tasks: list[Task]) -> list[Result]:
    """Decode, detect (unless cached) and crop each task; never raises for one bad image."""
    from fer.data.images import DecodeError, load_rgb

    detector = _detector(spec)
    out: list[Result] = []
    for task in tasks:
        result = Result(task.image_id)
        try:
            image = load_rgb(task.path, max_pixels=spec.max_pixels)
        except DecodeError as exc:
            # Same bytes always fail the same way: safe to cache.
            result.error = f"decode:{exc.reason}: {exc}"
            result.detected = task.faces is None
            out.append(result)
            continue
        except Exception as exc:
            result.error, result.cacheable = f"{type(exc).__name__}: {exc}", False
            out.append(result)
            continue
        if task.faces is None:
            result.detected = True
            try:
                result.faces = detector.detect(image)
            except Exception as exc:
                result.error, result.cacheable = f"{type(exc).__name__}: {exc}", False
                out.append(result)
                continue
        else:
            result.faces = list(task.faces)
        try:
            result.crops_written = write_crops(image, task.image_id, result.faces, spec)
        except Exception as exc:
            result.crop_error = f"crop: {type(exc).__name__}: {exc}"
        out.append(result)
    return out


def _crashed(batch: list[Task], why: str) -> list[Result]:
    return [Result(t.image_id, error=f"worker crashed: {why}", cacheable=False) for t in batch]


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
    if executor == "dask":
        yield from _run_dask(spec, batches, n, dask_address)
    elif n == 1:
        local = WorkerSpec(spec.detect, spec.crop, spec.crops_dir, spec.max_pixels, cv_threads=0)
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
                            yield _crashed(batch, str(exc) or "process pool broken")
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


def _run_dask(
    spec: WorkerSpec, batches: Iterable[list[Task]], n: int, address: str | None
) -> Iterator[list[Result]]:
    """The same batches as Prefect tasks on Dask (``prefect_dask.DaskTaskRunner``).

    See :mod:`fer.faces.prefect_dask`: a ``detect-batches`` flow on ``address`` or on a fresh
    ``LocalCluster`` of ``n`` single-threaded worker processes, with a bounded window.
    """
    from fer.faces.prefect_dask import run_batches_prefect

    yield from run_batches_prefect(spec, batches, n, address)

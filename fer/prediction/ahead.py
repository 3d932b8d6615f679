"""Detecting ahead: worker threads find the faces of the next images or frames while the main
thread finds landmarks, classifies and writes the ones before them.

Detection depends on nothing but its image, so it can run before its turn. Each worker borrows
one detector of a pool for a call (an OpenCV net is not safe to share between threads).
OpenCV and torch keep their own thread settings: pinning their kernels to one thread each
gained 1 % at most when every frame is detected, and cost 17 % when every 5th is (the main
thread's decoding, encoding and classifying lose their threads too).
``predict.detect_workers`` sets how many workers (:func:`detect_workers`).
"""

from __future__ import annotations

import os
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fer.faces.detectors import Detector

T = TypeVar("T")
U = TypeVar("U")
MAX_AUTO_WORKERS = 4  # past this the main thread (landmarks, classifier, writer) is the limit
BATCH_PER_WORKER = 2
"""With workers, the main thread classifies every ``2 × workers`` images or frames: while it
works through a longer batch the workers, one image ahead of it, stand idle (2 workers,
FaceExpressionNet: a folder 36.7 img/s in batches of 4 against 31.2 in batches of 64)."""


def detect_workers(setting: int | str) -> int:
    """``predict.detect_workers`` as a number: ``auto`` is one per core the process may use,
    at most :data:`MAX_AUTO_WORKERS`, and none on one core (nothing to overlap)."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return min(cores, MAX_AUTO_WORKERS) if cores > 1 else 0


def batch_with(workers: int, batch: int) -> int:
    """How many images (or frames) to classify at once: ``batch`` alone, or with ``workers``
    at most :data:`BATCH_PER_WORKER` per worker."""
    return min(batch, BATCH_PER_WORKER * workers) if workers else batch


class DetectorPool:
    """Worker threads, one per detector; each call borrows a detector no other call holds."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("a detector pool needs at least one detector")
        self.free: queue.SimpleQueue[Detector] = queue.SimpleQueue()
        for detector in detectors:
            self.free.put(detector)
        self.workers = len(detectors)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fer-detect")

    def submit(self, work: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``work(detector, *args)`` in a worker with a detector of its own."""
        return self.pool.submit(self._call, work, *args)

    def _call(self, work: Callable[..., T], *args: Any) -> T:
        detector = self.free.get()
        try:
            return work(detector, *args)
        finally:
            self.free.put(detector)

    def in_order(self, work: Callable[..., T], items: Iterable[U]) -> Iterator[tuple[U, T]]:
        """``(item, work(detector, item))`` for each item, in order, ``work`` running in the
        workers at most one item more ahead of the caller than there are workers."""
        queued: deque[tuple[U, Future[T]]] = deque()
        for item in items:
            queued.append((item, self.submit(work, item)))
            if len(queued) > self.workers:
                done, future = queued.popleft()
                yield done, future.result()
        while queued:
            done, future = queued.popleft()
            yield done, future.result()

    def close(self) -> None:
        """Drop calls not yet started and wait for the running ones (idempotent)."""
        self.pool.shutdown(wait=True, cancel_futures=True)

"""Detection batches as Prefect tasks on a Dask cluster, through ``prefect_dask``.

A small flow (``detect-batches``) submits :func:`fer.faces.worker.process_batch` per batch as
a Prefect task to a ``DaskTaskRunner`` (a scheduler address, or a fresh ``LocalCluster``),
keeping at most ``2 × workers`` batches in flight. A flow cannot yield, so it runs in a
background thread and hands each finished batch to the caller's generator through a bounded
queue: memory stays independent of the dataset size, results arrive in completion order,
and the caller stays the only writer of the detection cache.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from fer.errors import ConfigError
from fer.faces.worker import Result, Task, WorkerSpec, crashed, process_batch

FLOW_NAME = "detect-batches"
CONNECT_TIMEOUT_S = 5  # a live scheduler answers in well under a second
_END = object()


@task(name="detect-batch", persist_result=False, cache_policy=NO_CACHE)
def detect_batch(spec: WorkerSpec, batch: list[Task]) -> list[Result]:
    """One batch on a Dask worker; the detector is loaded once per worker process."""
    return process_batch(spec, batch)


# The flow and its parameters are shipped to the workers with every task (Prefect's run
# context), so they must pickle: the flow body looks its in-process driver (queue, iterator,
# locks) up here by run id instead of closing over it.
_DRIVERS: dict[str, Callable[[], None]] = {}


def _flow_body(run_id: str, workers: int, address: str | None) -> None:
    """The ``detect-batches`` flow: runs the driver :func:`run_flow` registered for it."""
    _DRIVERS[run_id]()


def task_runner(workers: int, address: str | None) -> Any:
    """``DaskTaskRunner`` on ``address``, or on a fresh ``LocalCluster`` of ``workers``."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,  # one OpenCV thread per process, as the local pool
            "processes": True,
            "dashboard_address": None,
            "silence_logs": logging.ERROR,
            # Workers: no per-task INFO lines on the console (the progress bar shows them).
            "env": {"DASK_LOGGING__DISTRIBUTED": "error", "PREFECT_LOGGING_LEVEL": "WARNING"},
        },
    )


def shared_api() -> contextlib.AbstractContextManager[Any]:
    """Pin the API URL this process uses, so that Dask workers report to the same server.

    Workers get the flow's settings with each task; with no ``PREFECT_API_URL`` each worker
    would start its own temporary server (seconds each) instead of using this process's.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return contextlib.nullcontext()
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the same per-process instance Prefect's client uses
    server.start()
    return temporary_settings({PREFECT_API_URL: server.api_url})


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when the scheduler at ``address`` cannot be reached.

    Raises:
        ConfigError: bad address or no scheduler answering within ``timeout`` seconds.
    """
    import asyncio

    from distributed.core import rpc

    async def identity() -> dict[str, Any]:
        # A bare RPC, not a Client: a Client that failed to connect complains at exit.
        async with rpc(address, timeout=timeout) as scheduler:
            return await asyncio.wait_for(scheduler.identity(), timeout)

    try:
        kind = asyncio.run(identity()).get("type")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else f"no answer within {timeout:g} s"
        raise ConfigError(
            f"detect.dask_address: cannot reach a Dask scheduler at {address!r} ({why})"
        ) from None
    if kind != "Scheduler":
        raise ConfigError(f"detect.dask_address: {address!r} is a Dask {kind}, not a scheduler")


class _Pump:
    """Hands results from the flow's thread to the caller's, through a bounded queue."""

    def __init__(self, window: int) -> None:
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=window)
        self.stop = threading.Event()

    def put(self, kind: str, value: Any) -> bool:
        """Queue ``(kind, value)``; False once the caller has stopped listening."""
        while not self.stop.is_set():
            try:
                self.queue.put((kind, value), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def results(self) -> Iterator[Any]:
        """Yield results until the flow ends; re-raise its error in the caller's thread."""
        while True:
            kind, value = self.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value


def _drive(
    submit_one: Callable[[Any], Any],
    items: Iterable[Any],
    pump: _Pump,
    *,
    window: int,
    address: str | None,
    on_error: Callable[[Any, BaseException], Any],
) -> None:
    """The flow body: keep the window of tasks full and pump each result as it completes."""
    from distributed import as_completed
    from prefect.context import FlowRunContext

    source = iter(items)
    pending: dict[Any, tuple[Any, Any]] = {}
    # The flow's own (started) runner: Prefect runs a copy of the one passed to `flow`.
    client = FlowRunContext.get().task_runner.client
    done = as_completed(loop=client.loop)
    # On a remote cluster, keep every worker thread busy (`workers` is this machine's).
    limit = max(window, 2 * sum(client.nthreads().values())) if address else window

    def submit() -> bool:
        item = next(source, None)
        if item is None:
            return False
        fut = submit_one(item)
        pending[fut.wrapped_future] = (fut, item)
        done.add(fut.wrapped_future)
        return True

    try:
        while len(pending) < limit and submit():
            pass
        for wrapped in done:
            fut, item = pending.pop(wrapped)
            try:
                result = fut.result()
            except Exception as exc:
                result = on_error(item, exc)
            if not pump.put("result", result):
                return
            submit()
    finally:
        for wrapped in pending:
            wrapped.cancel()


def run_flow(
    submit_one: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int,
    address: str | None,
    window: int,
    on_error: Callable[[Any, BaseException], Any],
) -> Iterator[Any]:
    """Run ``submit_one(item)`` (a Prefect ``task.submit``) per item in a flow; yield results.

    Results come in completion order; at most ``window`` tasks are in flight and at most
    ``window`` finished results wait in the queue. A failed task yields ``on_error(item,
    exc)``. Closing the generator early cancels what is in flight and shuts the flow down.
    """
    source = iter(items)
    first = next(source, _END)
    if first is _END:
        return  # nothing to do (e.g. every image cached): start no server, flow or cluster
    items = itertools.chain([first], source)
    import distributed  # noqa: F401  (its import sets its loggers to INFO: quiet them after)

    if address:
        check_scheduler(address)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    pump = _Pump(window)
    run_id = uuid.uuid4().hex
    batches_flow = flow(
        _flow_body,
        name=FLOW_NAME,
        task_runner=task_runner(workers, address),
        persist_result=False,
        validate_parameters=False,
    )

    def target() -> None:
        try:
            _DRIVERS[run_id] = functools.partial(
                _drive, submit_one, items, pump, window=window, address=address,
                on_error=on_error,
            )  # fmt: skip
            with shared_api():
                batches_flow(run_id, workers=workers, address=address)
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            pump.put("error", exc)
        else:
            pump.put("end", None)

    # A new thread starts with empty context variables: carry the caller's (Prefect settings,
    # e.g. a test harness's API URL) over.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=FLOW_NAME, daemon=True)
    thread.start()
    try:
        yield from pump.results()
    finally:
        pump.stop.set()
        thread.join()
        _DRIVERS.pop(run_id, None)


def run_batches_prefect(
    spec: WorkerSpec, batches: Iterable[list[Task]], workers: int, address: str | None
) -> Iterator[list[Result]]:
    """:func:`fer.faces.worker.process_batch` over ``batches`` as Prefect tasks on Dask.

    The ``dask`` executor of :data:`fer.faces.runner.EXECUTORS`.
    """
    yield from run_flow(
        lambda batch: detect_batch.submit(spec, batch),
        batches,
        workers=workers,
        address=address,
        window=2 * workers,
        on_error=lambda batch, exc: crashed(batch, f"{type(exc).__name__}: {exc}"),
    )

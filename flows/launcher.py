"""``fer pipeline``: one flow run, with Prefect's temporary API server started ahead of time.

With no Prefect server configured, Prefect starts a temporary one when the flow begins: it
first imports the whole server app into this process (~3 s on 2 cores), then waits for the
server process to answer (~4 s) before the first task runs. Here the same server process is
started before anything else is imported, so its start-up overlaps our imports and the client
never imports the server app. Everything else is Prefect's: the flow runs against that server
through ``temporary_settings(PREFECT_API_URL=...)``.

When ``PREFECT_API_URL`` is set (env or Prefect profile) that server is used instead, and when
the early server does not come up, the flow falls back to Prefect's own temporary server.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fer.errors import FerError

# Prefect's own settings for its temporary server (SubprocessASGIServer): no UI, ephemeral.
_SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
_PORT_IN_USE = 3  # uvicorn's exit code when it cannot bind


class TemporaryServer:
    """A Prefect API server process on 127.0.0.1, the same command Prefect uses for its own."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("prefect")  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("prefect is not installed")
        self._app_dir = str(Path(next(iter(spec.submodule_search_locations))).parent)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._launch()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> None:
        from fer.ui import free_port

        self.port = free_port()
        cmd = [
            sys.executable, "-m", "uvicorn", "--app-dir", self._app_dir,
            "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "error", "--lifespan", "on",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env={**os.environ, **_SERVER_ENV})

    def wait_ready(self, timeout: float) -> bool:
        """Poll ``/api/health`` until it answers; relaunch once on a port clash."""
        from fer.ui import wait_healthy

        deadline = time.monotonic() + timeout
        relaunched = False
        while time.monotonic() < deadline:
            assert self.proc is not None
            code = self.proc.poll()
            if code == _PORT_IN_USE and not relaunched:
                relaunched = True
                self._launch()
            elif code is not None:
                return False
            elif wait_healthy(f"{self.api_url}/health", timeout=0.5, interval=0.1):
                return True
        return False

    def stop(self) -> None:
        from fer.ui import stop_processes

        if self.proc is not None:
            stop_processes([self.proc])
            self.proc = None


PROJECT_PARAMS = Path("params.yaml")
"""The params file DVC's stages read (flows.pipeline uses the same)."""


def check_params_file(params: Path | None) -> None:
    """``fer pipeline --params FILE``: only the project's params.yaml, which DVC's stages read.

    Raises:
        FerError: another file was named (running DVC stages would silently ignore it).
    """
    if params is not None and Path(params).resolve() != PROJECT_PARAMS.resolve():
        raise FerError(
            f"--params {params}: `fer pipeline` runs the DVC stages, which read "
            f"{PROJECT_PARAMS} in the project root; edit that file (or pass overrides)"
        )


def run(
    cfg: Any, *, models: list[str] | None = None, force: bool = False, params: Path | None = None
) -> None:
    """Run the ``pipeline`` flow once (see :func:`flows.pipeline.run`)."""
    check_params_file(params)  # before starting any server
    server = None if os.environ.get("PREFECT_API_URL") else _start_quietly()
    try:
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_UI_URL,
            get_current_settings,
            temporary_settings,
        )

        from flows.pipeline import run as run_flow

        settings = get_current_settings()
        usable = (
            server is not None
            and not settings.api.url  # a profile may name a server: then use that one
            and settings.server.ephemeral.enabled
            and server.wait_ready(max(60.0, settings.server.ephemeral.startup_timeout_seconds))
        )
        if not usable:
            if server is not None:
                server.stop()
            run_flow(cfg, models=models, force=force)
            return
        print(f"Prefect: temporary server on {server.api_url} (stops with the run)", flush=True)
        # No UI on a temporary server: an empty UI URL keeps Prefect from printing dead links.
        updates = {PREFECT_API_URL: server.api_url, PREFECT_UI_URL: ""}
        try:
            with temporary_settings(updates=updates):
                run_flow(cfg, models=models, force=force)
        finally:
            _drain_prefect_workers()  # logs and events still queued go out before the server stops
    finally:
        if server is not None:
            server.stop()


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


def _start_quietly() -> TemporaryServer | None:
    try:
        return TemporaryServer()
    except (OSError, ModuleNotFoundError):
        return None  # Prefect starts its own

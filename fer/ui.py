"""``fer ui``: the MLflow UI and the Prefect server on 127.0.0.1, stopped together on Ctrl-C,
SIGTERM or SIGHUP (each server runs in its own process group, so its children go too)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from fer.errors import FerError


def _exe(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FerError(f"`{name}` not found: install the project (`pip install -e .`)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout: float = 60.0, interval: float = 0.5) -> bool:
    """Poll ``url`` every ``interval`` s until it answers 200 or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(interval)
    return False


def stop_processes(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Terminate every process, wait for each, and kill the ones that do not stop in time.

    A process that leads its own process group (started with ``start_new_session``) is
    signalled as a group, so the workers a server spawned stop with it.
    """
    groups = {p.pid for p in procs if _leads_group(p)}
    for p in procs:
        _signal(p, signal.SIGTERM, p.pid in groups)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL, p.pid in groups)
            p.wait(timeout=timeout)
        if p.pid in groups:
            _signal(p, signal.SIGKILL, True)  # children the leader left behind


def _leads_group(p: subprocess.Popen) -> bool:
    try:
        return p.poll() is None and os.getpgid(p.pid) == p.pid
    except ProcessLookupError:
        return False


def _signal(p: subprocess.Popen, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(p.pid, sig)
        elif p.poll() is None:
            p.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def mlflow_ui_command(cfg: Any, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command for this project's tracking store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    artifacts = Path(cfg.tracking.artifact_location).resolve()
    return [
        _exe("mlflow"), "ui", "--backend-store-uri", uri, "--default-artifact-root",
        str(artifacts), "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end ``fer ui`` like Ctrl-C: through its cleanup, not around it."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def run(cfg: Any, *, host: str = "127.0.0.1", mlflow_port: int = 5000, prefect_port: int = 4200):
    """Start both servers, print their URLs, and keep them running until interrupted."""
    env = dict(
        os.environ, MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    prefect = [_exe("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)]
    procs = [
        subprocess.Popen(cmd, env=env, start_new_session=True)
        for cmd in (prefect, mlflow_ui_command(cfg, host, mlflow_port))
    ]
    _stop_on_signals()
    try:
        urls = {
            "Prefect UI": f"http://{host}:{prefect_port}",
            "MLflow UI": f"http://{host}:{mlflow_port}",
        }
        health = {
            "Prefect UI": f"http://{host}:{prefect_port}/api/health",
            "MLflow UI": f"http://{host}:{mlflow_port}/health",
        }
        for name, url in urls.items():
            ok = wait_healthy(health[name])
            print(f"{name:<11} {url}" + ("" if ok else "  (not answering yet)"), flush=True)
        print(f"export PREFECT_API_URL=http://{host}:{prefect_port}/api  # for `fer serve`")
        print("Ctrl-C stops both.", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        raise FerError("a UI server exited; see its output above")
    except KeyboardInterrupt:
        pass
    finally:
        stop_processes(procs)

"""`fer ui` stopped by SIGTERM or SIGHUP takes its servers (and their workers) with it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fer.ui import free_port, wait_healthy
from tests.kit import env

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_both_servers(tmp_path: Path, sig: int) -> None:
    mlflow_port, prefect_port = free_port(), free_port()
    fer = Path(sys.executable).with_name("fer")
    extra = {"PREFECT_HOME": str(tmp_path / "prefect"),
             "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}  # fmt: skip
    proc = subprocess.Popen(
        [str(fer), "--params", str(REPO / "params.yaml"), "ui", "--mlflow-port",
         str(mlflow_port), "--prefect-port", str(prefect_port)],
        cwd=tmp_path, env={**env(tmp_path), **extra},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_healthy(f"http://127.0.0.1:{mlflow_port}/health", timeout=120)
        assert wait_healthy(f"http://127.0.0.1:{prefect_port}/api/health", timeout=120)
        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 3  # fer ui + both servers (and their workers)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in tree):
            assert time.monotonic() < deadline, "a server outlived fer ui"
            time.sleep(0.5)
        assert _port_free(mlflow_port) and _port_free(prefect_port)
    finally:
        if proc.poll() is None:
            proc.kill()

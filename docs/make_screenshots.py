"""Regenerate the README's UI screenshots from this workspace (after `dvc repro`).

Starts the MLflow UI and a Prefect server on free loopback ports, runs `fer pipeline` against
that server (every stage is up to date, so it only records the flow run), and saves headless
Chromium screenshots to docs/mlflow-ui.png and docs/prefect-ui.png.

    .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer.config import load_config  # noqa: E402
from fer.ui import mlflow_ui_command  # noqa: E402
from tests.browser import free_port, render, wait_http  # noqa: E402

BIN = Path(sys.executable).parent


def main() -> None:
    os.chdir(ROOT)
    cfg = load_config()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    procs = []
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{ROOT / 'mlflow.db'}")
        exp_id = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
        runs = client.search_runs([exp_id], filter_string="tags.stage = 'train'")
        port = free_port()
        procs.append(subprocess.Popen(mlflow_ui_command(cfg, "127.0.0.1", port), env=env))
        wait_http(f"http://127.0.0.1:{port}/health")
        ids = urllib.parse.quote(json.dumps([r.info.run_id for r in runs]))
        exp = urllib.parse.quote(json.dumps([exp_id]))
        render(
            f"http://127.0.0.1:{port}/#/compare-runs?runs={ids}&experiments={exp}",
            screenshot=ROOT / "docs/mlflow-ui.png",
        )

        pport = free_port()
        api = f"http://127.0.0.1:{pport}/api"
        home = tempfile.mkdtemp(prefix="fer-prefect-")
        penv = dict(env, PREFECT_API_URL=api, PREFECT_HOME=home)
        server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
        procs.append(subprocess.Popen([*server, "--port", str(pport)], env=penv))
        wait_http(f"{api}/health", timeout=120)
        subprocess.run([str(BIN / "fer"), "pipeline"], env=penv, check=True)
        req = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        flow_run = json.loads(urllib.request.urlopen(req).read())[0]
        render(
            f"http://127.0.0.1:{pport}/runs/flow-run/{flow_run['id']}",
            screenshot=ROOT / "docs/prefect-ui.png",
        )
    finally:
        for p in procs:
            p.terminate()
    print("wrote docs/mlflow-ui.png and docs/prefect-ui.png")


if __name__ == "__main__":
    main()

"""``fer serve``: serve the pipeline flow as a Prefect deployment.

Then ``prefect deployment run 'pipeline/fer'`` (or the UI's "Quick run") triggers a run, with
parameters such as ``-p models='["alexnet"]'`` or ``-p overrides='["train.lr=0.0005"]'``.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

from fer.errors import FerError

DEFAULT_API = "http://127.0.0.1:4200/api"
DEPLOYMENT = "fer"


def api_url() -> str:
    """The Prefect API this process talks to (``PREFECT_API_URL``, else the local server)."""
    return os.environ.get("PREFECT_API_URL") or DEFAULT_API


def check_server(url: str, timeout: float = 3.0) -> None:
    """Fail fast with one line when the Prefect server is not reachable."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
    except OSError:
        pass
    raise FerError(
        f"no Prefect server at {url}: start one with `fer ui` (or `prefect server start "
        "--host 127.0.0.1`), or set PREFECT_API_URL"
    )


def run(cfg: Any, *, cron: str | None = None) -> None:
    """Serve the ``pipeline`` flow until interrupted (Ctrl-C)."""
    url = api_url()
    check_server(url)
    os.environ["PREFECT_API_URL"] = url
    from prefect import serve

    from flows.pipeline import pipeline

    deployment = pipeline.to_deployment(
        name=DEPLOYMENT,
        cron=cron,
        description="sample → ingest → detect → validate → split → train → evaluate, via DVC",
        tags=["fer"],
    )
    print(f"serving deployment 'pipeline/{DEPLOYMENT}' against {url}")
    print(f"trigger a run with: prefect deployment run 'pipeline/{DEPLOYMENT}'")
    serve(deployment, print_starting_message=False)


if __name__ == "__main__":
    from fer.config import load_config

    run(load_config())

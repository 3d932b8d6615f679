"""`fer api [--model URI_OR_DIR] [--host H] [--port P] [--workers N] [--max-bytes N]`.

Serves one model over HTTP (fer.prediction.api) until interrupted. The model resolves exactly as
for `fer predict` (fer.prediction.model_resolution): an explicit ``--model``, else
``predict.model``, else ``predict.fallback`` when set. It is loaded here once first, so a model
that does not load stops the command with one line before any port is bound; with
``--workers 1`` that copy serves, with more each worker process loads its own.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from fer.errors import InputError
from fer.prediction.model_resolution import resolve_model

if TYPE_CHECKING:
    from fer.config import Config


def run(
    cfg: Config,
    *,
    model: str | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Resolve and load the model, then serve it with uvicorn until interrupted.

    Returns:
        ``{"model", "host", "port", "workers"}`` after the server has stopped.

    Raises:
        ModelError: the model does not resolve or load.
        InputError: an option out of range.
    """
    import uvicorn

    from fer.prediction import api

    host = host or cfg.api.host
    port = cfg.api.port if port is None else port
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if max_bytes is not None and max_bytes < 1:
        raise InputError(f"--max-bytes {max_bytes}: must be at least 1")
    resolved = resolve_model(cfg, model)
    settings = api.settings_from_config(
        cfg, resolved.path, resolved.source, workers=workers, max_request_bytes=max_bytes
    )
    engine = api.Engine(settings)  # fails here, with one line, when the model does not load
    print(
        f"fer api: model {resolved.source} ({engine.classifier.arch}) on http://{host}:{port} "
        f"(workers {settings.workers}, max request {settings.max_request_bytes} bytes, "
        f"image folder {settings.image_dir or 'none'})",
        file=sys.stderr,
        flush=True,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "server_header": False,
        # h11 on every install (httptools would be picked when present): request heads are
        # capped at 16 KiB, and an unread body is discarded as the drain in
        # fer.prediction.api.RequestGuard expects.
        "http": "h11",
        "h11_max_incomplete_event_size": 16 * 1024,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        uvicorn.run(api.create_app(settings, engine), **options)
    else:
        del engine  # each worker loads its own
        os.environ[api.SETTINGS_ENV] = settings.to_json()
        uvicorn.run(
            "fer.prediction.api:create_app", factory=True, workers=settings.workers, **options
        )
    return {"model": resolved.source, "host": host, "port": port, "workers": settings.workers}

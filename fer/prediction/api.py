"""`fer api`: one model behind HTTP (FastAPI on uvicorn), hardened against hostile requests.

Endpoints (README: Serving over HTTP):

- ``GET /health``: ``{"status": "ok", "model": source, "arch": name}``;
- ``POST /predict``: the image's bytes as the body (``image/*`` or
  ``application/octet-stream``) or a multipart file field ``image`` → ``{"faces": [...]}``,
  the face records of ``fer predict``'s JSON;
- ``POST /invocations``: MLflow's scoring protocol (``dataframe_records`` or
  ``dataframe_split`` with a column ``image`` of base64 text) → ``{"predictions": [{"faces":
  "<JSON list>", "error": ""}]}``, byte for byte what ``mlflow models serve`` of the logged
  pyfunc returns, so its clients can switch. A bad row gets its ``error``; the others go on.

Limits: a body over ``max_request_bytes`` is refused with 413 before it is read (by its
Content-Length) or as soon as the count passes the limit (chunked); images are checked from
their header (``max_image_pixels``, 413) before any pixel is decoded. Every error is JSON
``{"error": reason, "detail": text}``; no traceback reaches a client.

Each worker process loads the model once (:func:`create_app` is uvicorn's app factory) and runs
it off the event loop (:class:`Runner`): detection and classification on one thread of its own
(OpenCV's detector network is not thread-safe), decoding on two, with at most two images held
decoded, so waiting requests queue instead of multiplying memory; at most ``max_concurrency``
requests are in progress per worker (503 beyond).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from fer.config import Config

SETTINGS_ENV = "FER_API_SETTINGS"
"""How `fer api` hands :class:`ApiSettings` (JSON) to the worker processes uvicorn starts."""
RAW_TYPES = ("application/octet-stream",)
DECODERS = 2  # images decoded at once per worker (and held decoded: bounds the memory)
DRAIN_FACTOR = 4  # an oversized body up to this many times the limit is read and discarded
DRAIN_SECONDS = 5.0  # ... within this time; beyond either, its connection is closed
log = logging.getLogger("uvicorn.error")  # uvicorn configures it: our lines join its log

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ApiSettings:
    """Everything a worker needs to build the app: the model and the request limits."""

    model_dir: str
    model_source: str
    detector: dict[str, Any]  # params' detector settings: used when the model carries none
    crop: dict[str, Any]  # params' crop settings: likewise
    batch_size: int = 64
    workers: int = 1
    max_request_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    min_image_side: int = 16
    max_rows: int = 32
    max_concurrency: int = 32
    body_timeout_s: float = 30.0
    image_dir: str | None = None

    def to_json(self) -> str:
        """The settings as JSON (for :data:`SETTINGS_ENV`)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ApiSettings:
        """The settings `fer api` put in :data:`SETTINGS_ENV`."""
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set: start the server with `fer api`")
        return cls(**json.loads(raw))


def settings_from_config(
    cfg: Config, model_dir: Path, source: str, **overrides: Any
) -> ApiSettings:
    """:class:`ApiSettings` from params' ``api`` section; ``overrides`` that are None are
    ignored. ``image_dir`` is ``api.image_dir``, else ``FER_IMAGE_DIR``, else none."""
    from fer.prediction.serving import image_dir_from_env

    api = cfg.api
    image_dir = api.image_dir if api.image_dir is not None else image_dir_from_env()
    values: dict[str, Any] = {
        "model_dir": str(Path(model_dir).resolve()),
        "model_source": source,
        "detector": cfg.detect.detector().model_dump(mode="json"),
        "crop": cfg.detect.crop.model_dump(mode="json"),
        "batch_size": cfg.predict.batch_size,
        "workers": api.workers,
        "max_request_bytes": api.max_request_bytes,
        "max_image_pixels": api.max_image_pixels,
        "min_image_side": api.min_image_side,
        "max_rows": api.max_rows,
        "max_concurrency": api.max_concurrency,
        "body_timeout_s": api.body_timeout_s,
        "image_dir": str(Path(image_dir).resolve()) if image_dir is not None else None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ApiSettings(**values)


class ApiError(Exception):
    """A request the API refuses: HTTP ``status``, a short ``error`` reason and a ``detail``;
    ``close`` ends the connection after the answer (a body left unread)."""

    def __init__(self, status: int, error: str, detail: str, *, close: bool = False) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.close = status, error, detail, close


def error_response(status: int, error: str, detail: str, *, close: bool = False) -> JSONResponse:
    """The JSON error body ``{"error", "detail"}``."""
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


# --- the model ---------------------------------------------------------------------------------


class Engine:
    """The model of one worker process: detector, classifier and its face recipe.

    Not thread-safe (OpenCV's detector network is not): the app calls it from one thread.
    """

    def __init__(self, settings: ApiSettings) -> None:
        from fer.config import CropConfig, DetectorSettings
        from fer.data.images import preload
        from fer.faces.detectors import create_detector
        from fer.prediction.ensemble import load_for_inference

        self.settings = settings
        self.classifier = load_for_inference(
            settings.model_dir, device="auto", batch_size=settings.batch_size
        )
        # As `fer predict` does: the settings the model was trained with, params' otherwise.
        self.crop = self.classifier.face_cutter(default=CropConfig(**settings.crop))
        params = DetectorSettings(**settings.detector)
        self.detector = create_detector(self.classifier.detector_settings(default=params))
        preload()

    def decode(self, data: bytes) -> np.ndarray:
        """The RGB pixels of one encoded image (thread-safe).

        Raises:
            DecodeError: not a usable image (``reason`` says why; ``too_small`` when a side is
                below ``min_image_side``).
        """
        from fer.data.images import DecodeError, load_rgb

        rgb = load_rgb(data, max_pixels=self.settings.max_image_pixels)
        height, width = rgb.shape[:2]
        if min(height, width) < self.settings.min_image_side:
            raise DecodeError(
                "too_small",
                f"<bytes>: {width}x{height} image; each side must be at least "
                f"{self.settings.min_image_side} px",
            )
        return rgb

    def analyze(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        """The face records of one image (detector and classifier: one thread at a time)."""
        from fer.prediction.inference import analyze_image

        return analyze_image(rgb, self.detector, self.classifier, self.crop)

    def cell_bytes(self, value: Any) -> bytes:
        """The image bytes of one ``/invocations`` cell (base64, or a file in ``image_dir``).

        Raises:
            DecodeError: reason ``bad_input`` (as the pyfunc words it).
        """
        from fer.data.images import DecodeError
        from fer.prediction.serving import image_bytes

        try:
            return image_bytes(
                value, image_dir=self.settings.image_dir, max_bytes=self.settings.max_request_bytes
            )
        except ValueError as exc:
            raise DecodeError("bad_input", str(exc)) from None


class Runner:
    """Runs the engine off the event loop: images are decoded on ``DECODERS`` threads and
    analysed on one, and at most ``DECODERS`` images are held decoded at a time (memory stays
    bounded however many requests wait)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-inference")
        self.decoders = ThreadPoolExecutor(max_workers=DECODERS, thread_name_prefix="fer-decode")
        self.gate = asyncio.Semaphore(DECODERS)

    async def _run(self, pool: ThreadPoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
        from fer.data.images import DecodeError

        try:
            return await asyncio.get_running_loop().run_in_executor(pool, func, *args)
        except DecodeError:
            raise
        except Exception:
            log.exception("inference failed")
            raise ApiError(500, "internal", "internal server error (logged)") from None

    async def faces(self, data: bytes) -> list[dict[str, Any]]:
        """The face records of one encoded image; raises ``DecodeError``."""
        async with self.gate:
            rgb = await self._run(self.decoders, self.engine.decode, data)
            return await self._run(self.inference, self.engine.analyze, rgb)

    async def rows(self, cells: list[Any]) -> list[dict[str, str]]:
        """One ``{"faces": "<JSON>", "error"}`` per cell, worded as the MLflow pyfunc does."""
        from fer.data.images import DecodeError

        out = []
        for cell in cells:
            try:
                data = await self._run(self.decoders, self.engine.cell_bytes, cell)
                out.append({"faces": json.dumps(await self.faces(data)), "error": ""})
            except DecodeError as exc:
                out.append({"faces": "[]", "error": f"{exc.reason}: {exc}"})
        return out

    def shutdown(self) -> None:
        """Stop the threads (after the requests in progress)."""
        self.decoders.shutdown(wait=True, cancel_futures=True)
        self.inference.shutdown(wait=True, cancel_futures=True)


def _limit_threads(workers: int) -> None:
    """Share the cores among the worker processes (torch and OpenCV would each take all)."""
    import cv2
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // max(1, workers))
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


# --- request limits (pure ASGI, outside the routes) ---------------------------------------------


class RequestGuard:
    """Refuse oversized bodies before reading them, count streamed ones, cap requests in flight.

    A Content-Length over the limit is answered 413 at once: the body is never received into
    memory. A body without one (chunked) is counted as it arrives and cut with 413 when it passes
    the limit. Either way, up to :data:`DRAIN_FACTOR` times the limit is then discarded as it
    arrives, so that a client that sends its whole body before reading (most do) gets the 413
    instead of a reset connection; a larger body has its connection closed. More than
    ``max_concurrency`` requests in progress get 503.
    """

    def __init__(self, app: Any, *, max_bytes: int, max_concurrency: int) -> None:
        self.app, self.max_bytes, self.max_concurrency = app, max_bytes, max_concurrency
        self.active = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, self._counting(receive), send)
        finally:
            self.active -= 1

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        lengths = [v for k, v in scope["headers"] if k == b"content-length"]
        if lengths:
            try:
                length = int(lengths[0])
            except ValueError:
                return error_response(400, "bad_request", "invalid Content-Length", close=True)
            if length > self.max_bytes:
                # Kept open, uvicorn discards a body it was not asked for as it arrives.
                close = length > DRAIN_FACTOR * self.max_bytes
                detail = self._too_large(f"{length} bytes")
                return error_response(413, "too_large", detail, close=close)
        if self.active >= self.max_concurrency:
            return error_response(
                503, "busy", f"{self.active} requests in progress; retry shortly"
            )
        return None

    def _too_large(self, size: str) -> str:
        return f"request body of {size} is over the limit of {self.max_bytes} bytes"

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    ended = await self._drain(receive, message)
                    detail = self._too_large(f"more than {self.max_bytes} bytes")
                    raise ApiError(413, "too_large", detail, close=not ended)
            return message

        return counted

    async def _drain(self, receive: Receive, message: dict[str, Any]) -> bool:
        """Discard the rest of an oversized body, up to DRAIN_FACTOR times the limit and
        DRAIN_SECONDS; True when the body ended (the connection can stay open)."""
        budget = DRAIN_FACTOR * self.max_bytes
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while message.get("more_body", False):
                    message = await receive()
                    budget -= len(message.get("body", b""))
                    if message["type"] != "http.request" or budget < 0:
                        return False
        except TimeoutError:
            return False
        return True


# --- reading requests --------------------------------------------------------------------------


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ("" when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, timeout_s: float) -> bytes:
    """The whole body (the guard has already bounded its size); 408 when it is too slow."""
    try:
        async with asyncio.timeout(timeout_s):
            body = await request.body()
    except TimeoutError:
        detail = f"body not received within {timeout_s:g} s"
        raise ApiError(408, "timeout", detail, close=True) from None
    if not body:
        raise ApiError(400, "empty_body", "the request has no body")
    return body


async def image_from_request(request: Request, settings: ApiSettings) -> bytes:
    """The encoded image of a ``/predict`` request: the raw body or the multipart field."""
    kind = media_type(request)
    if kind.startswith("image/") or kind in RAW_TYPES:
        return await read_body(request, settings.body_timeout_s)
    if kind == "multipart/form-data":
        try:
            async with asyncio.timeout(settings.body_timeout_s):
                return await _multipart_image(request, settings)
        except TimeoutError:
            detail = f"body not received within {settings.body_timeout_s:g} s"
            raise ApiError(408, "timeout", detail, close=True) from None
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type {kind or '(none)'!r}: send the image's bytes as image/* or "
        "application/octet-stream (curl --data-binary @photo.jpg -H 'Content-Type: "
        "image/jpeg'), or multipart/form-data with a file field 'image' "
        "(curl -F image=@photo.jpg)",
    )


async def _multipart_image(request: Request, settings: ApiSettings) -> bytes:
    from fer.prediction.serving import image_bytes

    limit = settings.max_request_bytes
    async with request.form(max_files=1, max_fields=8, max_part_size=limit) as form:
        field = form.get("image")
        if isinstance(field, UploadFile):
            data = await field.read()
        elif isinstance(field, str):  # base64 text in a plain field; never a path here
            try:
                data = image_bytes(field)
            except ValueError as exc:
                raise ApiError(422, "bad_input", str(exc)) from None
        else:
            raise ApiError(422, "missing_field", "multipart body has no field 'image'")
    if not data:
        raise ApiError(400, "empty_body", "the field 'image' is empty")
    return data


def invocation_cells(body: bytes, max_rows: int) -> list[Any]:
    """The ``image`` cells of an MLflow scoring request (``dataframe_records`` or
    ``dataframe_split``); a row without one gets None (a per-row ``bad_input``)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"body is not valid JSON ({exc})") from None
    expected = 'a JSON object with "dataframe_records" or "dataframe_split"'
    if not isinstance(doc, dict):
        raise ApiError(422, "bad_format", f"expected {expected}")
    if "dataframe_records" in doc:
        cells = _records(doc["dataframe_records"])
    elif "dataframe_split" in doc:
        cells = _split(doc["dataframe_split"])
    else:
        raise ApiError(422, "bad_format", f"expected {expected}; got keys {sorted(doc)[:5]}")
    if not cells:
        raise ApiError(422, "no_rows", "the request holds no rows")
    if len(cells) > max_rows:
        raise ApiError(413, "too_many_rows", f"{len(cells)} rows; at most {max_rows} per request")
    return cells


def _records(records: Any) -> list[Any]:
    if not isinstance(records, list):
        raise ApiError(422, "bad_format", '"dataframe_records" must be a list of objects')
    rows = [r if isinstance(r, dict) else {} for r in records]
    if rows and not any("image" in r for r in rows):
        raise ApiError(422, "missing_field", "no row has the field 'image'")
    return [r.get("image") for r in rows]


def _split(split: Any) -> list[Any]:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise ApiError(
            422, "bad_format", '"dataframe_split" must be {"columns": [...], "data": [[...]]}'
        )
    columns = split.get("columns")
    if not isinstance(columns, list) or "image" not in columns:
        raise ApiError(422, "missing_field", "\"dataframe_split\" has no column 'image'")
    at = columns.index("image")
    return [
        row[at] if isinstance(row, list) and len(row) == len(columns) else None
        for row in split["data"]
    ]


# --- the app -----------------------------------------------------------------------------------


def create_app(settings: ApiSettings | None = None, engine: Engine | None = None) -> FastAPI:
    """The ASGI app; without arguments (uvicorn's factory, one call per worker process) the
    settings come from :data:`SETTINGS_ENV` and the model is loaded here, once."""
    settings = settings or ApiSettings.from_env()
    _limit_threads(settings.workers)
    engine = engine or Engine(settings)
    runner = Runner(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runner.shutdown()

    app = FastAPI(title="fer", summary="Facial-expression recognition", lifespan=lifespan)
    app.add_middleware(
        RequestGuard,
        max_bytes=settings.max_request_bytes,
        max_concurrency=settings.max_concurrency,
    )
    _handlers(app)
    _routes(app, settings, runner)
    return app


def decode_error(exc: Exception, settings: ApiSettings) -> ApiError:
    """The HTTP error for an image that cannot be used (413 for a decompression bomb)."""
    reason = getattr(exc, "reason", "corrupt")
    detail = str(exc).removeprefix("<bytes>: ")
    if reason == "decompression_bomb":
        limit = f"over the limit of {settings.max_image_pixels} pixels"
        return ApiError(413, reason, f"{limit} ({detail})")
    return ApiError(422, reason, detail)


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
        },
    }
}
_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"example": {"dataframe_records": [{"image": "<b64>"}]}}},
    }
}


def _routes(app: FastAPI, settings: ApiSettings, runner: Runner) -> None:
    from fer.data.images import DecodeError

    arch = runner.engine.classifier.arch
    health = {"status": "ok", "model": settings.model_source, "arch": arch}

    @app.get("/health")
    async def get_health() -> dict[str, Any]:
        """The server is up and its model loaded."""
        return health

    @app.get("/ping", include_in_schema=False)
    async def ping() -> dict[str, Any]:  # what clients of `mlflow models serve` poll
        return health

    @app.post("/predict", openapi_extra=_PREDICT_BODY)
    async def predict(request: Request) -> dict[str, Any]:
        """Faces, boxes and expression probabilities of one image."""
        data = await image_from_request(request, settings)
        try:
            return {"faces": await runner.faces(data)}
        except DecodeError as exc:
            raise decode_error(exc, settings) from None

    @app.post("/invocations", openapi_extra=_INVOCATIONS_BODY)
    async def invocations(request: Request) -> dict[str, Any]:
        """MLflow's scoring protocol: one prediction row per ``image`` cell."""
        if media_type(request) != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {media_type(request) or '(none)'!r}: send application/json",
            )
        body = await read_body(request, settings.body_timeout_s)
        # Parsing up to max_request_bytes of JSON takes tens of ms: not on the event loop.
        cells = await asyncio.to_thread(invocation_cells, body, settings.max_rows)
        return {"predictions": await runner.rows(cells)}


def _handlers(app: FastAPI) -> None:
    """Every error as ``{"error", "detail"}`` JSON; tracebacks only in the server's log."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, close=exc.close)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        reason = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return error_response(exc.status_code, reason, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", str(exc.errors()[:1]))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response(500, "internal", "internal server error (logged)")

"""The review web app (FastAPI): one server-rendered page, JPEG endpoints and a small JSON API.

Routes:

- ``GET /``: a page of cards (``group``, ``cls``, ``sort``, ``todo``, ``page`` query params);
- ``GET /api/items``: the same page as JSON;
- ``GET /thumb/face/{face_id}``, ``GET /thumb/image/{image_id}``, ``GET /image/{image_id}``
  (``?face=`` highlights one face): JPEGs of listed files only;
- ``POST /api/decide`` ``{"item", "action", "label"}``, ``POST /api/undo``,
  ``POST /api/decisions`` ``{"items": [...]}``: decisions, written to the file at once;
- ``GET /healthz``.

Ids are looked up in the tables loaded at start-up; no path from a request reaches the
filesystem, and a listed path must still resolve inside its root (404 / 400 otherwise).
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from fer import CLASSES
from fer.errors import FerError
from fer.review import items as it
from fer.review.images import OutsideRoot
from fer.validation.decisions import FACE_ACTIONS, Decision

if TYPE_CHECKING:
    from fer.review.state import ReviewState

KEYMAP: list[tuple[str, str]] = [
    ("j / ↓ / →", "next card"),
    ("k / ↑ / ←", "previous card"),
    ("1 / 2 / 3", "relabel positive / negative / neutral"),
    ("a", "keep (accept the given label)"),
    ("d", "drop (exclude from training)"),
    ("n", "not a face"),
    ("r", "restore from quarantine (image cards)"),
    ("u", "undo the last decision"),
    ("f", "whole image with the box (toggle)"),
    ("] / [", "next / previous page"),
    ("?", "show / hide this help"),
]
IMAGE_MAX_SIDE = 720
_CACHE = {"Cache-Control": "private, max-age=3600"}


class DecideBody(BaseModel):
    """``POST /api/decide``."""

    item: str
    action: str
    label: str = ""


class ItemsBody(BaseModel):
    """``POST /api/undo`` and ``/api/decisions``: the cards whose decisions to send back."""

    items: list[str] = []


@lru_cache(maxsize=1)
def _templates() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("fer.review", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def _script() -> str:
    return resources.files("fer.review").joinpath("static/review.js").read_text("utf-8")


def _query(group: str, cls: str, sort: str, todo: int, page: int, size: int) -> it.Query:
    if group != "all" and group not in it.GROUPS:
        raise HTTPException(400, f"unknown group {group!r}")
    if cls and cls not in CLASSES:
        raise HTTPException(400, f"unknown class {cls!r}")
    if sort not in it.SORTS:
        raise HTTPException(400, f"unknown sort {sort!r}")
    return it.Query(group, cls, sort, bool(todo), max(page, 1), min(max(size, 1), 500))


def _decision_json(d: Decision | None) -> dict[str, str] | None:
    return None if d is None else d.row()


def _card(row: Any, decision: Decision | None) -> dict[str, Any]:
    conf = row.confidence
    return {
        "item": row.item,
        "group": row.group,
        "kind": row.kind,
        "face_id": row.face_id,
        "image_id": row.image_id,
        "path": row.path,
        "given_label": row.given_label,
        "suggested_label": row.suggested_label,
        "confidence": None if conf is None or math.isnan(conf) else round(float(conf), 4),
        "reason": row.reason,
        "probs": row.probs,
        "decision": _decision_json(decision),
    }


def _page(state: ReviewState, q: it.Query) -> tuple[list[dict[str, Any]], int]:
    _, per_item = state.resolution()
    rows, total = it.select(state.items, q, set(per_item))
    cards = [_card(r, per_item.get(r.item)) for r in rows.itertuples(index=False)]
    return cards, total


def _jpeg(make: Any) -> Response:
    try:
        data = make()
    except OutsideRoot:
        raise HTTPException(400, "listed file lies outside its root") from None
    except (FileNotFoundError, OSError):
        raise HTTPException(404, "image not readable") from None
    return Response(data, media_type="image/jpeg", headers=_CACHE)


def create_app(state: ReviewState) -> FastAPI:
    """The app over a loaded :class:`~fer.review.state.ReviewState`."""
    app = FastAPI(title="fer review", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(FerError)
    async def _fer_error(_: Any, exc: FerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    def page(group: str = "all", cls: str = "", sort: str = "confidence", todo: int = 0,
             page: int = 1) -> str:  # fmt: skip
        q = _query(group, cls, sort, todo, page, state.page_size)
        cards, total = _page(state, q)
        res, _ = state.resolution()
        return _templates().get_template("review.html").render(
            q=q, cards=cards, total=total, pages=max(1, math.ceil(total / q.size)),
            counts=it.group_counts(state.items), groups=it.GROUPS, sorts=it.SORTS,
            classes=CLASSES, keymap=KEYMAP, decisions_file=_shown(state),
            reviewer=state.store.reviewer, vanished=res.vanished, unmatched=res.unmatched,
        )  # fmt: skip

    @app.get("/static/review.js")
    def script() -> Response:
        return Response(_script(), media_type="text/javascript", headers=_CACHE)

    @app.get("/api/items")
    def api_items(group: str = "all", cls: str = "", sort: str = "confidence", todo: int = 0,
                  page: int = 1, size: int = 0) -> dict[str, Any]:  # fmt: skip
        q = _query(group, cls, sort, todo, page, size or state.page_size)
        cards, total = _page(state, q)
        pages = max(1, math.ceil(total / q.size))
        return {"total": total, "page": q.page, "pages": pages, "size": q.size, "items": cards}

    @app.get("/thumb/face/{face_id}")
    def thumb_face(face_id: str) -> Response:
        face = state.faces.get(face_id)
        if face is None:
            raise HTTPException(404, "no such face")
        return _jpeg(lambda: state.thumbs.crop(face.crop_path))

    @app.get("/thumb/image/{image_id}")
    def thumb_image(image_id: str) -> Response:
        return _image(state, image_id, "", int(state.thumbs.size * 1.5))

    @app.get("/image/{image_id}")
    def image(image_id: str, face: str = "") -> Response:
        return _image(state, image_id, face, IMAGE_MAX_SIDE)

    @app.post("/api/decide")
    def decide(body: DecideBody) -> dict:
        item, action, label = body.item, body.action, body.label
        target = state.target(item)
        if target is None:
            raise HTTPException(404, "no such item (or it has no content id)")
        if target.box is None and action not in ("drop", "not_face", "keep", "restore"):
            raise HTTPException(400, f"{action} applies to a face; this card is a whole image")
        if target.box is not None and action not in FACE_ACTIONS:
            raise HTTPException(400, "restore applies to quarantined images, not faces")
        d = state.store.decide(target, action, label)
        return {"item": item, "decision": _decision_json(d)}

    @app.post("/api/undo")
    def undo(body: ItemsBody) -> dict:
        done = state.store.undo()
        return {"undone": done is not None, "decisions": _current(state, body.items)}

    @app.post("/api/decisions")
    def decisions(body: ItemsBody) -> dict:
        return {"decisions": _current(state, body.items)}

    return app


def _shown(state: ReviewState) -> str:
    """The decisions file as the user knows it (project-relative when inside the project)."""
    path = state.store.path
    return str(path.relative_to(state.root)) if path.is_relative_to(state.root) else str(path)


def _current(state: ReviewState, items: list[str]) -> dict[str, dict[str, str] | None]:
    _, per_item = state.resolution()
    return {i: _decision_json(per_item.get(i)) for i in items[:1000]}


def _image(state: ReviewState, image_id: str, face_id: str, max_side: int) -> Response:
    path = state.image_paths.get(image_id)
    if path is None:
        raise HTTPException(404, "no such image")
    face = state.faces.get(face_id) if face_id else None
    if face_id and (face is None or face.image_id != image_id):
        raise HTTPException(404, "no such face in this image")
    boxes = state.image_boxes.get((image_id, face.path if face else path), ())
    highlight = face.box if face else None
    raw = path if face is None else face.path
    return _jpeg(lambda: state.thumbs.image(raw, boxes, highlight, max_side))

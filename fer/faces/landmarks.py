"""68 facial landmarks: the :class:`Landmarker` protocol and face-api's input/output geometry.

face-api's ``FaceLandmark68Net`` (npm ``@vladmandic/face-api``; the torch net is
:mod:`fer.learning.models.landmarks68`) sees one face at a time, prepared exactly like this:

1. the face box is clipped to the image and floored (``Box.clipAtImageBorders``) and that
   window is cut out (``extractFaceTensors``);
2. the window is zero-padded to a square, the padding split evenly (``padToSquare``);
3. it is resized to 112×112 with TensorFlow's legacy bilinear resize (no half-pixel centres,
   no antialiasing: :func:`resize_bilinear_legacy`);
4. the net gives 136 numbers, (x, y) pairs in units of the padded square, which
   ``postProcess`` maps back to the unpadded window and ``FaceLandmarks`` to image pixels
   (:func:`landmarks_from_output`).

Landmark order is iBUG 300-W's 68 points: 0–16 jaw, 17–26 brows, 27–35 nose, 36–41 the eye on
the image's left (the subject's right eye), 42–47 the other eye, 48–67 mouth.

Everything here is numpy; nothing imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

INPUT_SIZE = 112
N_POINTS = 68
Box = tuple[float, float, float, float]  # x, y, w, h in image pixels


class Landmarker(Protocol):
    """Finds 68 landmarks for each face box of an RGB image."""

    def landmarks(self, image_rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """``(N, 68, 2)`` float64 points ``(x, y)`` in image pixels, one set per box."""
        ...

    def landmarks_many(
        self, images: Sequence[tuple[np.ndarray, Sequence[Box]]]
    ) -> list[np.ndarray]:
        """:meth:`landmarks` of several ``(image_rgb, boxes)`` at once, one array per image."""
        ...


def face_window(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """face-api's ``clipAtImageBorders``: the box clipped to the image, then floored.

    Raises:
        ValueError: the box lies outside the image (nothing left to cut).
    """
    x, y, w, h = (float(v) for v in box)
    left, top = max(x, 0.0), max(y, 0.0)
    cut_w = min(x + w - left, width - left)
    cut_h = min(y + h - top, height - top)
    window = tuple(int(np.floor(v)) for v in (left, top, cut_w, cut_h))
    if window[2] <= 0 or window[3] <= 0:
        raise ValueError(f"face box {tuple(box)} lies outside the {width}x{height} image")
    return window  # type: ignore[return-value]


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Zero-pad an ``H×W×C`` float image to a square like face-api's ``padToSquare(…, true)``.

    ``round(diff / 2)`` rows (or columns) go after the image, the rest before it.
    """
    height, width = image.shape[:2]
    if height == width:
        return image
    diff = abs(height - width)
    after = int(np.floor(diff * 0.5 + 0.5))  # JavaScript's Math.round
    before = diff - after
    pad = [(0, 0)] * image.ndim
    pad[1 if height > width else 0] = (before, after)
    return np.pad(image, pad)


def resize_bilinear_legacy(image: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resizeBilinear(image, [size, size], false, false)`` on TensorFlow.js's CPU.

    Source coordinate ``i · in/out`` (no half-pixel centres, no antialiasing); the arithmetic
    in float64 like JavaScript, stored as float32 like the Float32Array result.
    """
    src = np.asarray(image, dtype=np.float32).astype(np.float64)
    rows, r_frac = _legacy_taps(src.shape[0], size)
    cols, c_frac = _legacy_taps(src.shape[1], size)
    (r0, r1), (c0, c1) = rows, cols
    c_frac = c_frac[None, :, None]
    top = src[r0][:, c0] + (src[r0][:, c1] - src[r0][:, c0]) * c_frac
    bottom = src[r1][:, c0] + (src[r1][:, c1] - src[r1][:, c0]) * c_frac
    return (top + (bottom - top) * r_frac[:, None, None]).astype(np.float32)


def _legacy_taps(old: int, new: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Floor/ceil source indices and fractions along one axis (TF.js CPU kernel)."""
    frac_src = (old / new) * np.arange(new, dtype=np.float64)
    floor = np.maximum(0, np.floor(frac_src)).astype(np.intp)
    ceil = np.minimum(old - 1, np.ceil(frac_src)).astype(np.intp)
    return (floor, ceil), frac_src - floor


def landmark_input(image_rgb: np.ndarray, box: Box) -> tuple[np.ndarray, tuple[int, ...]]:
    """The net's 112×112×3 float32 input (0–255, mean not yet removed) and the window cut.

    Raises:
        ValueError: the box lies outside the image.
    """
    height, width = image_rgb.shape[:2]
    x, y, w, h = face_window(box, width, height)
    window = image_rgb[y : y + h, x : x + w, :3].astype(np.float32)
    square = pad_to_square(window)
    if square.shape[0] != INPUT_SIZE:
        square = resize_bilinear_legacy(square, INPUT_SIZE)
    return square, (x, y, w, h)


def landmarks_from_output(output: np.ndarray, window: Sequence[int], box: Box) -> np.ndarray:
    """The net's 136 outputs → ``(68, 2)`` points in image pixels.

    ``postProcess``: ``(out · 112 − pad) / scaled side`` (float32, as TF.js) gives positions
    relative to the window; ``FaceLandmarks`` scales them by the window's size and shifts them
    by the box origin. face-api shifts by the detection box as given (unfloored, even where it
    leaves the image); we shift by its clipped origin, which equals face-api's for every box
    inside the image and keeps the points on the face for boxes that are not.
    """
    _, _, w, h = (int(v) for v in window)
    scale = INPUT_SIZE / max(w, h)
    scaled_w, scaled_h = w * scale, h * scale
    pad_x = abs(scaled_w - scaled_h) / 2 if scaled_w < scaled_h else 0.0
    pad_y = abs(scaled_w - scaled_h) / 2 if scaled_h < scaled_w else 0.0
    out = np.asarray(output, dtype=np.float32).reshape(N_POINTS, 2)
    pad = np.array([pad_x, pad_y], dtype=np.float32)
    side = np.array([scaled_w, scaled_h], dtype=np.float32)
    relative = (out * np.float32(INPUT_SIZE) - pad) / side
    origin = np.array([max(float(box[0]), 0.0), max(float(box[1]), 0.0)])
    return relative.astype(np.float64) * np.array([w, h], dtype=np.float64) + origin

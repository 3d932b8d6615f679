"""Face geometry from 68 landmarks: eye centres, roll, face-api's aligned box, a levelled crop.

Pure functions on ``(68, 2)`` arrays of ``(x, y)`` image pixels (iBUG order, see
:mod:`fer.faces.landmarks`). Two ways to box a face from its landmarks:

- :func:`faceapi_box`: face-api's ``FaceLandmarks.align()`` (its default ``alignMinBbox``):
  the landmarks' bounding box grown by 20 % of its size (10 % each side), not rotated; the box
  face-api's FaceExpressionNet was used with;
- :func:`levelled_crop`: the image turned about the eye midpoint so the eyes are level, then
  the box the turned landmarks span, with a margin, cut and resized like
  :func:`fer.faces.crops.crop_face` (black outside the image, INTER_AREA).
"""

from __future__ import annotations

import math

import numpy as np

LEFT_EYE = slice(36, 42)  # the eye on the image's left (the subject's right eye)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
FACEAPI_PADDING = 0.2


def _points(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks as a (68, 2) array, got shape {points.shape}")
    return points


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(x, y)`` of the eye on the image's left and of the one on its right."""
    points = _points(landmarks)
    return points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)


def reference_points(landmarks: np.ndarray) -> np.ndarray:
    """face-api's ``getRefPointsForAlignment``: the two eye centres and the mouth's, ``(3, 2)``."""
    points = _points(landmarks)
    return np.stack([points[s].mean(axis=0) for s in (LEFT_EYE, RIGHT_EYE, MOUTH)])


def roll_degrees(landmarks: np.ndarray) -> float:
    """Angle of the line from the left to the right eye centre, in degrees.

    Image coordinates (y down): positive when the right eye sits lower, i.e. the face is turned
    clockwise as seen; turning the image by this angle counter-clockwise levels the eyes.
    """
    left, right = eye_centres(landmarks)
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def faceapi_box(
    landmarks: np.ndarray, padding: float = FACEAPI_PADDING
) -> tuple[float, float, float, float]:
    """face-api's ``alignMinBbox(padding)``: ``(x, y, w, h)`` of the landmarks, grown.

    Grows by ``padding`` × the box's width (height) in all, half on each side. Like face-api's
    ``minBbox``, the right and bottom edges are at least 0.
    """
    points = _points(landmarks)
    min_x, min_y = points.min(axis=0)
    max_x, max_y = max(0.0, points[:, 0].max()), max(0.0, points[:, 1].max())
    width, height = max_x - min_x, max_y - min_y
    pad_x, pad_y = width * padding, height * padding
    return (min_x - pad_x / 2, min_y - pad_y / 2, width + pad_x, height + pad_y)


def levelling_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The 2×3 affine map turning the image about the eye midpoint so the eyes are level."""
    import cv2

    left, right = eye_centres(landmarks)
    centre = (float((left[0] + right[0]) / 2), float((left[1] + right[1]) / 2))
    return cv2.getRotationMatrix2D(centre, roll_degrees(landmarks), 1.0)


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine map to ``(N, 2)`` points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def levelled_window(
    landmarks: np.ndarray, *, margin: float, square: bool
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The levelling matrix and the window ``(x, y, w, h)`` to cut in the levelled image.

    The window is the box of the levelled landmarks grown by ``margin`` × its size on every
    side (as :func:`fer.faces.crops.crop_window` grows a detector box); with ``square`` a
    square of the larger side about the same centre.
    """
    matrix = levelling_matrix(landmarks)
    turned = transform(_points(landmarks), matrix)
    (min_x, min_y), (max_x, max_y) = turned.min(axis=0), turned.max(axis=0)
    cx, cy = (min_x + max_x) / 2, (min_y + max_y) / 2
    w, h = (max_x - min_x) * (1 + 2 * margin), (max_y - min_y) * (1 + 2 * margin)
    if square:
        w = h = max(w, h)
    return matrix, (cx - w / 2, cy - h / 2, w, h)


def levelled_crop(
    image_rgb: np.ndarray, landmarks: np.ndarray, *, margin: float, square: bool, size: int
) -> np.ndarray:
    """A ``size``×``size`` uint8 crop of the face with its eyes level.

    One affine warp (rotation + shift) at full resolution into the window, black outside the
    image, then INTER_AREA down to ``size`` (a warp straight to a small size would alias).
    """
    import cv2

    matrix, (x, y, w, h) = levelled_window(landmarks, margin=margin, square=square)
    out_w, out_h = max(1, round(w)), max(1, round(h))
    shift = matrix.copy()
    shift[:, 2] -= (x + (w - out_w) / 2, y + (h - out_h) / 2)
    window = cv2.warpAffine(
        np.ascontiguousarray(image_rgb),
        shift,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.ascontiguousarray(cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA))

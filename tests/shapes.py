"""Separable toy 'faces' for label-issue tests and benchmarks: a disc, a triangle or a bar."""

from __future__ import annotations

import numpy as np


def shape_crops(
    n: int, seed: int, size: int = 64, *, hard: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB crops, class ``i % 3`` (0 disc, 1 triangle, 2 bar) at a random colour and place.

    ``hard`` narrows the contrast, shrinks the shapes and blurs them, so that a fast model is
    not perfect and label-issue detection has real work to do (the benchmark's setting).
    """
    import cv2

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    background, ink, smallest = (90, 100, size // 7) if hard else (60, 120, size // 6)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, cls in enumerate(labels):
        img = rng.integers(0, background, (size, size, 3), dtype=np.uint8)
        color = tuple(int(c) for c in rng.integers(ink, 256, 3))
        cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
        r = int(rng.integers(smallest, size // 4))
        if cls == 0:
            cv2.circle(img, (cx, cy), r, color, -1)
        elif cls == 1:
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(img, [pts], color)
        else:
            cv2.rectangle(img, (cx - r, cy - r // 3), (cx + r, cy + r // 3), color, -1)
        images[i] = cv2.GaussianBlur(img, (3, 3), 0) if hard else img
    return images, labels

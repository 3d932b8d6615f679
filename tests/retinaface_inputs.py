"""The fixed BGR images of the RetinaFace equivalence fixture, rebuilt from installed packages.

Public-domain photos that ship in packages (NASA's ``skimage.data.astronaut()``, matplotlib's
``grace_hopper.jpg``) and a collage of their faces at seven sizes on a grey 480×640 canvas
(the smallest score low, so the fixture covers mid and low scores too).
Shared by ``benchmarks/make_retinaface_reference.py`` (which runs the original runtime on them)
and ``tests/test_retinaface.py`` (which holds the port to its answers).
"""

from __future__ import annotations

import numpy as np

# (photo, top, bottom, left, right) face crops and (crop, scale, top, left) collage placements.
CROPS = {"astronaut": (20, 230, 120, 300), "hopper": (60, 420, 120, 420)}
COLLAGE = (
    ("astronaut", 0.5, 30, 40),
    ("astronaut", 1.0, 200, 150),
    ("hopper", 0.35, 40, 400),
    ("hopper", 0.6, 230, 420),
    ("astronaut", 0.2, 400, 40),
    ("hopper", 0.12, 410, 250),
    ("astronaut", 0.13, 200, 30),
)
COLLAGE_SIZE = (480, 640)


def astronaut_rgb() -> np.ndarray:
    """skimage's astronaut, 512×512 RGB."""
    from skimage import data

    return data.astronaut()


def hopper_rgb() -> np.ndarray:
    """matplotlib's Grace Hopper, 512×600 (H×W) RGB."""
    import matplotlib.cbook as cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def collage_rgb() -> np.ndarray:
    """Four faces (two of each photo, different sizes) pasted on a flat grey canvas."""
    import cv2

    photos = {"astronaut": astronaut_rgb(), "hopper": hopper_rgb()}
    canvas = np.full((*COLLAGE_SIZE, 3), 127, dtype=np.uint8)
    for name, scale, top, left in COLLAGE:
        t, b, lft, r = CROPS[name]
        crop = photos[name][t:b, lft:r]
        size = (round(crop.shape[1] * scale), round(crop.shape[0] * scale))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        canvas[top : top + size[1], left : left + size[0]] = small
    return canvas


def reference_images() -> dict[str, np.ndarray]:
    """``name → BGR uint8 image``, the inputs of the fixture, in its order."""
    rgb = {"astronaut": astronaut_rgb(), "grace_hopper": hopper_rgb(), "collage": collage_rgb()}
    return {name: np.ascontiguousarray(img[:, :, ::-1]) for name, img in rgb.items()}

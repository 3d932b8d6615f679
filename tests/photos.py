"""Real public-domain photos from installed packages, and rotated copies with known angles.

NASA's astronaut portrait (``skimage.data.astronaut()``) and the U.S. Navy portrait of Grace
Hopper (matplotlib's ``grace_hopper.jpg``), loaded from the packages (never copied into the
repo). Shared by the landmark tests and ``benchmarks/make_landmarks_reference.py``, which runs
face-api on exactly these images.
"""

from __future__ import annotations

import hashlib

import numpy as np

# Face centres (x, y) and the res10 SSD box of each photo, in its own pixels.
CENTRES = {"astronaut": (225.0, 118.0), "hopper": (266.0, 226.0)}
SSD_BOXES = {"astronaut": (179, 58, 93, 119), "hopper": (183, 123, 167, 207)}


def photo(name: str) -> np.ndarray:
    """``astronaut`` (512×512) or ``hopper`` (600×512): uint8 RGB."""
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg

    return np.ascontiguousarray(mpimg.imread(cbook.get_sample_data("grace_hopper.jpg")))


def rotated(image: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """``image`` turned ``degrees`` counter-clockwise (as seen) about ``centre``; black border."""
    import cv2

    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    height, width = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )


def noise(height: int = 150, width: int = 200) -> np.ndarray:
    """Seeded uniform RGB noise."""
    return np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)


def landmark_cases() -> list[tuple[str, np.ndarray, list[tuple[int, int, int, int]]]]:
    """``(name, RGB image, face boxes)``: the inputs of the landmark reference fixture.

    Boxes: the SSD box, tall and wide boxes (padding on either axis), one cut by the right
    border, and square boxes about the face on copies turned by known angles.
    """
    astronaut, hopper = photo("astronaut"), photo("hopper")
    cases = [
        (
            "astronaut",
            astronaut,
            [SSD_BOXES["astronaut"], (190, 40, 70, 150), (150, 70, 150, 90), (450, 100, 100, 90)],
        ),
        ("hopper", hopper, [SSD_BOXES["hopper"], (170, 110, 200, 200)]),
    ]
    for name, image, degrees in (
        ("astronaut", astronaut, 15.0),
        ("astronaut", astronaut, -10.0),
        ("hopper", hopper, 25.0),
    ):
        cx, cy = CENTRES[name]
        side = 130 if name == "astronaut" else 210
        box = (int(cx - side / 2), int(cy - side / 2), side, side)
        cases.append((f"{name}_rot{degrees:+.0f}", rotated(image, degrees, (cx, cy)), [box]))
    cases.append(("noise", noise(), [(20, 30, 100, 80)]))
    return cases


def digest(image: np.ndarray) -> str:
    """sha256 of the pixels and shape: the fixture checks it is given the same inputs."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()

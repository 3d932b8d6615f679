"""Crop geometry, colour and the multi-face policy."""

from __future__ import annotations

import numpy as np
import pytest

from fer.config import CropConfig
from fer.faces.crops import crop_face, crop_window, kept_indices, select_faces
from fer.faces.detectors import Face


def _marked(height: int = 100, width: int = 120) -> np.ndarray:
    """Grey image with a white 4x4 marker we can find in crops."""
    return np.full((height, width, 3), 100, np.uint8)


def test_window_is_square_with_margin_around_the_centre() -> None:
    assert crop_window(Face(10, 20, 40, 20, 1.0), margin=0.25, square=True) == (0, 0, 60, 60)
    assert crop_window(Face(10, 20, 40, 20, 1.0), margin=0.0, square=False) == (10, 20, 40, 20)


def test_crop_size_dtype_and_content_centred() -> None:
    image = _marked()
    image[48:52, 58:62] = 255  # marker at the box centre (60, 50)
    crop = crop_face(image, Face(40, 30, 40, 40, 0.9), CropConfig(size=64, margin=0.2))
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[32, 32].tolist() == [255, 255, 255]
    assert crop[5, 5].tolist() == [100, 100, 100]  # whole window inside: no padding


def test_box_at_corner_pads_black_and_keeps_centre_aligned() -> None:
    image = _marked()
    image[0:4, 0:4] = 255  # the face box is the top-left 8x8: its centre is (4, 4)
    image[3:5, 3:5] = 250
    crop = crop_face(image, Face(0, 0, 8, 8, 0.9), CropConfig(size=64, margin=0.5))
    # Window is 16x16 at (-4, -4): the image's (4, 4) lands in the crop centre.
    assert crop.shape == (64, 64, 3)
    assert crop[:14, :14].max() == 0  # outside the image: black padding, not replicated edge
    assert crop[32, 32].tolist() == [250, 250, 250]
    assert crop[-4, -4].tolist() == [100, 100, 100]


def test_box_at_bottom_right_border() -> None:
    image = _marked(50, 60)
    crop = crop_face(image, Face(40, 30, 20, 20, 0.9), CropConfig(size=63, margin=0.2))
    assert crop.shape == (63, 63, 3)
    assert crop[-2:, :].max() == 0 and crop[:, -2:].max() == 0
    assert crop[20, 20].tolist() == [100, 100, 100]


def test_box_fully_outside_gives_black_crop() -> None:
    crop = crop_face(_marked(), Face(500, 500, 10, 10, 0.9), CropConfig(size=64))
    assert crop.shape == (64, 64, 3) and crop.max() == 0


def test_gray_crops_have_three_equal_channels() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    crop = crop_face(image, Face(10, 10, 50, 50, 0.9), CropConfig(size=64, color="gray"))
    assert crop.shape == (64, 64, 3)
    assert np.array_equal(crop[..., 0], crop[..., 1]) and np.array_equal(
        crop[..., 1], crop[..., 2]
    )


def test_grey_source_image_gives_rgb_crop() -> None:
    grey = np.full((40, 40), 77, np.uint8)
    crop = crop_face(grey, Face(5, 5, 30, 30, 0.9), CropConfig(size=64, margin=0.0))
    assert crop.shape == (64, 64, 3) and crop[32, 32].tolist() == [77, 77, 77]


def test_non_square_crop_stretches_box_to_size() -> None:
    image = _marked()
    image[30:40, 10:50] = 255  # box content entirely white
    crop = crop_face(
        image, Face(10, 30, 40, 10, 0.9), CropConfig(size=64, margin=0.0, square=False)
    )
    assert crop.shape == (64, 64, 3) and crop.min() == 255


FACES = [Face(0, 0, 10, 10, 0.99), Face(50, 50, 30, 30, 0.9), Face(100, 0, 20, 20, 0.8)]


@pytest.mark.parametrize(
    ("policy", "expected"), [("all", [0, 1, 2]), ("largest", [1]), ("skip", [])]
)
def test_multi_face_policies(policy: str, expected: list[int]) -> None:
    assert kept_indices(FACES, policy) == expected
    assert select_faces(FACES, policy) == [FACES[i] for i in expected]


@pytest.mark.parametrize("policy", ["all", "largest", "skip"])
def test_single_face_is_kept_by_every_policy(policy: str) -> None:
    assert select_faces(FACES[:1], policy) == FACES[:1]
    assert select_faces([], policy) == []


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="all, largest, skip"):
        select_faces(FACES, "first")

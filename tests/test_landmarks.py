"""68 landmarks and alignment: the torch port vs face-api itself, and the geometry on real photos.

The fixture holds what face-api 1.7.15 on TensorFlow.js computed on public-domain photos
(benchmarks/make_landmarks_reference.py): landmarks for given boxes and for the faces its own
SSD found, its aligned box, and FaceExpressionNet's probabilities on that box.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fer.faces.alignment import (
    eye_centres,
    faceapi_box,
    levelled_crop,
    levelled_window,
    reference_points,
    roll_degrees,
)
from fer.faces.landmarks import (
    face_window,
    landmark_input,
    pad_to_square,
    resize_bilinear_legacy,
)
from fer.learning.models.faceexpr import MEAN_RGB, FaceExpressionNet, load_tfjs_weights
from fer.learning.models.pretrained import weights_dir, weights_path
from tests.photos import CENTRES, digest, landmark_cases, photo, rotated

FIXTURE = Path(__file__).parent / "fixtures" / "landmarks_reference.json"
PIXEL_TOLERANCE = 1e-3  # px; the port agrees to about 3e-5 px


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return json.loads(FIXTURE.read_text())["cases"]


@pytest.fixture(scope="module")
def cases(reference: list[dict]) -> list[tuple[str, np.ndarray, list]]:
    built = landmark_cases()
    for (name, image, _), ref in zip(built, reference, strict=True):
        assert (name, digest(image)) == (ref["name"], ref["sha256"]), "fixture inputs changed"
    return built


def faceapi_faces(reference: list[dict], cases: list) -> Iterator[tuple[np.ndarray, dict]]:
    """(image, face-api's record) for every given box and every face face-api's SSD found."""
    for (_, image, _), ref in zip(cases, reference, strict=True):
        for face in ref["given"] + ref["ssd"]:
            yield image, face


def test_landmarks_match_faceapi(landmarker, reference: list[dict], cases: list) -> None:
    faces = list(faceapi_faces(reference, cases))
    assert len(faces) >= 14
    for image, face in faces:
        ours = landmarker.landmarks(image, [face["box"]])[0]
        assert np.abs(ours - np.asarray(face["landmarks"])).max() < PIXEL_TOLERANCE, face["box"]


def test_faceapi_box_matches_faceapi(landmarker, reference: list[dict], cases: list) -> None:
    for image, face in faceapi_faces(reference, cases):
        ours = faceapi_box(landmarker.landmarks(image, [face["box"]])[0])
        assert np.allclose(ours, face["aligned"], atol=PIXEL_TOLERANCE), face["box"]


def test_whole_faceapi_path_matches(landmarker, reference: list[dict], cases: list) -> None:
    """Box → landmarks → aligned box → FaceExpressionNet: face-api's probabilities."""
    net = FaceExpressionNet(7)
    load_tfjs_weights(net, weights_path("faceexpr", weights_dir()))
    net.eval()
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    for image, face in faceapi_faces(reference, cases):
        aligned = faceapi_box(landmarker.landmarks(image, [face["box"]])[0])
        x, _ = landmark_input(image, aligned)  # the same cut, pad and resize as the landmarks
        with torch.no_grad():
            t = (torch.from_numpy(x).permute(2, 0, 1)[None] - mean) / 255.0
            probs = torch.softmax(net(t), dim=1)[0].numpy()
        assert np.abs(probs - np.asarray(face["expressions"])).max() < 1e-4, face["box"]


def test_input_geometry() -> None:
    assert face_window((-5.5, 3.7, 20, 10), 12, 30) == (0, 3, 12, 10)
    assert face_window((450, 100, 100, 90), 512, 512) == (450, 100, 62, 90)
    with pytest.raises(ValueError, match="outside"):
        face_window((600, 0, 10, 10), 512, 512)
    tall = np.ones((5, 2, 1), np.float32)
    padded = pad_to_square(tall)[..., 0]
    # face-api: round(3 / 2) = 2 columns after, the remaining 1 before
    assert padded.shape == (5, 5) and padded[:, 0].sum() == 0 and padded[:, 3:].sum() == 0
    assert padded[:, 1:3].sum() == 10
    ramp = np.arange(4, dtype=np.float32).reshape(1, 4, 1).repeat(4, axis=0)
    up = resize_bilinear_legacy(ramp, 8)[0, :, 0]
    assert up.tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3]  # source i·4/8, clamped at the edge


def test_landmarker_edges(landmarker) -> None:
    image = photo("astronaut")
    assert landmarker.landmarks(image, []).shape == (0, 68, 2)
    with pytest.raises(ValueError, match="outside"):
        landmarker.landmarks(image, [(600, 600, 50, 50)])


def face_box(name: str) -> tuple[int, int, int, int]:
    cx, cy = CENTRES[name]
    side = 130 if name == "astronaut" else 210
    return (int(cx - side / 2), int(cy - side / 2), side, side)


@pytest.mark.parametrize("name", ["astronaut", "hopper"])
def test_roll_recovered_on_turned_photos(landmarker, name: str) -> None:
    """A photo turned by a known angle: the eye line turns by that angle (within 2°)."""
    image, box = photo(name), face_box(name)
    upright = roll_degrees(landmarker.landmarks(image, [box])[0])
    for degrees in (-5, 5, 10, 15, 20, 25):
        turned = rotated(image, degrees, CENTRES[name])
        roll = roll_degrees(landmarker.landmarks(turned, [box])[0])
        # turning the image counter-clockwise by d raises the right eye: the roll drops by d
        assert abs((upright - roll) - degrees) < 2.0, (degrees, upright, roll)


@pytest.mark.parametrize("degrees", [-5, 12, 25])
def test_levelled_crop_has_level_eyes(landmarker, degrees: int) -> None:
    name = "astronaut"
    turned = rotated(photo(name), degrees, CENTRES[name])
    points = landmarker.landmarks(turned, [face_box(name)])[0]
    crop = levelled_crop(turned, points, margin=0.2, square=True, size=160)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    again = landmarker.landmarks(crop, [(0, 0, 160, 160)])[0]
    assert abs(roll_degrees(again)) < 2.0
    left, right = eye_centres(again)
    assert left[0] < 80 < right[0]  # the face is centred


def synthetic_points(roll: float, centre=(100.0, 80.0), eye_gap=40.0) -> np.ndarray:
    """68 points: eyes ``eye_gap`` apart about ``centre``, the whole set turned by ``roll``°."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(-50, 50, (68, 2))
    for eye, x in ((slice(36, 42), -eye_gap / 2), (slice(42, 48), eye_gap / 2)):
        jitter = rng.normal(0, 2, (6, 2))
        pts[eye] = jitter - jitter.mean(axis=0) + (x, -10.0)
    a = math.radians(roll)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return pts @ rot.T + centre


def test_alignment_geometry_on_known_points() -> None:
    for roll in (-30.0, 0.0, 7.5, 25.0):
        pts = synthetic_points(roll)
        assert roll_degrees(pts) == pytest.approx(roll, abs=1e-9)
        matrix, (x, _, w, h) = levelled_window(pts, margin=0.1, square=True)
        left, right = eye_centres(pts)
        turned = np.stack([left, right]) @ matrix[:, :2].T + matrix[:, 2]
        assert turned[0, 1] == pytest.approx(turned[1, 1])  # level
        assert w == h and x < turned[0, 0] < turned[1, 0] < x + w
    pts = np.zeros((68, 2))
    pts[:, 0], pts[:, 1] = np.linspace(10, 60, 68), np.linspace(20, 120, 68)
    assert faceapi_box(pts) == pytest.approx((5.0, 10.0, 60.0, 120.0))
    assert reference_points(pts).shape == (3, 2)
    with pytest.raises(ValueError, match="68 landmarks"):
        roll_degrees(np.zeros((5, 2)))


def test_landmarks_of_many_images_in_one_batch_match_one_by_one(
    landmarker, reference: list[dict], cases: list
) -> None:
    """Video chunks: every face of every frame through the net at once, same points."""
    items = [(image, [f["box"] for f in ref["given"]]) for (_, image, _), ref in
             zip(cases, reference, strict=True)]  # fmt: skip
    items.insert(1, (items[0][0], []))  # a frame without faces keeps its place
    batched = landmarker.landmarks_many(items)
    assert len(batched) == len(items) and batched[1].shape == (0, 68, 2)
    for (image, boxes), points in zip(items, batched, strict=True):
        alone = landmarker.landmarks(image, boxes)
        assert points.shape == alone.shape == (len(boxes), 68, 2)
        assert np.abs(points - alone).max(initial=0.0) < PIXEL_TOLERANCE
    with pytest.raises(ValueError, match="outside"):
        landmarker.landmarks_many([items[0], (items[0][0], [(600, 600, 50, 50)])])

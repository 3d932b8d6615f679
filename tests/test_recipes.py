"""Face recipes: detect.crop's geometry unchanged, face-api's pipeline, PyPI fer's box."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer.config import CropConfig
from fer.faces.alignment import roll_degrees
from fer.faces.crops import crop_face
from fer.faces.detectors import Face
from fer.faces.recipes import (
    FACEAPI_RECIPE,
    PYPI_FER_RECIPE,
    FaceCutter,
    FaceRecipe,
    as_cutter,
    cut_face,
)
from fer.learning.models.faceexpr import MEAN_RGB, FaceExpressionNet, load_tfjs_weights
from fer.learning.models.pretrained import weights_path
from tests.photos import CENTRES, landmark_cases, photo, rotated

FIXTURE = Path(__file__).parent / "fixtures" / "landmarks_reference.json"


def test_detect_crop_recipe_is_crop_face() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)
    for face in (Face(10, 20, 40, 50, 0.9), Face(-8, 60, 50, 40, 0.8), Face(120, -5, 30, 30, 1)):
        for crop in (CropConfig(), CropConfig(margin=0.0, square=False, color="gray", size=96)):
            recipe = FaceRecipe.from_crop(crop)
            assert np.array_equal(cut_face(image, face, recipe), crop_face(image, face, crop))
            assert np.array_equal(
                as_cutter(crop).cut(image, [face])[0], crop_face(image, face, crop)
            )


def test_recipe_round_trips_and_rejects_bad_values() -> None:
    for recipe in (FaceRecipe(), FACEAPI_RECIPE, PYPI_FER_RECIPE):
        data = json.loads(json.dumps(recipe.to_dict()))
        assert FaceRecipe.from_dict(data) == recipe
    assert FACEAPI_RECIPE.with_input(64, "gray").size == 64
    with pytest.raises(ValueError, match="unknown keys shape"):
        FaceRecipe.from_dict({"shape": "oval"})
    with pytest.raises(ValueError, match="rotate needs box=landmarks"):
        FaceRecipe(rotate=True)
    with pytest.raises(ValueError, match="margin"):
        FaceRecipe(margin=-0.1)
    with pytest.raises(ValueError, match="needs a landmarker"):
        FaceCutter(FACEAPI_RECIPE)
    with pytest.raises(ValueError, match="give the face's 68 landmarks"):
        cut_face(np.zeros((50, 50, 3), np.uint8), Face(5, 5, 20, 20, 1), FACEAPI_RECIPE)


def test_pypi_fer_recipe_geometry() -> None:
    """PyPI fer: the box made square (the larger side), 10 px more a side, grey, bilinear."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    crop = cut_face(image, Face(100, 100, 50, 80, 1.0), PYPI_FER_RECIPE)
    # square of side 80 about (125, 140), then 10 px a side: x 75..175, y 90..190
    grey = cv2.cvtColor(cv2.resize(image[90:190, 75:175], (64, 64)), cv2.COLOR_RGB2GRAY)
    assert np.array_equal(crop[..., 0], grey) and np.array_equal(crop[..., 2], grey)


def test_faceapi_recipe_reproduces_faceapi(landmarker) -> None:
    """detector box → landmarks → aligned box → 112 px crop → FaceExpressionNet = face-api."""
    net = FaceExpressionNet(7)
    load_tfjs_weights(net, weights_path("faceexpr"))
    net.eval()
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    cutter = FaceCutter(FACEAPI_RECIPE, landmarker)
    reference = json.loads(FIXTURE.read_text())["cases"]
    worst = {"face": 0.0, "other": 0.0}
    for (name, image, _), ref in zip(landmark_cases(), reference, strict=True):
        for face in ref["given"]:
            x, y, w, h = face["box"]
            crop = cutter.cut(image, [Face(x, y, w, h, 1.0)])[
                0
            ]  # integer boxes, as detectors give
            assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
            with torch.no_grad():
                t = (torch.from_numpy(crop).permute(2, 0, 1)[None].float() - mean) / 255.0
                probs = torch.softmax(net(t), dim=1)[0].numpy()
            kind = "other" if name == "noise" or face["box"][0] == 450 else "face"
            diff = float(np.abs(probs - np.asarray(face["expressions"])).max())
            worst[kind] = max(worst[kind], diff)
    # uint8 crops vs face-api's float resize (≤ 0.5 grey level): 0.0024 on faces; a box on the
    # helmet's edge and noise are more sensitive (0.043). Float crops agree to 1e-6
    # (test_landmarks.py::test_whole_faceapi_path_matches).
    assert worst["face"] < 0.005 and worst["other"] < 0.06


def test_levelled_recipe_levels_the_eyes(landmarker) -> None:
    turned = rotated(photo("astronaut"), 20, CENTRES["astronaut"])
    recipe = FaceRecipe(box="landmarks", rotate=True, margin=0.15, size=128)
    crop = FaceCutter(recipe, landmarker).cut(turned, [Face(160, 53, 130, 130, 1.0)])[0]
    assert crop.shape == (128, 128, 3)
    assert abs(roll_degrees(landmarker.landmarks(crop, [(0, 0, 128, 128)])[0])) < 2.0


def test_a_model_trained_on_landmark_crops_is_cut_by_landmarks() -> None:
    from torch import nn

    from fer.learning.preprocess import InputSpec
    from fer.prediction.inference import FaceClassifier

    crop = {"box": "landmarks", "rotate": True, "margin": 0.1, "size": 64}
    spec = InputSpec(size=96, color="rgb", mean=(0.5,) * 3, std=(0.5,) * 3)
    clf = FaceClassifier(nn.Identity(), spec, meta={"config": {"crop": crop}})
    recipe = clf.recipe()
    assert (recipe.box, recipe.rotate, recipe.margin, recipe.size) == ("landmarks", True, 0.1, 96)
    old = FaceClassifier(nn.Identity(), spec, meta={"config": {"crop": {"margin": 0.3}}})
    assert old.recipe() == FaceRecipe(margin=0.3, size=96)  # a model.pt from before recipes


def test_cutting_many_images_at_once_gives_the_same_crops(landmarker) -> None:
    """A video chunk's faces are cut with one landmark batch: the crops of one by one."""
    cutter = FaceCutter(FACEAPI_RECIPE, landmarker)
    reference = json.loads(FIXTURE.read_text())["cases"]
    items = [
        (image, [Face(*(int(v) for v in f["box"]), 1.0) for f in ref["given"]])
        for (_, image, _), ref in zip(landmark_cases(), reference, strict=True)
    ]
    items.append((items[0][0], []))
    together = cutter.cut_many(items)
    assert [len(c) for c in together] == [len(faces) for _, faces in items]
    for (image, faces), crops in zip(items, together, strict=True):
        for one, many in zip(cutter.cut(image, faces), crops, strict=True):
            assert one.shape == many.shape == (112, 112, 3)
            # the batched net may move a point by ~1e-5 px: a rounding edge, one grey level
            assert np.abs(one.astype(int) - many.astype(int)).max() <= 1
    plain = as_cutter(CropConfig())
    image, faces = items[0]
    one_by_one, at_once = plain.cut(image, faces), plain.cut_many([(image, faces)])[0]
    assert all(np.array_equal(a, b) for a, b in zip(one_by_one, at_once, strict=True))

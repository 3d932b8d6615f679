"""The MLflow pyfunc and FaceClassifier: real detector, real store, fresh-process load."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from fer import CLASSES
from fer.errors import ModelError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fake_project) -> dict:
    """A tiny baseline trained by the real stage into a sqlite store; a 2-face scene image."""
    from fer.data.synthetic import render_scene
    from fer.stages.train import run

    root = tmp_path_factory.mktemp("serving")
    old = Path.cwd()
    saved_env = os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    try:
        real = {"train": {"epochs": 1}, "ingest": {"raw_dir": "photos"}}  # not the sandbox:
        cfg = fake_project(root, "train", n_faces=12, params=real).config  # may be champion
        summary = run(cfg, model="baseline", resume=False)
    finally:
        os.chdir(old)
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
    scene, boxes = render_scene(np.random.default_rng(1), "happy", 2, 320, 240)
    assert len(boxes) == 2  # the renderer may place fewer faces than asked; this seed fits two
    ok, png = cv2.imencode(".png", scene)
    assert ok
    (root / "scene.png").write_bytes(png.tobytes())
    return {"root": root, "summary": summary, "png": png.tobytes(), "boxes": boxes, "cfg": cfg}


def _iou(a: list[int], b: list[int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def _check_faces(faces: list[dict], truth: list[list[int]]) -> None:
    assert len(faces) == len(truth)
    for face in faces:
        assert set(face) == {"box", "score", "probs", "label"}
        assert list(face["probs"]) == list(CLASSES)
        assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert face["label"] == max(face["probs"], key=face["probs"].get)
        assert max(_iou(face["box"], t) for t in truth) > 0.5


def test_pyfunc_predicts_every_input_kind(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.chdir(trained["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FER_IMAGE_DIR", str(trained["root"]))  # paths are read only inside it
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    model = mlflow.pyfunc.load_model("models:/fer-classifier@champion")
    sig = model.metadata.signature
    assert sig.inputs.input_names() == ["image"] and sig.outputs.input_names() == [
        "faces",
        "error",
    ]
    png = trained["png"]
    frame = pd.DataFrame(
        {"image": [base64.b64encode(png).decode(), str(trained["root"] / "scene.png"), png,
                   "bm90IGFuIGltYWdl", ""]}
    )  # fmt: skip
    out = model.predict(frame)
    assert list(out.columns) == ["faces", "error"] and len(out) == 5
    for i in range(3):
        assert out["error"][i] == ""
        _check_faces(json.loads(out["faces"][i]), trained["boxes"])
    assert out["faces"][0] == out["faces"][1] == out["faces"][2]
    assert out["error"][3].startswith("not_an_image") and out["faces"][3] == "[]"
    assert out["error"][4].startswith("bad_input") and out["faces"][4] == "[]"


def test_pyfunc_loads_in_a_fresh_process(trained: dict, tmp_path: Path) -> None:
    """code_paths ships fer: the model loads from another folder, by its artifact URI."""
    uri = trained["summary"]["model_uri"]
    script = (
        "import base64, json, mlflow, pandas as pd, sys\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "png = open(sys.argv[2], 'rb').read()\n"
        "out = m.predict(pd.DataFrame({'image': [base64.b64encode(png).decode()]}))\n"
        "print(json.dumps({'n': len(json.loads(out['faces'][0])), 'error': out['error'][0]}))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{trained['root'] / 'mlflow.db'}"}
    res = subprocess.run(
        [sys.executable, "-c", script, uri, str(trained["root"] / "scene.png")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    assert json.loads(last or "{}") == {"n": 2, "error": ""}, (
        res.stdout[-2000:],
        res.stderr[-2000:],
    )


def test_face_classifier_and_analyze_image(trained: dict) -> None:
    from fer.config import DetectConfig
    from fer.faces.detectors import create_detector
    from fer.prediction.inference import FaceClassifier, analyze_image

    clf = FaceClassifier.load(trained["root"] / "models/baseline")
    assert clf.arch == "baseline" and clf.classes == CLASSES
    crops = np.zeros((5, 64, 64, 3), np.uint8)
    probs = clf.predict_proba(crops)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.predict_proba(crops[:0]).shape == (0, 3)
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(trained["png"], np.uint8), 1), cv2.COLOR_BGR2RGB)
    faces = analyze_image(rgb, create_detector(DetectConfig()), clf, clf.crop_config())
    _check_faces(faces, trained["boxes"])
    assert analyze_image(np.zeros((120, 160, 3), np.uint8), create_detector(DetectConfig()), clf,
                         clf.crop_config()) == []  # fmt: skip


def test_model_file_errors(tmp_path: Path) -> None:
    from fer.prediction.inference import FaceClassifier

    with pytest.raises(ModelError, match="not found"):
        FaceClassifier.load(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot load"):
        FaceClassifier.load(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(ModelError, match="not a fer model"):
        FaceClassifier.load(tmp_path)

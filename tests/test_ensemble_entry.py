"""An ensemble as a `models:` entry (``arch: ensemble``): assembled by `fer train`, its weights
fitted on the validation split, scored by `fer evaluate`, logged and registered in MLflow, and
served by the pyfunc, each face cut by each member's own recipe."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests import kit
from tests.photos import SSD_BOXES, photo

MEMBERS = ["pretrained:minixception", "pretrained:faceexpr"]
# real photos with known boxes; the mirrored copies are the test faces
PHOTOS = {"astronaut": ("happy", "positive"), "hopper": ("neutral", "neutral")}


def _project(root: Path, entry: dict, *, precropped: bool = False) -> Path:
    """``root/params.yaml`` of a real-photo project: each photo in val, its mirror in test,
    with detect's boxes, crops and splits written as the stages write them (``precropped``:
    each image is its face alone, 48 px grey, as FER2013's)."""
    import cv2

    from fer.config import load_config
    from fer.faces.crops import crop_face, crop_name
    from fer.faces.detectors import Face

    raw = yaml.safe_load(kit.repo_params_copy(root)["params"].read_text())
    raw["ingest"] = {**raw["ingest"], "raw_dir": str(root / "raw")}
    raw["models"] = {**raw["models"], "ens": entry}
    raw["detect"]["mode"] = "precropped" if precropped else "detect"
    raw["tracking"] = {**raw["tracking"], "enabled": True,
                       "uri": f"sqlite:///{root / 'mlflow.db'}",
                       "artifact_location": str(root / "mlruns")}  # fmt: skip
    for key in ("faces", "crops_dir"):
        raw["detect"][key] = str(root / Path(raw["detect"][key]))
    for section, key in (("split", "out"), ("train", "out_dir")):
        raw[section][key] = str(root / Path(raw[section][key]))
    raw["evaluate"] = {
        **raw["evaluate"],
        **{k: str(root / raw["evaluate"][k]) for k in ("metrics_dir", "details_dir", "plots_dir")},
    }
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(params)
    faces, rows = [], []
    for name, (folder, label) in PHOTOS.items():
        rgb = photo(name)
        x, y, w, h = SSD_BOXES[name]
        if precropped:
            grey = cv2.cvtColor(rgb[y : y + h, x : x + w], cv2.COLOR_RGB2GRAY)
            rgb = cv2.cvtColor(cv2.resize(grey, (48, 48)), cv2.COLOR_GRAY2RGB)
            x, y, w, h = 0, 0, 48, 48
        for split, image, box in (
            ("val", rgb, (x, y, w, h)),
            ("test", rgb[:, ::-1], (rgb.shape[1] - x - w, y, w, h)),
        ):
            rel = f"{folder}/{name}-{split}.png"
            (root / "raw" / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "raw" / rel), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            image_id = f"{name}{split}".ljust(16, "0")
            crop = Path(cfg.detect.crops_dir) / crop_name(image_id, 0)
            crop.parent.mkdir(parents=True, exist_ok=True)
            cut = crop_face(np.ascontiguousarray(image), Face(*box, 1.0), cfg.detect.crop)
            cv2.imwrite(str(crop), cv2.cvtColor(cut, cv2.COLOR_RGB2BGR))
            row = {"face_id": f"{image_id}_0", "image_id": image_id, "path": rel}
            faces.append({**row, **dict(zip("xywh", box, strict=True))})
            rows.append({**row, "crop_path": crop.as_posix(), "expression": folder,
                         "given_label": label, "label": label, "split": split,
                         "group": name + split})  # fmt: skip
    pd.DataFrame(faces).to_parquet(cfg.detect.faces)
    pd.DataFrame(rows).to_parquet(cfg.split.out)
    return params


def _members_mix(
    cfg, weights: list[float], split: str, *, flip: bool = False, shift: float = 0.0
) -> np.ndarray:
    """What the ensemble must answer: each member, alone, on its own cut of each face (of the
    whole image when the project is precropped); ``shift``: each read with moved views too."""
    from fer.data.images import load_rgb
    from fer.faces.detectors import Face
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import resolve_model

    table = pd.read_parquet(cfg.split.out).query("split == @split")
    boxes = pd.read_parquet(cfg.detect.faces).set_index("face_id")
    total = 0.0
    for weight, member in zip(weights, MEMBERS, strict=True):
        clf = FaceClassifier.load(resolve_model(cfg, member).path)
        cutter = clf.face_cutter()
        if cfg.detect.mode == "precropped":
            cutter = cutter.whole_image()
        crops = [
            cutter.cut(load_rgb(Path(cfg.ingest.raw_dir) / rel),
                       [Face(*boxes.loc[fid, ["x", "y", "w", "h"]].astype(int), 1.0)])[0]
            for fid, rel in zip(table["face_id"], table["path"], strict=True)
        ]  # fmt: skip
        probs = _read(clf, np.stack(crops), shift)
        if flip:  # the moved copies of the mirror are the mirrors of the moved copies
            probs = (probs + _read(clf, np.stack([c[:, ::-1] for c in crops]), shift)) / 2
        total = total + weight * probs
    return np.asarray(total)


def _read(clf, faces: np.ndarray, shift: float) -> np.ndarray:
    """``clf``'s probabilities for ``faces`` and their copies moved by ``shift``, averaged."""
    from fer.learning.training import predict_proba

    return predict_proba(clf.model, faces, clf.input_spec, shift=shift).astype(np.float64)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The entry with fitted weights, assembled and evaluated once for the tests below."""
    import torch

    from fer.config import load_config
    from fer.stages.evaluate import run as evaluate
    from fer.stages.train import run as train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ensemble-entry")
    params = _project(root, {"arch": "ensemble", "members": MEMBERS, "weight_step": 0.5})
    cfg = load_config(params)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        summary = train(cfg, model="ens")
        metrics = evaluate(cfg, model="ens")
    return {"root": root, "cfg": cfg, "summary": summary, "metrics": metrics}


def test_train_fits_the_weights_on_validation_and_registers_it(fitted: dict) -> None:
    import mlflow
    import torch

    from fer.prediction.ensemble import combine, weight_grid

    cfg, summary = fitted["cfg"], fitted["summary"]
    payload = torch.load(Path(cfg.train.out_dir) / "ens/model.pt", weights_only=True)
    assert payload["arch"] == "ensemble" and payload["names"] == MEMBERS
    assert payload["weights"] == summary["weights"]
    # the fitted weights are the grid's best on the validation faces (accuracy, then log loss)
    y = np.array([0, 2])  # astronaut positive, hopper neutral (CLASSES order)
    probs = [_members_mix(cfg, w, "val") for w in ([1.0, 0.0], [0.0, 1.0])]
    scores = {w: (-(combine(probs, w).argmax(1) == y).mean(),
                  -np.log(combine(probs, w)[np.arange(2), y]).mean())
              for w in weight_grid(2, 0.5)}  # fmt: skip
    assert tuple(payload["weights"]) == min(scores, key=scores.get)
    history = pd.read_csv(Path(cfg.evaluate.plots_dir) / "ens/history.csv")
    assert list(history["epoch"]) == [0]
    assert history["val_acc"][0] == pytest.approx(-scores[tuple(payload["weights"])][0])
    mlflow.set_tracking_uri(cfg.tracking.uri)
    version = mlflow.MlflowClient().get_model_version_by_alias(
        cfg.tracking.registered_model, cfg.tracking.alias
    )
    assert summary["registered_version"] == str(version.version) and summary["champion"]


def test_evaluate_answers_the_weighted_mean_of_its_members(fitted: dict) -> None:
    cfg, metrics = fitted["cfg"], fitted["metrics"]
    weights = fitted["summary"]["weights"]
    expected = _members_mix(cfg, weights, "test")
    shown = pd.read_csv(Path(cfg.evaluate.plots_dir) / "ens/predictions.csv")
    got = shown[["positive", "negative", "neutral"]].to_numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert metrics["n_test"] == 2 and json.loads(
        (Path(cfg.evaluate.metrics_dir) / "ens.json").read_text()
    )["accuracy"] == pytest.approx(float((expected.argmax(1) == [0, 2]).mean()))


def test_the_registered_pyfunc_answers_as_fer_predict(fitted: dict, capsys) -> None:
    """The champion loaded back from the MLflow registry, landmark net and all, answers with
    the probabilities `fer predict --model models/ens` gives."""
    import mlflow

    from fer.cli import main

    cfg, root = fitted["cfg"], fitted["root"]
    image = Path(cfg.ingest.raw_dir) / "happy/astronaut-val.png"
    model_dir = str(Path(cfg.train.out_dir) / "ens")
    args = ["--params", str(root / "params.yaml"), "predict", str(image), "--json",
            "--model", model_dir, "--out", str(root / "pred")]  # fmt: skip
    assert main(args) == 0
    (record,) = json.loads(capsys.readouterr().out)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    model = mlflow.pyfunc.load_model(
        f"models:/{cfg.tracking.registered_model}@{cfg.tracking.alias}"
    )
    frame = pd.DataFrame({"image": [base64.b64encode(image.read_bytes()).decode()]})
    served = json.loads(model.predict(frame)["faces"][0])
    assert [f["box"] for f in served] == [f["box"] for f in record["faces"]]
    for a, b in zip(served, record["faces"], strict=True):
        assert (
            np.abs(np.subtract(list(a["probs"].values()), list(b["probs"].values()))).max() < 1e-5
        )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"arch": "ensemble", "members": ["pretrained:faceexpr"]}, "two or more members"),
        ({"arch": "ensemble", "members": ["alexnet", "pretrained:faceexpr"]}, "pretrained:NAME"),
        ({"arch": "ensemble", "members": MEMBERS, "weights": [1]}, "one non-negative number"),
        ({"arch": "faceexpr", "members": MEMBERS}, "belong to an entry with arch: ensemble"),
    ],
)
def test_a_bad_entry_is_a_one_line_config_error(entry: dict, message: str) -> None:
    from fer.config import config_from_dict
    from fer.errors import ConfigError

    raw = yaml.safe_load((kit.ROOT / "params.yaml").read_text())
    with pytest.raises(ConfigError, match=rf"models\.ens.*{message}"):
        config_from_dict({**raw, "models": {"ens": entry}})


def test_a_precropped_project_reads_each_whole_image_per_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FER2013-style projects: every member reads the whole crop, sized and coloured its way."""
    import torch

    from fer.config import load_config
    from fer.stages.evaluate import _predict_test_split
    from fer.stages.train import run as train

    torch.set_num_threads(1)
    entry = {"arch": "ensemble", "members": MEMBERS, "weights": [1, 3], "flip": True,
             "shift": 0.04}  # fmt: skip
    cfg = load_config(_project(tmp_path, entry, precropped=True))
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})})
    monkeypatch.chdir(tmp_path)
    summary = train(cfg, model="ens")
    assert summary["weights"] == [0.25, 0.75]  # given weights are kept (normalised)
    test = _predict_test_split(cfg, Path(cfg.train.out_dir) / "ens", "ens")
    plain = _members_mix(cfg, [0.25, 0.75], "test")
    flipped = _members_mix(cfg, [0.25, 0.75], "test", flip=True)
    views = _members_mix(cfg, [0.25, 0.75], "test", flip=True, shift=0.04)
    # every member reads the mirror, and the face moved by 4 % of its side (and its mirror)
    assert np.abs(test.probs - views).max() < 1e-4
    assert np.abs(test.probs - plain).max() > 1e-3 and np.abs(test.probs - flipped).max() > 1e-3
    assert test.crops.shape[1:] == (64, 64, 3)  # galleries show detect's crops


def test_no_validation_faces_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An ensemble is scored on the validation split, given weights or not: without it, train
    stops with one line and writes no model."""
    from fer.config import load_config
    from fer.errors import InputError
    from fer.stages.train import run as train

    entry = {"arch": "ensemble", "members": MEMBERS, "weights": [1, 1]}
    cfg = load_config(_project(tmp_path, entry))
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})})
    table = pd.read_parquet(cfg.split.out)
    table["split"] = table["split"].replace({"val": "train"})
    table.to_parquet(cfg.split.out)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"models\.ens: .*validation split, and it has no faces"):
        train(cfg, model="ens")
    assert not (Path(cfg.train.out_dir) / "ens/model.pt").exists()

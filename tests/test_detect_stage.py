"""`fer detect` end to end on a tiny raw tree built in tmp_path (real SSD, real files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from fer.config import Config, config_from_dict
from fer.errors import ConfigError, InputError, ModelError
from fer.faces import detectors
from fer.stages import detect
from tests.kit import MAX_METRIC_KEYS, metric_columns

REPO = Path(__file__).resolve().parents[1]


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _face_patch() -> np.ndarray:
    """The astronaut's head with some margin (the SSD box is about x179 y58 w93 h119)."""
    return _astronaut()[20:230, 120:300].copy()


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _manifest(raw: Path, out: Path, extra_ok: tuple[str, ...] = ()) -> pd.DataFrame:
    """A manifest per docs/data-contracts.md: every file ``ok`` (corrupt ones too, on purpose)."""
    rows = []
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        rel = path.relative_to(raw).as_posix()
        data = path.read_bytes()
        rows.append(
            {
                "id": hashlib.sha256(data).hexdigest(),
                "path": rel,
                "expression": rel.split("/")[0],
                "label": "positive" if rel.startswith("happy") else "neutral",
                "bytes": len(data),
                "width": 0,
                "height": 0,
                "format": "PNG",
                "status": "ok",
                "reason": "",
                "duplicate_of": "",
            }
        )
    rows.append({**rows[0], "path": "happy/rejected.png", "status": "rejected", "id": ""})
    df = pd.DataFrame(rows)
    df.to_parquet(out, index=False)
    return df


def _raw_tree(raw: Path) -> None:
    face = _face_patch()
    _write(raw / "happy" / "astronaut.png", _astronaut())
    _write(raw / "happy" / "astronaut_copy.png", _astronaut())  # exact duplicate content
    canvas = np.full((300, 640, 3), 90, np.uint8)
    canvas[40 : 40 + face.shape[0], 30 : 30 + face.shape[1]] = face
    small = cv2.resize(face, None, fx=0.7, fy=0.7)
    canvas[60 : 60 + small.shape[0], 400 : 400 + small.shape[1]] = small
    _write(raw / "happy" / "two_faces.png", canvas)
    _write(raw / "calm" / "blank.png", np.full((240, 320, 3), 127, np.uint8))
    wide = np.full((200, 2000, 3), 128, np.uint8)
    patch = cv2.resize(face, None, fx=0.85, fy=0.85)
    wide[10 : 10 + patch.shape[0], 1200 : 1200 + patch.shape[1]] = patch
    _write(raw / "calm" / "wide.png", wide)
    (raw / "calm" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)


def _config(tmp: Path, **detect_overrides: Any) -> Config:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    crop = detect_overrides.pop("crop", {})
    raw["sample"] = {**raw["sample"], "out": str(tmp / "raw"), "truth": str(tmp / "truth.csv")}
    raw["ingest"] = {**raw["ingest"], "raw_dir": str(tmp / "raw"), "manifest": str(tmp / "m.pq")}
    raw["detect"] = {
        **raw["detect"],
        "workers": 1,
        "batch_size": 2,
        "faces": str(tmp / "faces.parquet"),
        "images": str(tmp / "detections.parquet"),
        "crops_dir": str(tmp / "crops"),
        "cache_dir": str(tmp / "cache"),
        "metrics": str(tmp / "metrics" / "detect.json"),
        "details": str(tmp / "metrics" / "details" / "detect.json"),
        "crop": {**raw["detect"]["crop"], **crop},
        **detect_overrides,
    }
    raw["tracking"] = {**raw["tracking"], "enabled": False}
    return config_from_dict(raw)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    _raw_tree(tmp_path / "raw")
    _manifest(tmp_path / "raw", tmp_path / "m.pq")
    pd.DataFrame(
        [
            {"path": "happy/astronaut.png", "n_faces": 1, "boxes": "[[180, 58, 92, 118]]"},
            {"path": "calm/blank.png", "n_faces": 0, "boxes": "[]"},
            {
                "path": "happy/two_faces.png",
                "n_faces": 2,
                "boxes": "[[0, 0, 10, 10], [1, 1, 5, 5]]",
            },
        ]
    ).to_csv(tmp_path / "truth.csv", index=False)
    return tmp_path


@pytest.fixture
def count_detect(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real detector calls made in this process (workers=1 runs in-process)."""
    calls = [0]
    real = detectors.ScaledDetector.detect

    def counting(self: Any, image: np.ndarray) -> list[detectors.Face]:
        calls[0] += 1
        return real(self, image)

    monkeypatch.setattr(detectors.ScaledDetector, "detect", counting)
    return calls


def _crop_files(tmp: Path) -> set[str]:
    return {p.relative_to(tmp / "crops").as_posix() for p in (tmp / "crops").rglob("*.png")}


def test_outputs_follow_the_contract(project: Path, count_detect: list[int]) -> None:
    cfg = _config(project)
    out = detect.run(cfg)
    det = pd.read_parquet(project / "detections.parquet")
    faces = pd.read_parquet(project / "faces.parquet")

    assert list(det.columns) == [
        "image_id", "path", "expression", "label", "usage", "n_faces", "n_crops", "status",
        "reason",
    ]  # fmt: skip
    assert list(faces.columns) == [
        "face_id", "image_id", "path", "expression", "label", "usage", "face_index",
        "x", "y", "w", "h", "score", "crop_path", "n_faces",
    ]  # fmt: skip
    det = det.set_index("path")
    assert "happy/rejected.png" not in det.index  # only ok manifest rows
    assert len(det) == 6
    assert det.loc["happy/astronaut.png", "n_faces"] == 1
    assert det.loc["happy/two_faces.png", "n_faces"] == 2
    assert det.loc["calm/blank.png", "n_faces"] == 0
    assert det.loc["calm/blank.png", "status"] == "ok"
    assert det.loc["calm/wide.png", "n_faces"] == 1  # 10:1 strip is tiled, not squashed
    assert det.loc["calm/corrupt.png", "status"] == "error"
    assert det.loc["calm/corrupt.png", "reason"].startswith("decode:")
    # The duplicate shares one detection (5 unique contents detected) and one crop file.
    assert count_detect[0] == 4  # corrupt one fails at decode, before the detector
    a, b = (
        faces[faces.path == p].iloc[0] for p in ("happy/astronaut.png", "happy/astronaut_copy.png")
    )
    assert a.crop_path == b.crop_path and a.face_id != b.face_id
    assert Path(a.crop_path).is_file()
    img = cv2.imread(a.crop_path)
    assert img.shape == (64, 64, 3)
    assert (
        a.crop_path == (project / "crops" / a.image_id[:2] / f"{a.image_id[:16]}_0.png").as_posix()
    )
    hashed = hashlib.sha1(b"happy/astronaut.png").hexdigest()[:12]
    assert a.face_id == f"{hashed}_0"
    two = faces[faces.path == "happy/two_faces.png"].sort_values("face_index")
    assert list(two.face_index) == [0, 1] and two.score.is_monotonic_decreasing
    assert len(_crop_files(project)) == 4  # astronaut (shared by the copy), 2 faces, wide

    metrics = json.loads((project / "metrics" / "details" / "detect.json").read_text())
    assert {k: metrics[k] for k in ("images", "with_face", "no_face", "multi_face", "errors")} == {
        "images": 6, "with_face": 4, "no_face": 1, "multi_face": 1, "errors": 1,
    }  # fmt: skip
    assert metrics["faces"] == 5 and metrics["crops"] == 5 and metrics["cache_hits"] == 0
    loc = metrics["localization"]
    assert loc["scored_images"] == 3
    assert loc["image"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "tp": 2,
        "fp": 0,
        "fn": 0,
        "tn": 1,
    }
    # astronaut matches; the two made-up boxes on two_faces.png do not: tp 1, fp 2, fn 2.
    assert (loc["box"]["tp"], loc["box"]["fp"], loc["box"]["fn"]) == (1, 2, 2)
    headline = json.loads((project / "metrics" / "detect.json").read_text())  # `dvc metrics show`
    assert len(metric_columns(headline)) <= MAX_METRIC_KEYS
    assert (headline["images"], headline["faces"], headline["image_f1"]) == (6, 5, 1.0)
    assert headline["box_f1"] == loc["box"]["f1"]
    assert headline["box_recall"] == loc["box"]["recall"]
    assert out["images"] == 6


def test_cache_hits_invalidation_and_incremental(project: Path, count_detect: list[int]) -> None:
    cfg = _config(project)
    detect.run(cfg)
    first_calls = count_detect[0]
    crops_before = _crop_files(project)
    faces_before = pd.read_parquet(project / "faces.parquet")

    again = detect.run(cfg)  # everything served from the cache
    assert count_detect[0] == first_calls
    assert again["cache_hits"] == 5 and again["detected"] == 0 and again["crops_written"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(project / "faces.parquet"), faces_before)

    # A deleted crop is rewritten without re-detecting.
    victim = next(iter(sorted(crops_before)))
    (project / "crops" / victim).unlink()
    healed = detect.run(cfg)
    assert healed["detected"] == 0 and healed["crops_written"] == 1
    assert _crop_files(project) == crops_before

    # A new image: only it is detected.
    _write(project / "raw" / "happy" / "hopper.png", _grace_hopper())
    _manifest(project / "raw", project / "m.pq")
    added = detect.run(cfg)
    assert added["detected"] == 1 and added["cache_hits"] == 5
    assert count_detect[0] == first_calls + 1

    # A removed image leaves no stale crop behind.
    (project / "raw" / "happy" / "two_faces.png").unlink()
    _manifest(project / "raw", project / "m.pq")
    removed = detect.run(cfg)
    assert removed["crops_removed"] == 2 and removed["detected"] == 0
    faces = pd.read_parquet(project / "faces.parquet")
    assert {p.rsplit("/", 1)[-1] for p in faces.crop_path} == {
        p.rsplit("/", 1)[-1] for p in _crop_files(project)
    }

    # Changing a detector setting recomputes everything (a new settings hash).
    changed = detect.run(_config(project, min_confidence=0.6))
    assert changed["cache_hits"] == 0 and changed["detected"] == 5


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook as cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_crop_policy_skip_keeps_image_row(project: Path) -> None:
    detect.run(_config(project, crop={"policy": "skip"}))
    det = pd.read_parquet(project / "detections.parquet").set_index("path")
    faces = pd.read_parquet(project / "faces.parquet")
    assert det.loc["happy/two_faces.png", "n_faces"] == 2
    assert det.loc["happy/two_faces.png", "n_crops"] == 0
    assert "happy/two_faces.png" not in set(faces.path)
    assert len(_crop_files(project)) == 2  # astronaut (shared) + wide


def test_crop_settings_change_rewrites_crops_without_redetecting(project: Path) -> None:
    detect.run(_config(project))
    (project / "crops" / "notes.txt").write_text("user file, never deleted")
    out = detect.run(_config(project, crop={"size": 96, "color": "gray"}))
    assert out["detected"] == 0 and out["crops_written"] == 4
    crop = cv2.imread(str(next((project / "crops").rglob("*.png"))))
    assert crop.shape == (96, 96, 3)
    assert np.array_equal(crop[..., 0], crop[..., 1])
    assert (project / "crops" / "notes.txt").exists()


def test_wrong_model_path_is_a_model_error(project: Path) -> None:
    with pytest.raises(ModelError, match=r"detect\.model_path"):
        detect.run(_config(project, model_path=str(project / "nowhere")))


def test_missing_manifest_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fer ingest"):
        detect.run(_config(tmp_path))


def test_cli_one_line_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fer.cli import main

    cfg = _config(project, model_path=str(project / "nowhere"))
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    assert main(["detect", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fer detect: error: detect.model_path") and "\n" not in err


def test_process_pool_matches_in_process(project: Path) -> None:
    def tables(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
        detect.run(cfg)
        return (
            pd.read_parquet(project / "detections.parquet"),
            pd.read_parquet(project / "faces.parquet"),
        )

    base = tables(_config(project, cache_dir=str(project / "c1")))
    pool = tables(_config(project, cache_dir=str(project / "c2"), workers=2))
    pd.testing.assert_frame_equal(pool[0], base[0])
    pd.testing.assert_frame_equal(pool[1], base[1])  # Dask: tests/test_dask_executor.py


def test_detector_crash_on_one_image_is_recorded_and_retried(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = detectors.ScaledDetector.detect

    def flaky(self: Any, image: np.ndarray) -> list[detectors.Face]:
        if image.shape[:2] == (300, 640):  # only two_faces.png has this size
            raise RuntimeError("boom")
        return real(self, image)

    monkeypatch.setattr(detectors.ScaledDetector, "detect", flaky)
    out = detect.run(_config(project))
    det = pd.read_parquet(project / "detections.parquet").set_index("path")
    assert det.loc["happy/two_faces.png", "status"] == "error"
    assert det.loc["happy/two_faces.png", "reason"] == "RuntimeError: boom"
    assert det.loc["happy/astronaut.png", "status"] == "ok"
    assert out["errors"] == 2  # the crash and the corrupt file

    monkeypatch.setattr(detectors.ScaledDetector, "detect", real)
    again = detect.run(_config(project))  # crashes are not cached: retried, now fine
    assert again["detected"] == 1 and again["errors"] == 1
    det = pd.read_parquet(project / "detections.parquet").set_index("path")
    assert det.loc["happy/two_faces.png", "n_faces"] == 2


def test_landmark_aligned_crops(project: Path) -> None:
    """``crop.box: landmarks, rotate: true``: crops framed by the 68 landmarks, eyes level,
    cut exactly as `fer predict` cuts them for a model trained on them."""
    from fer.data.images import load_rgb
    from fer.faces.alignment import roll_degrees
    from fer.faces.detectors import Face
    from fer.faces.recipes import FaceCutter, FaceRecipe
    from fer.learning.models.landmarks68 import FaceLandmarker

    detect.run(_config(project))
    cfg = _config(project, crop={"box": "landmarks", "rotate": True, "margin": 0.1})
    out = detect.run(cfg)
    assert out["detected"] == 0 and out["crops_written"] == 4  # same boxes, new crops
    faces = pd.read_parquet(cfg.detect.faces)
    row = faces[faces["path"] == "happy/astronaut.png"].iloc[0]
    crop = cv2.cvtColor(cv2.imread(row["crop_path"]), cv2.COLOR_BGR2RGB)
    image = load_rgb(project / "raw" / row["path"])
    landmarker = FaceLandmarker()
    face = Face(int(row["x"]), int(row["y"]), int(row["w"]), int(row["h"]), 1.0)
    expected = FaceCutter(FaceRecipe.from_crop(cfg.detect.crop), landmarker).cut(image, [face])
    assert np.array_equal(crop, expected[0])
    assert abs(roll_degrees(landmarker.landmarks(crop, [(0, 0, 64, 64)])[0])) < 3.0
    with pytest.raises(ConfigError, match="rotate: true needs box: landmarks"):
        _config(project, crop={"rotate": True})

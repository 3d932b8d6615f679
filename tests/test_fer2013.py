"""FER2013 end to end on generated data shaped like it (48×48 grey crops in Kaggle's folders):
import keeping the Usage, ingest reading it back, detection in pre-cropped mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from fer.config import config_from_dict
from fer.data.importers import FER2013_EMOTIONS, FER2013_USAGE_PATTERN

REPO = Path(__file__).resolve().parents[1]
USAGES = {"train": ["Training"], "test": ["PublicTest", "PrivateTest"]}


def make_fer2013_folders(root: Path, per_emotion: int = 3, seed: int = 0) -> dict[str, int]:
    """``root/<train|test>/<emotion>/<Usage>_<n>.jpg``; returns the count per Usage."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    n = 0
    for split, usages in USAGES.items():
        for emotion in FER2013_EMOTIONS:
            folder = root / split / emotion
            folder.mkdir(parents=True)
            for usage in usages:
                for _ in range(per_emotion):
                    grey = rng.integers(0, 255, (48, 48), dtype=np.uint8)
                    cv2.circle(grey, (24, 24), 14, int(rng.integers(0, 255)), -1)
                    assert cv2.imwrite(str(folder / f"{usage}_{1000 + n}.jpg"), grey)
                    counts[usage.lower()] = counts.get(usage.lower(), 0) + 1
                    n += 1
    return counts


def _config(tmp: Path, **sections: dict):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ingest"].update(raw_dir=str(tmp / "raw"), manifest=str(tmp / "manifest.parquet"),
                         usage_pattern=FER2013_USAGE_PATTERN, workers=1)  # fmt: skip
    raw["detect"].update(
        mode="precropped", workers=1, faces=str(tmp / "faces.parquet"),
        images=str(tmp / "detections.parquet"), crops_dir=str(tmp / "crops"),
        cache_dir=str(tmp / "cache"), metrics=str(tmp / "detect.json"),
        details=str(tmp / "detect_details.json"),
    )  # fmt: skip
    raw["tracking"]["enabled"] = False
    for name, values in sections.items():
        raw[name].update(values)
    return config_from_dict(raw)


@pytest.fixture
def imported(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    from fer.stages import imports

    counts = make_fer2013_folders(tmp_path / "kaggle")
    summary = imports.run(_config(tmp_path), format="fer2013", csv=tmp_path / "kaggle",
                          out=tmp_path / "raw")  # fmt: skip
    assert summary["by_usage"] == counts
    return tmp_path, counts


def test_import_keeps_files_and_usage(imported: tuple[Path, dict[str, int]]) -> None:
    tmp, counts = imported
    files = sorted((tmp / "raw").rglob("*.jpg"))
    assert len(files) == sum(counts.values())
    assert {f.parent.name for f in files} == {
        "angry",
        "disgust",
        "frightened",
        "happy",
        "heartbroken",
        "awe",
        "neutral",
    }  # fmt: skip  (import.fer2013's default folders)
    source = next((tmp / "kaggle/test/fear").glob("PrivateTest_*.jpg"))
    assert (tmp / "raw/frightened" / source.name).read_bytes() == source.read_bytes()


def test_unknown_emotion_folder_is_one_line(tmp_path: Path) -> None:
    from fer.errors import InputError
    from fer.stages import imports

    (tmp_path / "kaggle/train/joy").mkdir(parents=True)
    with pytest.raises(InputError, match="joy: not a FER2013 emotion folder"):
        imports.run(_config(tmp_path), format="fer2013", csv=tmp_path / "kaggle",
                    out=tmp_path / "raw")  # fmt: skip


def test_ingest_reads_usage_and_detect_takes_whole_images(
    imported: tuple[Path, dict[str, int]],
) -> None:
    from fer.stages import detect, ingest

    tmp, counts = imported
    cfg = _config(tmp)
    ingest.run(cfg)
    manifest = pd.read_parquet(tmp / "manifest.parquet")
    assert manifest["usage"].value_counts().to_dict() == counts
    detect.run(cfg)
    faces = pd.read_parquet(tmp / "faces.parquet")
    assert len(faces) == len(manifest)  # one face per image, never two, never none
    assert faces["usage"].value_counts().to_dict() == counts
    # The box is the image shrunk by the crop margin, so the crop is the whole image, resized.
    m = cfg.detect.crop.margin
    side = round(48 / (1 + 2 * m))
    assert set(faces["w"]) == set(faces["h"]) == {side}
    row = faces.iloc[0]
    crop = cv2.imread(row["crop_path"], cv2.IMREAD_GRAYSCALE)
    source = cv2.imread(str(tmp / "raw" / row["path"]), cv2.IMREAD_GRAYSCALE)
    size = cfg.detect.crop.size
    expected = cv2.resize(source, (size, size), interpolation=cv2.INTER_AREA)
    assert crop.shape == (size, size)
    assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 2.0


def test_usage_pattern_must_have_one_group() -> None:
    from fer.errors import ConfigError

    base = yaml.safe_load((REPO / "params.yaml").read_text())
    for bad in ("(unclosed", "no_group_", "(a)(b)"):
        with pytest.raises(ConfigError, match=r"ingest\.usage_pattern"):
            config_from_dict({**base, "ingest": {**base["ingest"], "usage_pattern": bad}})


def test_split_follows_the_given_usage_and_cleans_only_training(
    imported: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    from fer.stages import detect, ingest, split

    tmp, counts = imported
    val = tmp / "validation"
    cfg = _config(tmp, split={"strategy": "given", "out": str(tmp / "splits.parquet")},
                  validate={"out_dir": str(val)},
                  review={"decisions": str(tmp / "decisions.csv")})  # fmt: skip
    ingest.run(cfg)
    detect.run(cfg)
    faces = pd.read_parquet(tmp / "faces.parquet")
    train_face = faces[faces["usage"] == "training"].iloc[0]
    test_face = faces[faces["usage"] == "privatetest"].iloc[0]
    val.mkdir()
    pd.DataFrame(columns=["path", "image_id", "reason"]).to_csv(
        val / "quarantine.csv", index=False
    )
    issue = {"given_label": "positive", "suggested_label": "negative", "score": 0.9,
             "action": "exclude"}  # fmt: skip
    rows = [{"face_id": f["face_id"], "path": f["path"], **issue} for f in (train_face, test_face)]
    pd.DataFrame(rows).to_csv(val / "label_issues.csv", index=False)
    pd.DataFrame(
        [{"group": "g1", "path": p, "image_id": "x", "kind": "near_image"}
         for p in (train_face["path"], test_face["path"])]
    ).to_csv(val / "duplicates.csv", index=False)  # fmt: skip

    result = split.run(cfg)
    out = pd.read_parquet(tmp / "splits.parquet").set_index("face_id")
    assert out["split"].value_counts().to_dict() == {
        "train": counts["training"] - 1, "val": counts["publictest"], "test": counts["privatetest"]
    }  # fmt: skip
    assert train_face["face_id"] not in out.index  # cleaned: a training face
    assert out.loc[test_face["face_id"], "label"] == test_face["label"]  # benchmark untouched
    assert result["groups_across_given_splits"] == 1
    assert "1 duplicate group(s) lie in more than one given split" in capsys.readouterr().out


def test_given_split_without_usage_is_one_line(tmp_path: Path) -> None:
    from fer.errors import InputError
    from fer.stages.split import _given_splits

    with pytest.raises(InputError, match=r"set ingest\.usage_pattern"):
        _given_splits(pd.DataFrame({"group": ["a"], "usage": [""]}), {"training": "train"})


def test_import_use_points_params_at_fer2013(tmp_path: Path) -> None:
    """`fer import fer2013 SRC --out DIR --use`: one command, then `dvc repro`."""
    import shutil

    from fer.cli import main
    from fer.config import load_config

    make_fer2013_folders(tmp_path / "kaggle", per_emotion=1)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    args = ["import", "fer2013", str(tmp_path / "kaggle"), "--out", str(tmp_path / "data/fer"),
            "--use", "--params", str(tmp_path / "params.yaml")]  # fmt: skip
    assert main(args) == 0
    cfg = load_config(tmp_path / "params.yaml")
    assert cfg.ingest.raw_dir == tmp_path / "data/fer"
    assert cfg.ingest.usage_pattern == FER2013_USAGE_PATTERN
    assert (cfg.detect.mode, cfg.split.strategy) == ("precropped", "given")
    assert cfg.evaluate.without == ["awe"] and cfg.truth is None
    assert (cfg.validate_.teacher, cfg.validate_.teacher_weight) == ("faceexpr", 0.5)
    assert "# `fer sample`: the synthetic sandbox" in (tmp_path / "params.yaml").read_text()
    assert cfg.train.models[-1] == "real-ensemble"
    ensemble = cfg.model_spec("real-ensemble")
    assert ensemble.members == ["pretrained:minixception", "pretrained:faceexpr"]
    assert (ensemble.weights, ensemble.weight_step, ensemble.flip) == (None, 0.05, True)
    assert ensemble.shift == cfg.train.tta_shift == 0.04 and cfg.train.tta_flip

"""Split invariants: groups never cross splits, classes are stratified, exclusions hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer import CLASSES
from fer.config import config_from_dict
from fer.data.splitting import apply_label_actions, assign_splits, leakage_groups
from fer.errors import InputError

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def random_faces(n_images: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """Faces of images with 1–4 faces each; one label per image, unbalanced classes."""
    rng = np.random.default_rng(seed)
    paths, ids, labels = [], [], []
    for i in range(n_images):
        label = rng.choice(CLASSES, p=[0.5, 0.3, 0.2])
        for _ in range(int(rng.choice([1, 1, 1, 2, 4]))):
            paths.append(f"{label}/{i:05d}.jpg")
            ids.append(f"id{i:05d}")
            labels.append(str(label))
    return paths, ids, labels


def test_leakage_groups_join_images_ids_and_duplicate_groups() -> None:
    paths = ["a.jpg", "a.jpg", "b.jpg", "b_copy.jpg", "c.jpg", "d.jpg", "e.jpg"]
    ids = ["ia", "ia", "ib", "ib", "ic", "id", ""]
    groups = leakage_groups(paths, ids, {"c.jpg": "dup00001", "d.jpg": "dup00001"})
    assert groups[0] == groups[1]  # two faces of one image
    assert groups[2] == groups[3]  # exact duplicate (same content id), other path
    assert groups[4] == groups[5]  # near duplicates from validation
    assert len(set(groups)) == 4
    assert groups == leakage_groups(paths, ids, {"c.jpg": "dup00001", "d.jpg": "dup00001"})


@pytest.mark.parametrize("seed", [0, 1])
def test_no_group_crosses_splits_and_classes_are_stratified(seed: int) -> None:
    paths, ids, labels = random_faces(900, seed)
    dup = {paths[k]: "dup1" for k in range(0, 60, 7)}  # a chain of near duplicates
    groups = leakage_groups(paths, ids, dup)
    splits = assign_splits(groups, labels, FRACTIONS, seed)
    df = pd.DataFrame({"group": groups, "label": labels, "split": splits})
    assert (df.groupby("group")["split"].nunique() == 1).all()
    for cls in CLASSES:
        share = df[df["label"] == cls]["split"].value_counts(normalize=True)
        for split, target in FRACTIONS.items():
            assert abs(share.get(split, 0.0) - target) <= 0.03, (cls, split, share.to_dict())
    again = assign_splits(groups, labels, FRACTIONS, seed)
    assert again == splits
    assert assign_splits(groups, labels, FRACTIONS, seed + 10) != splits


def test_zero_fraction_split_stays_empty() -> None:
    paths, ids, labels = random_faces(100, 0)
    splits = assign_splits(
        leakage_groups(paths, ids), labels, {"train": 0.8, "val": 0.2, "test": 0}, 0
    )
    assert set(splits) == {"train", "val"}


def test_label_actions() -> None:
    faces = pd.DataFrame({"face_id": ["a", "b", "c", "d"], "label": ["positive"] * 4})
    issues = pd.DataFrame(
        {
            "face_id": ["a", "b", "c"],
            "suggested_label": ["negative", "neutral", "neutral"],
            "action": ["exclude", "relabel", "flag"],
        }
    )
    out, excluded = apply_label_actions(faces, issues)
    assert list(excluded) == [True, False, False, False]
    assert list(out["label"]) == ["positive", "neutral", "positive", "positive"]
    assert list(out["given_label"]) == ["positive"] * 4


def write_inputs(root: Path, n_images: int = 120) -> dict:
    """faces.parquet + validation CSVs + params, as `fer detect` and `fer validate` write them."""
    paths, ids, labels = random_faces(n_images, 3)
    counter: dict[str, int] = {}
    face_ids = []
    for p in paths:
        counter[p] = counter.get(p, -1) + 1
        face_ids.append(f"{p.replace('/', '_')}_{counter[p]}")
    faces = pd.DataFrame(
        {
            "face_id": face_ids,
            "image_id": ids,
            "path": paths,
            "expression": ["happy"] * len(paths),
            "label": labels,
            "crop_path": [f"data/faces/{f}.png" for f in face_ids],
        }
    )
    (root / "data" / "validation").mkdir(parents=True)
    faces.to_parquet(root / "data" / "faces.parquet")
    quarantined = sorted(set(paths))[:3]
    pd.DataFrame(
        {"path": quarantined, "image_id": ["x"] * 3, "reason": ["crop_missing"] * 3}
    ).to_csv(root / "data/validation/quarantine.csv", index=False)
    rest = faces[~faces["path"].isin(quarantined)]
    pd.DataFrame(
        {
            "face_id": list(rest["face_id"][:4]),
            "path": list(rest["path"][:4]),
            "given_label": list(rest["label"][:4]),
            "suggested_label": ["neutral"] * 4,
            "score": [0.9, 0.8, 0.7, 0.6],
            "action": ["exclude", "exclude", "relabel", "flag"],
        }
    ).to_csv(root / "data/validation/label_issues.csv", index=False)
    dup_paths = sorted(set(rest["path"]))[10:13]
    pd.DataFrame(
        {
            "group": ["dup00001"] * 3,
            "path": dup_paths,
            "image_id": ["?"] * 3,
            "kind": ["near_image"] * 3,
        }
    ).to_csv(root / "data/validation/duplicates.csv", index=False)
    return {"faces": faces, "quarantined": quarantined, "rest": rest, "dup_paths": dup_paths}


def test_split_stage_writes_contract_and_honours_validation(tmp_path, monkeypatch, capsys) -> None:
    from fer.stages import split

    monkeypatch.chdir(tmp_path)
    made = write_inputs(tmp_path)
    cfg = config_from_dict({"taxonomy": {c: [c] for c in CLASSES}})
    result = split.run(cfg)
    out = pd.read_parquet(tmp_path / "data" / "splits.parquet")
    assert list(out.columns) == split.OUT_COLUMNS
    assert not out["path"].isin(made["quarantined"]).any()
    excluded = list(made["rest"]["face_id"][:2])
    assert not out["face_id"].isin(excluded).any()
    relabelled = out.set_index("face_id").loc[made["rest"]["face_id"].iloc[2]]
    assert relabelled["label"] == "neutral" and relabelled["given_label"] != "neutral"
    flagged = out.set_index("face_id").loc[made["rest"]["face_id"].iloc[3]]
    assert flagged["label"] == flagged["given_label"]
    assert len(out) == len(made["faces"]) - result["excluded"]["quarantined"] - 2
    assert (out.groupby("group")["split"].nunique() == 1).all()
    assert out[out["path"].isin(made["dup_paths"])]["group"].nunique() == 1
    assert set(out["split"]) == {"train", "val", "test"}
    text = capsys.readouterr().out
    assert "train" in text and "excluded faces: quarantined" in text
    first = out.copy()
    split.run(cfg)
    pd.testing.assert_frame_equal(first, pd.read_parquet(tmp_path / "data" / "splits.parquet"))


def test_split_stage_needs_validation_outputs(tmp_path, monkeypatch) -> None:
    from fer.stages import split

    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    (tmp_path / "data/validation/duplicates.csv").unlink()
    cfg = config_from_dict({"taxonomy": {c: [c] for c in CLASSES}})
    with pytest.raises(InputError, match=r"duplicates\.csv: not found"):
        split.run(cfg)

"""The pure parts of benchmarks/bench_ferplus_table.py: re-decided actions, subset, table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ferplus_table.py"
_spec = importlib.util.spec_from_file_location("bench_ferplus_table", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _issues() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "face_id": ["f1", "f2", "f3"],
            "score": [0.9, 0.5, 0.7],
            "action": ["flag"] * 3,
            "p_positive": [0.95, 0.2, 0.6],
            "p_negative": [0.03, 0.5, 0.3],
            "p_neutral": [0.02, 0.3, 0.1],
        }
    )


def test_relabel_keeps_sure_suggestions_and_excludes_the_rest():
    out, capped = bench.redecide_actions(_issues(), "relabel", 0.9, max_count=10)
    assert list(out["action"]) == ["relabel", "exclude", "exclude"]
    assert capped == 0


def test_cap_keeps_the_highest_scores_acted_on():
    out, capped = bench.redecide_actions(_issues(), "exclude", 0.9, max_count=2)
    assert list(out["action"]) == ["exclude", "flag", "exclude"]
    assert capped == 1


def test_flag_changes_nothing():
    out, _ = bench.redecide_actions(_issues(), "flag", 0.9, max_count=10)
    assert list(out["action"]) == ["flag"] * 3


def test_every_kth_training_face_keeps_other_splits_whole():
    faces = pd.DataFrame(
        {
            "face_id": ["t4", "t1", "p1", "t3", "t2", "v1"],
            "usage": ["Training", "training", "privatetest", "training", "training", "publictest"],
        }
    )
    kept = bench.every_kth_training(faces, 2)
    assert sorted(kept["face_id"]) == ["p1", "t1", "t3", "v1"]


def test_summarize_and_table_read_evaluates_without_figures():
    details = {
        "n_without": 10, "accuracy_without": 0.8, "macro_f1_without": 0.75,
        "ferplus": {"n_without": 9, "accuracy_without": 0.9, "macro_f1_without": 0.85},
    }  # fmt: skip
    s = bench.summarize(details)
    assert (s["acc_fer2013"], s["acc_ferplus"], s["f1_ferplus"]) == (0.8, 0.9, 0.85)
    row = {"variant": "a", "source": "FER2013 labels", "train_faces": 5, **s,
           "train_minutes": 1.25, "peak_rss_mb": 812.4}  # fmt: skip
    md = bench.markdown_table([row, {**row, "variant": "d", "acc_ferplus": None}])
    lines = md.strip().splitlines()
    assert len(lines) == 4
    assert lines[2] == "| a | FER2013 labels | 5 | 0.800 | 0.900 | 0.750 | 0.850 | 1.2 | 812 |"
    assert "| 0.800 | - |" in lines[3]


def test_summarize_needs_the_without_figures():
    with pytest.raises(KeyError):
        bench.summarize({"accuracy": 0.8})


@pytest.mark.parametrize(
    ("model", "scratch", "unfreeze", "pretrained", "frozen"),
    [
        ("minixception", False, False, True, ["stem", "blocks.0", "blocks.1"]),
        ("minixception", False, True, True, []),
        ("minixception", True, False, False, []),
        ("faceexpr", False, False, True, []),
        ("baseline", True, False, False, []),
    ],
)
def test_overrides_give_a_valid_budget(
    tmp_path: Path, model: str, scratch: bool, unfreeze: bool, pretrained: bool, frozen: list[str]
) -> None:
    """Every variant's params load; from scratch means random weights and nothing frozen;
    ``--unfreeze`` keeps the packaged weights and freezes nothing."""
    import shutil

    from fer.config import load_config
    from fer.params_edit import apply_overrides

    shutil.copyfile(_PATH.parents[1] / "params.yaml", tmp_path / "params.yaml")
    edits = bench.overrides(
        "e", 3, 0.001, 64, tmp_path / "cache", model, scratch, seed=7, unfreeze=unfreeze
    )
    apply_overrides(tmp_path / "params.yaml", edits)
    cfg = load_config(tmp_path / "params.yaml")
    spec = cfg.model_spec(model)
    assert cfg.train.models == [model] and cfg.train.labels == "ferplus_soft"
    assert cfg.train.seed == 7
    assert (spec.pretrained, spec.freeze, spec.epochs, spec.lr) == (pretrained, frozen, 3, 0.001)


def test_mix_members_are_each_runs_model_of_the_variant(tmp_path: Path) -> None:
    """--mix reads each earlier run's own model of the variant, and names a missing one."""
    import json

    runs = []
    for model in ("minixception", "faceexpr"):
        run = tmp_path / model
        (run / "variant_d" / "models" / model).mkdir(parents=True)
        (run / "variant_d" / "models" / model / "model.pt").write_bytes(b"x")
        (run / "results.json").write_text(json.dumps({"budget": {"model": model}}))
        runs.append(run)
    assert bench.mix_members(runs, "d") == [
        str((tmp_path / m / "variant_d" / "models" / m).resolve())
        for m in ("minixception", "faceexpr")
    ]
    with pytest.raises(SystemExit, match="no trained model for variant e"):
        bench.mix_members(runs, "e")

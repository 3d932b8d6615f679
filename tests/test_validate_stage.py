"""`fer validate` end to end on a tiny generated project: outputs, gate, quarantine, restore."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from fer.cli import main
from tests.kit import MAX_METRIC_KEYS, TAXONOMY, FakeProject, metric_columns

FOLDS_2 = {"validate": {"folds": 2}}


@pytest.fixture(scope="module")
def passed(tmp_path_factory, fake_project) -> tuple[Path, FakeProject, int, str]:
    """One full run on a clean project (module-scoped: the K-fold pass costs seconds)."""
    root = tmp_path_factory.mktemp("project")
    made = fake_project(root)
    import os

    cwd = Path.cwd()
    os.chdir(root)
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["validate"])
    finally:
        os.chdir(cwd)
    return root, made, code, buf.getvalue()


def test_gate_passes_and_every_output_is_written(passed) -> None:
    root, _, code, out = passed
    assert code == 0, out
    val = root / "data/validation"
    for name in (
        "report.html",
        "summary.json",
        "quarantine.csv",
        "label_issues.csv",
        "duplicates.csv",
    ):
        assert (val / name).is_file(), name
    assert "gate passed" in out
    metrics = json.loads((root / "metrics/details/validate.json").read_text())
    assert metrics["gate_passed"] == 1 and metrics["failed_blocking"] == 0
    summary = json.loads((val / "summary.json").read_text())
    assert all(
        {"name", "level", "success", "observed", "bound"} <= set(e)
        for e in summary["expectations"]
    )
    assert not list(val.glob(".*tmp*"))  # atomic writes leave no temp files


def test_quarantine_lists_every_unusable_image_with_reason(passed) -> None:
    root = passed[0]
    q = pd.read_csv(root / "data/validation/quarantine.csv", keep_default_na=False)
    reasons = dict(zip(q["path"], q["reason"], strict=True))
    assert reasons == {
        **{f"calm/empty{k}.jpg": "no_face" for k in range(6)},
        "angry/crash.jpg": "detect_error",
        "happy/broken.jpg": "rejected:truncated",
    }


def test_duplicates_and_label_issues(passed) -> None:
    root, made, _, _ = passed
    dups = pd.read_csv(root / "data/validation/duplicates.csv", keep_default_na=False)
    original = made.faces[0]["path"]
    group = dups[dups["path"] == original]["group"].iloc[0]
    members = dict(
        zip(
            dups[dups["group"] == group]["path"], dups[dups["group"] == group]["kind"], strict=True
        )
    )
    assert members == {
        original: "exact",
        "happy/copy.jpg": "exact",
        "happy/near.jpg": "near_image",
    }

    issues = pd.read_csv(root / "data/validation/label_issues.csv", keep_default_na=False)
    assert list(issues.columns) == [
        "face_id",
        "path",
        "given_label",
        "suggested_label",
        "score",
        "action",
        "p_positive",
        "p_negative",
        "p_neutral",
    ]
    probs = issues[["p_positive", "p_negative", "p_neutral"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=2e-3)
    assert (issues["action"] == "exclude").all()
    metrics = json.loads((root / "metrics/details/validate.json").read_text())
    auditor = metrics["auditor"]
    assert auditor["trusted"] is True and auditor["accuracy"] > auditor["majority"]
    assert 0.0 <= auditor["ece"] <= 1.0 and auditor["flagged"] == len(issues)
    assert issues["score"].is_monotonic_decreasing
    found = set(issues["path"])
    flipped = made.mislabeled_paths
    assert len(found & flipped) >= 0.8 * len(flipped), (found, flipped)
    assert len(found & flipped) >= 0.8 * len(found)
    metrics = json.loads((root / "metrics/details/validate.json").read_text())
    assert metrics["mislabel"]["recall"] >= 0.8 and metrics["mislabel"]["precision"] >= 0.8
    assert metrics["no_face"]["recall"] == 1.0
    assert metrics["no_face_images_reaching_training"] == 0
    headline = json.loads((root / "metrics/validate.json").read_text())  # `dvc metrics show`
    assert len(metric_columns(headline)) <= MAX_METRIC_KEYS
    assert headline["auditor_accuracy"] == metrics["auditor"]["accuracy"]
    assert headline["mislabel_f1"] == metrics["mislabel"]["f1"]
    assert headline["no_face_f1"] == metrics["no_face"]["f1"]
    assert {k: headline[k] for k in ("gate_passed", "quarantined", "label_issues")} == {
        k: metrics[k] for k in ("gate_passed", "quarantined", "label_issues")
    }


def test_blocking_failure_stops_with_summary_and_keeps_outputs(
    tmp_path, monkeypatch, capsys, fake_project
):
    fake_project(tmp_path, n_faces=30, params=FOLDS_2)
    faces = pd.read_parquet(tmp_path / "data/faces.parquet")
    (tmp_path / faces["crop_path"].iloc[4]).unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "GATE FAILED" in err
    assert "faces.crop_exists" in err and "1 of 32 rows fail" in err
    assert "fer validate: error: 1 blocking expectation(s) failed: faces.crop_exists" in err
    q = pd.read_csv(tmp_path / "data/validation/quarantine.csv", keep_default_na=False)
    assert q.set_index("path").loc[faces["path"].iloc[4], "reason"] == "crop_missing"
    assert (tmp_path / "data/validation/report.html").is_file()
    metrics = json.loads((tmp_path / "metrics/details/validate.json").read_text())
    assert metrics["gate_passed"] == 0 and metrics["failed_blocking"] == 1
    assert (tmp_path / "data/sandbox" / faces["path"].iloc[4]).is_file()  # nothing deleted


def test_warning_level_and_mlflow_run(tmp_path, monkeypatch, capsys, fake_project):
    """A missing crop at warning level is quarantined, not fatal; the run is logged to a real
    sqlite store. (Taking an image back out of quarantine is a review decision, applied by
    split: tests/test_decisions.py.)"""
    fake_project(tmp_path, n_faces=30, params={**FOLDS_2, "tracking": {"enabled": True}})
    faces = pd.read_parquet(tmp_path / "data/faces.parquet")
    (tmp_path / faces["crop_path"].iloc[4]).unlink()
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["validate"]["levels"] = {"crops_exist": "warning"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    q = pd.read_csv(tmp_path / "data/validation/quarantine.csv", keep_default_na=False)
    assert {"calm/empty0.jpg", "calm/empty1.jpg"} <= set(q["path"])
    assert faces["path"].iloc[4] in set(q["path"])  # missing crop
    assert "warning   faces.crop_exists" in capsys.readouterr().out

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    run = runs[runs["tags.stage"] == "validate"].iloc[0]
    assert run["metrics.gate_passed"] == 1 and run["metrics.quarantined"] == len(q)
    assert run["params.folds"] == "2"


def test_weak_auditor_only_flags_and_the_cap_limits_exclusions(
    tmp_path, monkeypatch, capsys, fake_project
):
    """On real data a weak auditor must not throw data away; nor may a strong one drop more
    than max_exclude_fraction. Both say so in the summary and in metrics."""
    made = fake_project(tmp_path, n_faces=60, params=FOLDS_2)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)

    params["validate"].update(min_auditor_accuracy=0.999)  # no auditor reaches this
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    issues = pd.read_csv(tmp_path / "data/validation/label_issues.csv", keep_default_na=False)
    auditor = json.loads((tmp_path / "metrics/details/validate.json").read_text())["auditor"]
    assert len(issues) and set(issues["action"]) == {"flag"}
    assert auditor["trusted"] is False and auditor["action"] == "flag"
    assert "only flagged, not excluded: auditor accuracy" in out

    params["validate"].update(min_auditor_accuracy=0.0, max_exclude_fraction=0.02)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    issues = pd.read_csv(tmp_path / "data/validation/label_issues.csv", keep_default_na=False)
    auditor = json.loads((tmp_path / "metrics/details/validate.json").read_text())["auditor"]
    limit = int(0.02 * auditor["n"])
    assert (issues["action"] == "exclude").sum() == auditor["acted_on"] == limit
    assert auditor["capped"] == len(issues) - limit > 0
    assert "max_exclude_fraction 0.02 reached" in out
    kept = issues[issues["action"] == "exclude"]["score"].min()
    assert (issues[issues["action"] == "flag"]["score"] <= kept).all()  # the most suspect go
    assert len(made.mislabeled_paths) > limit


def test_missing_input_is_a_one_line_error(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"taxonomy": TAXONOMY}))
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    assert "data/manifest.parquet: not found (run `fer ingest` first)" in capsys.readouterr().err


@pytest.mark.slow
def test_gate_stops_dvc_repro_before_split(tmp_path, fake_project) -> None:
    """A blocking failure makes `dvc repro` fail at validate; split never runs."""
    import os
    import subprocess
    import sys

    fake_project(tmp_path, n_faces=30, params=FOLDS_2)
    faces = pd.read_parquet(tmp_path / "data/faces.parquet")
    (tmp_path / faces["crop_path"].iloc[0]).unlink()
    stages = {
        "stages": {
            "validate": {
                "cmd": "fer validate",
                "deps": ["data/faces.parquet", "data/manifest.parquet"],
                "outs": ["data/validation"],
                "metrics": [{"metrics/validate.json": {"cache": False}}],
            },
            "split": {
                "cmd": "fer split",
                "deps": ["data/validation", "data/faces.parquet"],
                "outs": ["data/splits.parquet"],
            },
        }
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(stages))
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env["DVC_NO_ANALYTICS"] = "1"
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    proc = subprocess.run(
        ["dvc", "repro"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "GATE FAILED" in output and "faces.crop_exists" in output
    assert not (tmp_path / "data/splits.parquet").exists()
    assert (tmp_path / "data/validation/report.html").is_file()  # the report explains why


def test_pretrained_teacher_alone_replaces_the_k_fold_model(
    tmp_path, monkeypatch, fake_project
) -> None:
    """validate.teacher at weight 1: the audit probabilities are the packaged real-face
    model's zero-shot ones on the crops (no K-fold model is trained)."""
    import fer.validation.cv_model as cv_model
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import pretrained_model

    fake_project(tmp_path, n_faces=30, params=FOLDS_2)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["validate"].update(teacher="minixception", teacher_weight=1.0, label_action="flag")
    # The teacher's 7 emotions map into this project's own three folders.
    params["import"] = {"fer2013": {"angry": "angry", "disgust": "angry", "fear": "angry",
                                    "sad": "angry", "surprise": "angry", "happy": "happy",
                                    "neutral": "calm"}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)

    def no_k_fold(*args, **kwargs):
        raise AssertionError("the K-fold model must not be trained at teacher_weight 1")

    monkeypatch.setattr(cv_model, "out_of_fold_probs", no_k_fold)
    assert main(["validate"]) == 0
    issues = pd.read_csv(tmp_path / "data/validation/label_issues.csv", keep_default_na=False)
    assert len(issues) > 0
    from fer.config import load_config

    cfg = load_config(tmp_path / "params.yaml")
    clf = FaceClassifier.load(pretrained_model(cfg, "minixception"))
    faces = pd.read_parquet(tmp_path / "data/faces.parquet").set_index("face_id")
    row = issues.iloc[0]
    crop = cv2.cvtColor(cv2.imread(str(tmp_path / faces.loc[row["face_id"], "crop_path"])),
                        cv2.COLOR_BGR2RGB)  # fmt: skip
    expected = clf.predict_proba(crop[None])[0]
    got = row[["p_positive", "p_negative", "p_neutral"]].to_numpy(dtype=float)
    assert np.allclose(got, expected, atol=2e-4)

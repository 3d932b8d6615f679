"""`fer evaluate [--model NAME]`: the test split → metrics/<model>.json, plots/<model>/, MLflow.

Metrics and figures are logged into the SAME MLflow run as the training (its id is in
``models/<model>/run.json``). On the sandbox, its truth (``sample.truth``) also
gives the accuracy against the TRUE labels, since the test split's labels are noisy too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer import CLASSES
from fer.config import Config
from fer.errors import ConfigError, InputError
from fer.io import write_csv, write_json


def true_labels(truth_path: Path | None, paths: pd.Series) -> pd.Series:
    """True class per test row from ``sample_truth.csv`` (joined on the raw-relative path).

    Rows the truth file does not list get NaN; no file (real data) gives all-NaN.
    """
    if truth_path is None or not Path(truth_path).is_file():
        return pd.Series(np.nan, index=paths.index, dtype=object)
    truth = pd.read_csv(truth_path, usecols=["path", "true_class"])
    lookup = dict(zip(truth["path"].astype(str), truth["true_class"].astype(str), strict=True))
    return paths.astype(str).map(lookup)


def run(cfg: Config, *, model: str | None = None) -> dict[str, Any]:
    """Evaluate one trained model on the test split; returns the metrics written."""
    import torch

    from fer import tracking
    from fer.learning.datasets import cpu_threads
    from fer.learning.evaluation import (
        classification_report,
        confusion_figure,
        curves_figure,
        mistakes_figure,
        save_figure,
        worst_mistakes,
    )
    from fer.learning.models import available
    from fer.learning.training import resolve_device
    from fer.prediction.inference import FaceClassifier
    from fer.stages.train import read_splits, subset

    name = (model or cfg.train.model).strip().lower()
    if name not in available():
        raise ConfigError(f"--model: unknown model {name!r} (available: {', '.join(available())})")
    started = time.perf_counter()
    model_dir = Path(cfg.train.out_dir) / name
    if not (model_dir / "model.pt").is_file():
        raise InputError(f"{model_dir / 'model.pt'}: not found (run `fer train --model {name}`)")
    torch.set_num_threads(cpu_threads(cfg.train.threads))
    clf = FaceClassifier.load(model_dir, device=resolve_device(cfg.train.device), batch_size=256)

    data = read_splits(cfg)
    rows, test_x, test_y = subset(data, "test")
    if len(rows) == 0:
        raise InputError(f"{cfg.split.out}: no usable test rows (split == 'test')")
    probs = clf.predict_proba(test_x)
    pred = probs.argmax(axis=1)
    report = classification_report(test_y, pred, CLASSES)
    table = data.table.iloc[rows].reset_index(drop=True)

    truth = true_labels(cfg.truth, table["path"])
    known = truth.notna().to_numpy()
    metrics: dict[str, Any] = {
        "model": name,
        "n_test": report["n"],
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class": report["per_class"],
        "skipped": int((data.skipped["split"] == "test").sum()),
    }
    if known.any():
        true_idx = np.array([CLASSES.index(c) for c in truth[known]])
        metrics["true_label_accuracy"] = float((pred[known] == true_idx).mean())
        metrics["true_label_macro_f1"] = classification_report(true_idx, pred[known])["macro_f1"]
        metrics["true_label_n"] = int(known.sum())
        # How noisy the test labels themselves are: the ceiling "accuracy" runs into.
        metrics["test_label_agreement"] = float((test_y[known] == true_idx).mean())

    plots = Path(cfg.evaluate.plots_dir) / name
    label_names = np.array(CLASSES)
    write_csv(
        pd.DataFrame({"actual": label_names[test_y], "predicted": label_names[pred]}),
        plots / "confusion.csv",
    )
    predictions = pd.DataFrame(
        {
            "face_id": table["face_id"].astype(str),
            "label": label_names[test_y],
            "predicted": label_names[pred],
            **{c: np.round(probs[:, i], 6) for i, c in enumerate(CLASSES)},
        }
    )
    if known.any():
        predictions["true_label"] = truth.fillna("").to_numpy()
    write_csv(predictions, plots / "predictions.csv")
    cm = np.array(report["confusion"])
    save_figure(confusion_figure(cm, CLASSES, f"{name}: test split"), plots / "confusion.png")
    worst = worst_mistakes(test_y, probs, cfg.evaluate.gallery_size)
    save_figure(
        mistakes_figure(
            test_x[worst],
            list(label_names[test_y[worst]]),
            list(label_names[pred[worst]]),
            [float(probs[i, pred[i]]) for i in worst],
        ),
        plots / "mistakes.png",
    )
    history_path = plots / "history.csv"  # written by `fer train`
    if history_path.is_file():
        history = pd.read_csv(history_path)
        if len(history):
            save_figure(curves_figure(history), plots / "curves.png")
    metrics_path = Path(cfg.evaluate.metrics_dir) / f"{name}.json"
    write_json(metrics_path, metrics)

    run_id = _training_run_id(model_dir)
    if cfg.tracking.enabled and run_id and not tracking.run_exists(cfg.tracking, run_id):
        print(f"evaluate: warning: training run {run_id} not in the tracking store; new run")
        run_id = None
    if cfg.tracking.enabled:
        with tracking.open_run(
            cfg.tracking, run_id=run_id, run_name=f"{name}-evaluate",
            tags={"stage": "evaluate", "model": name},
        ) as mrun:  # fmt: skip
            if mrun is not None:
                flat = {f"test_{k}": v for k, v in metrics.items() if k not in ("model",)}
                mrun.log_metrics(flat)
                mrun.log_artifact(metrics_path, artifact_path="evaluation")
                mrun.log_artifact(plots, artifact_path="evaluation/plots")
                report_text = json.dumps(report, indent=2)
                mrun.log_text(report_text, "evaluation/classification_report.json")
    line = (
        f"evaluate: {name}: test accuracy {metrics['accuracy']:.3f}, "
        f"macro-F1 {metrics['macro_f1']:.3f}"
    )
    if "true_label_accuracy" in metrics:
        line += f", accuracy vs true labels {metrics['true_label_accuracy']:.3f}"
    print(f"{line} ({report['n']} faces, {time.perf_counter() - started:.0f} s) → {metrics_path}")
    return metrics


def _training_run_id(model_dir: Path) -> str | None:
    """The training run's id from run.json (None: no run.json or tracking was off)."""
    path = model_dir / "run.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("mlflow_run_id")
    except (OSError, json.JSONDecodeError):
        return None

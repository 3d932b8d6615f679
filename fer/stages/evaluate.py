"""`fer evaluate [--model NAME]`: the test split → metrics/<model>.json, plots/<model>/, MLflow.

``metrics/<model>.json`` holds the headline numbers `dvc metrics show` lists (accuracy,
macro-F1, accuracy against the true labels, training time); ``metrics/details/<model>.json``
holds everything (per class, per expression, confusion counts). Metrics and figures are logged
into the SAME MLflow run as the training (its id is in ``models/<model>/run.json``). On the
sandbox, its truth (``sample.truth``) also gives the accuracy against the TRUE labels, since
the test split's labels are noisy too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer import CLASSES
from fer.config import Config
from fer.errors import InputError
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


@dataclass
class TestPredictions:
    """The usable test rows, their crops and labels, and the model's probabilities."""

    table: pd.DataFrame
    crops: np.ndarray
    y: np.ndarray
    probs: np.ndarray
    skipped: int

    @property
    def pred(self) -> np.ndarray:
        """Predicted class index per row."""
        return self.probs.argmax(axis=1)


def run(cfg: Config, *, model: str | None = None) -> dict[str, Any]:
    """Evaluate one trained model on the test split; returns every figure (the details)."""
    from fer.learning.evaluation import classification_report

    started = time.perf_counter()
    name = cfg.model_name(model)
    model_dir = Path(cfg.train.out_dir) / name
    test = _predict_test_split(cfg, model_dir, name)
    report = classification_report(test.y, test.pred, CLASSES)
    truth = true_labels(cfg.truth, test.table["path"])
    metrics = {
        "model": name,
        **score_predictions(report, test, truth),
        **by_expression(test, cfg.evaluate.without),
        "classes": list(CLASSES),
        "confusion": report["confusion"],
    }
    ferplus = ferplus_scores(cfg, test)
    if ferplus:
        metrics["ferplus"] = ferplus
    plots = Path(cfg.evaluate.plots_dir) / name
    _write_plots(plots, name, test, truth, report, cfg.evaluate.gallery_size)
    metrics_path = Path(cfg.evaluate.metrics_dir) / f"{name}.json"
    details_path = Path(cfg.evaluate.details_dir) / f"{name}.json"
    write_json(details_path, metrics)
    write_json(metrics_path, headline(metrics))
    if cfg.tracking.enabled:
        _log(cfg, model_dir, name, metrics, report, details_path, plots)
    _print_done(name, metrics, report, time.perf_counter() - started, metrics_path)
    return metrics


HEADLINE = ("accuracy", "macro_f1", "true_label_accuracy", "n_test")
"""The keys of ``metrics/<model>.json``, when present (true labels: the sandbox only). No wall
time: outputs are the same bytes on every run (times: MLflow and ``fer report``)."""


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """``metrics/<model>.json``: the few numbers `dvc metrics show` lists per model."""
    return {k: details[k] for k in HEADLINE if k in details}


def _predict_test_split(cfg: Config, model_dir: Path, name: str) -> TestPredictions:
    """Load the trained model and classify the usable test rows."""
    import torch

    from fer.learning.datasets import cpu_threads
    from fer.learning.splits import read_splits, subset
    from fer.learning.training import resolve_device
    from fer.prediction.ensemble import load_model
    from fer.prediction.recut import model_crops

    if not (model_dir / "model.pt").is_file():
        raise InputError(f"{model_dir / 'model.pt'}: not found (run `fer train --model {name}`)")
    torch.set_num_threads(cpu_threads(cfg.train.threads))
    clf = load_model(model_dir, device=resolve_device(cfg.train.device), batch_size=256)
    data = read_splits(cfg)
    rows, crops, y = subset(data, "test")
    if len(rows) == 0:
        raise InputError(f"{cfg.split.out}: no usable test rows (split == 'test')")
    table = data.table.iloc[rows].reset_index(drop=True)
    skipped = int((data.skipped["split"] == "test").sum())
    cut = model_crops(cfg, clf, table, crops)
    shown = cut if isinstance(cut, np.ndarray) else crops  # an ensemble's galleries: detect's
    return TestPredictions(table, shown, y, clf.predict_proba(cut), skipped)


def score_predictions(
    report: dict[str, Any], test: TestPredictions, truth: pd.Series
) -> dict[str, Any]:
    """Accuracy and macro-F1 on the test labels; on the sandbox also against the true labels."""
    from fer.learning.evaluation import classification_report

    metrics: dict[str, Any] = {
        "n_test": report["n"],
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class": report["per_class"],
        "skipped": test.skipped,
    }
    known = truth.notna().to_numpy()
    if known.any():
        pred = test.pred[known]
        true_idx = np.array([CLASSES.index(c) for c in truth[known]])
        metrics["true_label_accuracy"] = float((pred == true_idx).mean())
        metrics["true_label_macro_f1"] = classification_report(true_idx, pred)["macro_f1"]
        metrics["true_label_n"] = int(known.sum())
        # How noisy the test labels themselves are: the ceiling "accuracy" runs into.
        metrics["test_label_agreement"] = float((test.y[known] == true_idx).mean())
    return metrics


def by_expression(test: TestPredictions, without: list[str]) -> dict[str, Any]:
    """Accuracy per source expression folder; and accuracy / macro-F1 without some of them
    (``evaluate.without``, e.g. FER2013's surprise, whose valence is ambiguous)."""
    from fer.learning.evaluation import classification_report

    if "expression" not in test.table:
        return {}
    expression = test.table["expression"].astype(str).str.lower().to_numpy()
    hit = test.pred == test.y
    out: dict[str, Any] = {
        "per_expression": {
            e: {"n": int((expression == e).sum()), "accuracy": float(hit[expression == e].mean())}
            for e in sorted(set(expression))
        }
    }
    if without:
        keep = ~np.isin(expression, [w.lower() for w in without])
        report = classification_report(test.y[keep], test.pred[keep], CLASSES)
        out.update(
            without=sorted(without),
            n_without=int(keep.sum()),
            accuracy_without=report["accuracy"],
            macro_f1_without=report["macro_f1"],
        )
    return out


def ferplus_scores(cfg: Config, test: TestPredictions) -> dict[str, Any]:
    """The test split scored against FER+'s majority (when the manifest has votes): ``n``,
    ``accuracy``, ``macro_f1``, ``recall`` per class, ``confusion`` (rows actual), plus ``n_``,
    ``accuracy_`` and ``macro_f1_without``, leaving out the faces whose most-voted folder is in
    ``evaluate.without``. Faces with tied or no class votes are not scored (``ties``)."""
    from fer.data import ferplus
    from fer.labels import Taxonomy
    from fer.learning.evaluation import classification_report
    from fer.learning.splits import ferplus_class_votes, ferplus_votes

    try:
        votes = ferplus_votes(cfg, test.table)
    except InputError as exc:  # the second truth is optional: say why it is missing
        print(f"evaluate: warning: no FER+ scores ({exc})")
        return {}
    if votes is None:
        return {}
    per_class = ferplus_class_votes(cfg, votes)
    label = ferplus.majority(per_class)
    keep = label >= 0
    report = classification_report(label[keep], test.pred[keep], CLASSES)
    out: dict[str, Any] = {
        "n": report["n"],
        "ties": int(ferplus.is_tie(per_class).sum()),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "recall": {c: v["recall"] for c, v in report["per_class"].items()},
        "confusion": report["confusion"],
        "agreement": float((label[keep] == test.y[keep]).mean()) if keep.any() else 0.0,
    }
    if cfg.evaluate.without:
        taxonomy = Taxonomy(cfg.taxonomy)
        folders = ferplus.emotion_folders(
            cfg.import_.fer2013, cfg.import_.ferplus_contempt, taxonomy
        )
        rest = keep & ~ferplus.top_folder_in(votes, folders, cfg.evaluate.without)
        without = classification_report(label[rest], test.pred[rest], CLASSES)
        out.update(
            n_without=without["n"],
            accuracy_without=without["accuracy"],
            macro_f1_without=without["macro_f1"],
        )
    return out


def _write_plots(
    plots: Path,
    name: str,
    test: TestPredictions,
    truth: pd.Series,
    report: dict[str, Any],
    gallery_size: int,
) -> None:
    """Confusion table and figure, per-face predictions, worst mistakes, training curves."""
    from fer.learning.evaluation import (
        confusion_figure,
        curves_figure,
        mistakes_figure,
        save_figure,
        worst_mistakes,
    )

    names = np.array(CLASSES)
    y, pred, probs = test.y, test.pred, test.probs
    write_csv(
        pd.DataFrame({"actual": names[y], "predicted": names[pred]}), plots / "confusion.csv"
    )
    predictions = pd.DataFrame(
        {
            "face_id": test.table["face_id"].astype(str),
            "label": names[y],
            "predicted": names[pred],
            **{c: np.round(probs[:, i], 6) for i, c in enumerate(CLASSES)},
        }
    )
    if truth.notna().any():
        predictions["true_label"] = truth.fillna("").to_numpy()
    write_csv(predictions, plots / "predictions.csv")
    cm = np.array(report["confusion"])
    save_figure(confusion_figure(cm, CLASSES, f"{name}: test split"), plots / "confusion.png")
    worst = worst_mistakes(y, probs, gallery_size)
    confidences = [float(probs[i, pred[i]]) for i in worst]
    figure = mistakes_figure(test.crops[worst], list(names[y[worst]]), list(names[pred[worst]]),
                             confidences)  # fmt: skip
    save_figure(figure, plots / "mistakes.png")
    history_path = plots / "history.csv"  # written by `fer train`
    if history_path.is_file():
        history = pd.read_csv(history_path)
        if len(history):
            save_figure(curves_figure(history), plots / "curves.png")


def _log(
    cfg: Config,
    model_dir: Path,
    name: str,
    metrics: dict[str, Any],
    report: dict[str, Any],
    details_path: Path,
    plots: Path,
) -> None:
    """Metrics and figures into the training's MLflow run (a new run if it is gone)."""
    from fer import tracking

    run_id = _training_run_id(model_dir)
    if run_id and not tracking.run_exists(cfg.tracking, run_id):
        print(f"evaluate: warning: training run {run_id} not in the tracking store; new run")
        run_id = None
    with tracking.open_run(
        cfg.tracking, run_id=run_id, run_name=f"{name}-evaluate",
        tags={"stage": "evaluate", "model": name},
    ) as mrun:  # fmt: skip
        if mrun is None:
            return
        mrun.log_metrics({f"test_{k}": v for k, v in metrics.items() if k != "model"})
        mrun.log_artifact(details_path, artifact_path="evaluation")  # the headline's superset
        mrun.log_artifact(plots, artifact_path="evaluation/plots")
        mrun.log_text(json.dumps(report, indent=2), "evaluation/classification_report.json")


def _print_done(
    name: str, metrics: dict[str, Any], report: dict[str, Any], seconds: float, path: Path
) -> None:
    line = (
        f"evaluate: {name}: test accuracy {metrics['accuracy']:.3f}, "
        f"macro-F1 {metrics['macro_f1']:.3f}"
    )
    if "true_label_accuracy" in metrics:
        line += f", accuracy vs true labels {metrics['true_label_accuracy']:.3f}"
    if "ferplus" in metrics:
        fp = metrics["ferplus"]
        line += f"; vs FER+ majority: accuracy {fp['accuracy']:.3f}, macro-F1 {fp['macro_f1']:.3f}"
    print(f"{line} ({report['n']} faces, {seconds:.0f} s) → {path}")


def _training_run_id(model_dir: Path) -> str | None:
    """The training run's id (None: not trained here, or tracking was off)."""
    from fer.tracking import read_run_facts

    run_id = read_run_facts(model_dir.name).get("mlflow_run_id")
    return run_id if isinstance(run_id, str) else None

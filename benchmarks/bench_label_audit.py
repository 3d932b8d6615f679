"""Benchmark: label auditing on REAL faces (FER2013 Training), with injected label flips.

FER2013's own labels are noisy and have no truth, so known flips are injected at 5, 10 and 20 %
(each face moved to one of the two other classes) and the auditors are scored on finding them:
recall of the injected flips, precision against them (a flag on an original label counts as
wrong, though some are real errors), and the fraction of all faces flagged. Auditors:

- ``kfold``: fer's K-fold small CNN (validate defaults: 5 folds, 8 epochs, 32 px), out-of-fold;
- ``minixception`` / ``faceexpr``: a packaged real-face model's zero-shot probabilities (the
  teacher). mini-Xception was trained on FER2013's training set: it has seen these images with
  their original labels, so its recall of injected flips overstates what it would find in a
  new dataset; FaceExpressionNet was trained elsewhere;
- ``kfold+minixception``, ``kfold+faceexpr``: the 50/50 blends ``validate.teacher_weight: 0.5``.

Each auditor's accuracy against the given (noisy) labels, calibration error and whether fer
would trust it (``validate.min_auditor_accuracy`` / ``max_auditor_ece``) are printed too.
Goal at 10 %: recall >= 0.75 with at most 25 % of all faces flagged.

Needs a FER2013 project after ``fer detect`` (``data/faces.parquet`` and crops; see the
README's "Real data" section). Nothing is written there.

    python benchmarks/bench_label_audit.py --project /path/to/fer2013-project [--limit 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer import CLASSES
from fer.validation import cv_model
from fer.validation import label_issues as li

RATES = (0.0, 0.05, 0.10, 0.20)
TEACHERS = ("minixception", "faceexpr")


def load(project: Path, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Training crops (uint8, crop size), their given classes and crop paths."""
    import pandas as pd

    from fer.learning.datasets import load_crops

    faces = pd.read_parquet(project / "data/faces.parquet")
    faces = faces[faces["usage"] == "training"].sort_values("face_id").reset_index(drop=True)
    if limit and limit < len(faces):
        faces = faces.sample(limit, random_state=seed).sort_values("face_id")
    paths = faces["crop_path"].tolist()
    crops = load_crops(paths, root=project, size=64, cache_dir=None, progress=False)
    labels = np.array([CLASSES.index(c) for c in faces["label"]])
    return np.asarray(crops.images), labels, paths


def teacher_probs(project: Path, name: str, crops: np.ndarray) -> np.ndarray:
    """Zero-shot probabilities of a packaged model, as ``validate.teacher`` computes them."""
    from fer.config import load_config
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import pretrained_model

    cwd = Path.cwd()
    os.chdir(project)  # its params (taxonomy, import.fer2013) and its train.cache_dir
    try:
        cfg = load_config(project / "params.yaml")
        clf = FaceClassifier.load(pretrained_model(cfg, name), batch_size=256)
        return np.concatenate(
            [clf.predict_proba(crops[i : i + 1024]) for i in range(0, len(crops), 1024)]
        )
    finally:
        os.chdir(cwd)


def inject(labels: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Given labels with a ``rate`` fraction flipped; and which were flipped."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(labels)) < rate
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, 3, int(flipped.sum()))) % len(CLASSES)
    return noisy, flipped


def score(noisy: np.ndarray, flipped: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    flags = li.find_label_issues(noisy, probs)
    prf = li.precision_recall_f1(flags, flipped)
    quality = li.auditor_quality(noisy, probs)
    trusted = not li.distrust_reason(quality, min_accuracy=0.6, max_ece=0.15)
    return {
        "recall": round(prf["recall"], 3),
        "precision": round(prf["precision"], 3),
        "flagged": round(float(flags.mean()), 3),
        "auditor_accuracy": quality["accuracy"],
        "ece": quality["ece"],
        "trusted": trusted,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="sample this many training faces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args()
    print("$ python benchmarks/bench_label_audit.py " + shlex.join(sys.argv[1:]))
    print(f"load average at start: {os.getloadavg()}")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    crops, labels, _ = load(args.project.resolve(), args.limit, args.seed)
    print(f"{len(labels)} FER2013 training faces")
    teachers = {}
    for name in TEACHERS:
        start = time.perf_counter()
        teachers[name] = teacher_probs(args.project.resolve(), name, crops)
        print(f"teacher {name}: {time.perf_counter() - start:.0f} s")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for rate in RATES:
        noisy, flipped = inject(labels, rate, args.seed)
        start = time.perf_counter()
        kfold = cv_model.out_of_fold_probs(crops, noisy, len(CLASSES), cv_model.CVSettings())
        seconds = time.perf_counter() - start
        auditors = {"kfold": kfold, **teachers}
        auditors |= {f"kfold+{t}": (kfold + teachers[t]) / 2 for t in TEACHERS}
        results[f"{rate:.2f}"] = {k: score(noisy, flipped, p) for k, p in auditors.items()}
        print(f"\ninjected {rate:.0%} ({int(flipped.sum())} flips; K-fold {seconds:.0f} s)")
        print(f"{'auditor':<20} {'recall':>7} {'prec.':>7} {'flagged':>8} {'acc':>6} "
              f"{'ECE':>6}  trusted")  # fmt: skip
        for name, r in results[f"{rate:.2f}"].items():
            print(f"{name:<20} {r['recall']:>7.3f} {r['precision']:>7.3f} {r['flagged']:>8.3f} "
                  f"{r['auditor_accuracy']:>6.3f} {r['ece']:>6.3f}  {r['trusted']}")  # fmt: skip
    print(f"\nload average at end: {os.getloadavg()}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

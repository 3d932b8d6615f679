"""Benchmark: the K-fold label-issue pass (time) and mislabel detection vs noise rate (quality).

(a) Time of ``fer.validation.cv_model.out_of_fold_probs`` on N synthetic 64 px crops with the
    params defaults (5 folds, 8 epochs, 32 px input). Target: 20,000 faces in < 10 min, 2 cores.
(b) Image-level precision / recall / F1 of mislabel detection at noise 0–30 %, ours next to
    ``cleanlab.filter.find_label_issues`` on the same out-of-fold probabilities. On a sandbox
    project (``--project DIR`` holding data/faces.parquet, crops and data/sample_truth.csv) the
    true classes come from the truth file and class flips are injected per image at each rate;
    without one, on generated shape crops.

    python benchmarks/bench_label_issues.py                      # small: 2,000 faces timing
    python benchmarks/bench_label_issues.py --faces 20000 --project /tmp/sbx
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer import CLASSES
from fer.validation import cv_model
from fer.validation import label_issues as li
from tests.shapes import shape_crops


def shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard toy crops (see tests/shapes.py); returns images, classes, image index."""
    images, labels = shape_crops(n, seed, hard=True)
    return images, labels, np.arange(n)


def sandbox(project: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Crops, true class and image index of every face of a sandbox project."""
    import cv2
    import pandas as pd

    faces = pd.read_parquet(project / "data/faces.parquet").sort_values("face_id")
    truth = pd.read_csv(project / "data/sample_truth.csv").set_index("path")
    faces = faces[faces["path"].isin(truth.index)]
    images = np.stack(
        [cv2.cvtColor(cv2.imread(str(project / p)), cv2.COLOR_BGR2RGB) for p in faces["crop_path"]]
    )
    true = np.array([CLASSES.index(c) for c in truth.loc[faces["path"], "true_class"]])
    image_index = pd.factorize(faces["path"])[0]
    return images, true, image_index, f"sandbox {project} ({len(faces)} faces)"


def inject(true: np.ndarray, image_index: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Given labels: each image's class flipped to another class with probability ``rate``."""
    rng = np.random.default_rng(seed)
    n_images = image_index.max() + 1
    flip = rng.random(n_images) < rate
    shift = rng.integers(1, 3, n_images)
    # Faces of one image share the image's (true) class in the sandbox; flip them together.
    return np.where(flip[image_index], (true + shift[image_index]) % 3, true)


def image_level(flagged: np.ndarray, wrong: np.ndarray, image_index: np.ndarray) -> dict:
    n = image_index.max() + 1
    pred = np.zeros(n, bool)
    truth = np.zeros(n, bool)
    np.logical_or.at(pred, image_index, flagged)
    np.logical_or.at(truth, image_index, wrong)
    return li.precision_recall_f1(pred, truth)


def hog_probs(images: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    """Alternative fast model: HOG on 32 px grey + logistic regression, same folds."""
    import cv2
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    hog = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)
    feats = np.stack(
        [hog.compute(cv2.cvtColor(cv2.resize(im, (32, 32)), cv2.COLOR_RGB2GRAY)) for im in images]
    )
    probs = np.zeros((len(labels), 3))
    for test in cv_model.fold_indices(labels, list(groups), folds, seed):
        train = np.setdiff1d(np.arange(len(labels)), test)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        clf.fit(feats[train], labels[train])
        probs[test] = clf.predict_proba(feats[test])
    return probs


def fmt(m: dict) -> str:
    """P / R / F1 and, in brackets, how many images were flagged (undefined P at 0 % noise)."""
    return f"{m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f} ({m['tp'] + m['fp']})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=2000, help="faces for the timing run (a)")
    ap.add_argument("--project", type=Path, help="sandbox project root for (b)")
    ap.add_argument("--quality-faces", type=int, default=1500, help="shape faces for (b)")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=cv_model.CVSettings.width)
    ap.add_argument("--hog", action="store_true", help="also score HOG + logistic regression")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)
    from cleanlab.filter import find_label_issues as cleanlab_find

    print("command: python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"machine: {os.cpu_count()} CPU cores; torch threads auto")
    settings = cv_model.CVSettings(folds=args.folds, epochs=args.epochs, seed=0, width=args.width)

    if not args.skip_timing:
        images, labels, _ = shapes(args.faces, seed=0)
        labels = inject(labels, np.arange(len(labels)), 0.1, seed=1)
        t0, c0 = time.perf_counter(), time.process_time()
        cv_model.out_of_fold_probs(images, labels, 3, settings)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"\n(a) K-fold pass: {args.faces} faces, {args.folds} folds x <= {args.epochs} epochs"
        )
        print(f"    (<= {settings.max_steps} steps/fold), width {settings.width}, ")
        print(f"    {settings.input_size} px input: {dt:.1f} s wall, {cpu:.1f} s CPU")
        print(f"    load average after: {os.getloadavg()[0]:.1f} (other work on this machine)")
    if args.skip_quality:
        return 0

    if args.project:
        images, true, image_index, source = sandbox(args.project)
    else:
        images, true, image_index = shapes(args.quality_faces, seed=2)
        source = f"generated shapes ({args.quality_faces} faces)"
    print(f"\n(b) mislabel detection, image level, on {source}; flips injected per image")
    head = "| noise | flipped images | OOS acc (true) | ours P / R / F1 (flagged) | cleanlab ... |"
    head += " Jaccard | seconds |"
    if args.hog:
        head += " HOG+LR acc | HOG+LR P / R / F1 |"
    print(head)
    print("|" + "---|" * head.count(" |"))
    for rate in args.noise:
        given = inject(true, image_index, rate, seed=int(rate * 1000) + 7)
        wrong = given != true
        t0 = time.perf_counter()
        probs = cv_model.out_of_fold_probs(images, given, 3, settings, groups=list(image_index))
        ours = li.find_label_issues(given, probs)
        dt = time.perf_counter() - t0
        theirs = cleanlab_find(given, probs, n_jobs=1)
        union = (ours | theirs).sum()
        jac = (ours & theirs).sum() / union if union else 1.0
        acc = (probs.argmax(1) == true).mean()
        n_flipped = int(np.bincount(image_index, weights=wrong).astype(bool).sum())
        ours_m = image_level(ours, wrong, image_index)
        theirs_m = image_level(theirs, wrong, image_index)
        row = (
            f"| {rate:.2f} | {n_flipped} | {acc:.3f} | {fmt(ours_m)} | {fmt(theirs_m)}"
            f" | {jac:.3f} | {dt:.0f} |"
        )
        if args.hog:
            hp = hog_probs(images, given, image_index, args.folds, 0)
            hm = image_level(li.find_label_issues(given, hp), wrong, image_index)
            row += f" {(hp.argmax(1) == true).mean():.3f} | {fmt(hm)} |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Zero-shot accuracy and CPU latency of the pretrained real-face models (minixception, faceexpr).

Accuracy on FER2013 PrivateTest (3,589 48×48 grey faces; the images are already face crops, so
the whole image is resized, as mini-Xception was trained): 7-class accuracy, and 3-class
accuracy and macro-F1 with each model's mapped head (7 emotion probabilities summed per class):

- ``no_surprise``: the 3,173 faces that are not surprise; the head as in the default params
  (surprise → awe → negative, so a surprise probability counts as negative);
- ``no_surprise_dropped``: the same faces, the surprise output left out of the head (the other
  6 probabilities renormalised), for comparison with figures computed that way;
- ``surprise_negative``: all 3,589 faces, default params (surprise → awe → negative);
- ``surprise_positive``: all 3,589 faces, ``import.fer2013.surprise: joyful`` (positive).

Latency: the network alone on preprocessed inputs, ms per face, torch threads 1 and 2, batch 1
and 64 (median of repeats). The weights come from ``fer weights``; FER2013 is read from
``--data`` (``test/<emotion>/PrivateTest_*.jpg``) and nothing derived from it is written except
the metrics. Usage::

    python benchmarks/bench_pretrained.py --data FER2013_DIR [--out metrics.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("minixception", "faceexpr")


def load_privatetest(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Grey 48×48 uint8 faces and FER2013 emotion indices of every PrivateTest image."""
    import cv2

    from fer.learning.models.emotions import FER2013_EMOTIONS

    images, labels = [], []
    for index, emotion in enumerate(FER2013_EMOTIONS):
        for path in sorted((root / "test" / emotion).glob("PrivateTest_*.jpg")):
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise SystemExit(f"{path}: unreadable")
            images.append(image)
            labels.append(index)
    if not images:
        raise SystemExit(f"{root}: no test/<emotion>/PrivateTest_*.jpg")
    return np.stack(images), np.asarray(labels)


def emotion_logits(name: str, faces: np.ndarray, batch: int = 256) -> np.ndarray:
    """The model's 7 emotion logits, reordered to FER2013's emotion order."""
    import torch
    from torch import nn

    from fer.config import ModelSpec
    from fer.learning.models import build_model, input_spec
    from fer.learning.models.emotions import FER2013_EMOTIONS, canonical
    from fer.learning.preprocess import preprocess

    model = build_model(name, ModelSpec(pretrained=True)).eval()
    model.head = nn.Identity()
    spec = input_spec(name)
    out = []
    with torch.inference_mode():
        for start in range(0, len(faces), batch):
            out.append(model(preprocess(faces[start : start + batch], spec)).numpy())
    logits = np.concatenate(out)
    module = sys.modules[type(model).__module__]
    order = [[canonical(e) for e in module.EMOTIONS].index(e) for e in FER2013_EMOTIONS]
    return logits[:, order]


def three_class(
    logits: np.ndarray, labels: np.ndarray, classes_of: dict[str, str], keep: np.ndarray
) -> dict[str, Any]:
    """Accuracy, macro-F1 and confusion of the mapped head on the ``keep`` faces."""
    import torch
    from sklearn.metrics import confusion_matrix, f1_score

    from fer import CLASSES
    from fer.learning.models.emotions import FER2013_EMOTIONS, class_indices
    from fer.learning.models.layers import MappedHead

    use = [i for i, e in enumerate(FER2013_EMOTIONS) if e in classes_of]
    index = class_indices([FER2013_EMOTIONS[i] for i in use], classes_of)
    head = MappedHead(index, len(CLASSES))
    with torch.no_grad():
        pred = head(torch.from_numpy(logits[keep][:, use])).argmax(1).numpy()
    true = np.asarray([CLASSES.index(classes_of[FER2013_EMOTIONS[i]]) for i in labels[keep]])
    return {
        "n": int(keep.sum()),
        "accuracy": float((pred == true).mean()),
        "macro_f1": float(f1_score(true, pred, average="macro")),
        "confusion": confusion_matrix(true, pred, labels=range(3)).tolist(),
    }


def zero_shot(name: str, faces: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Every accuracy figure of one model (see the module docstring)."""
    from sklearn.metrics import confusion_matrix, f1_score

    from fer.learning.models.emotions import DEFAULT_EMOTION_CLASSES, FER2013_EMOTIONS

    logits = emotion_logits(name, faces)
    pred7 = logits.argmax(1)
    surprise = labels == FER2013_EMOTIONS.index("surprise")
    everyone = np.ones_like(surprise)
    default = dict(DEFAULT_EMOTION_CLASSES)
    dropped = {e: c for e, c in default.items() if e != "surprise"}
    joyful = {**default, "surprise": "positive"}
    return {
        "seven_class": {
            "n": len(labels),
            "accuracy": float((pred7 == labels).mean()),
            "macro_f1": float(f1_score(labels, pred7, average="macro")),
            "confusion": confusion_matrix(labels, pred7, labels=range(7)).tolist(),
        },
        "no_surprise": three_class(logits, labels, default, ~surprise),
        "no_surprise_dropped": three_class(logits, labels, dropped, ~surprise),
        "surprise_negative": three_class(logits, labels, default, everyone),
        "surprise_positive": three_class(logits, labels, joyful, everyone),
    }


def latency(name: str, threads: int, batch: int, seconds: float = 3.0) -> dict[str, float]:
    """Median wall and process-CPU ms per face of the network on a preprocessed batch.

    CPU time (all threads) is the steadier figure on a shared machine; wall time is what a
    caller waits.
    """
    import torch

    from fer.config import ModelSpec
    from fer.learning.models import build_model, input_spec

    torch.set_num_threads(threads)
    model = build_model(name, ModelSpec(pretrained=True)).eval()
    size = input_spec(name).size
    x = torch.randn(batch, 3, size, size)
    wall, cpu = [], []
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(wall) < 5:
            start, start_cpu = time.perf_counter(), time.process_time()
            model(x)
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
    return {
        "wall": statistics.median(wall) * 1e3 / batch,
        "cpu": statistics.median(cpu) * 1e3 / batch,
    }


def load_average() -> str:
    """``uptime``-style 1/5/15-minute load averages and the core count."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> int:
    """Measure, print a summary, optionally write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="FER2013_DIR")
    parser.add_argument("--out", type=Path, help="write all numbers as JSON here")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true", help="latency only")
    args = parser.parse_args()
    print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print("start: " + load_average(), flush=True)

    import torch

    torch.set_num_threads(1)  # accuracy pass: one thread is steadiest on a shared machine
    results: dict[str, Any] = {"command": sys.argv, "torch": torch.__version__}
    if not args.skip_accuracy:
        faces, labels = load_privatetest(args.data)
        print(f"FER2013 PrivateTest: {len(labels)} faces {faces.shape[1]}×{faces.shape[2]}")
    for name in [] if args.skip_accuracy else args.models:
        started = time.perf_counter()
        r = zero_shot(name, faces, labels)
        results[name] = r
        print(f"\n{name} (zero-shot, {time.perf_counter() - started:.1f} s)")
        seven = r["seven_class"]
        print(f"  7-class            acc {seven['accuracy']:.3f}  "
              f"macro-F1 {seven['macro_f1']:.3f}  (n={seven['n']})")  # fmt: skip
        for key in (
            "no_surprise",
            "no_surprise_dropped",
            "surprise_negative",
            "surprise_positive",
        ):
            m = r[key]
            print(f"  3-class {key:20s} acc {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
                  f"(n={m['n']})  confusion {m['confusion']}")  # fmt: skip
        print(f"  7-class confusion (rows true, FER2013 order) {r['seven_class']['confusion']}")
    if not args.skip_latency:
        print("\nlatency, network only, ms/face, median wall (process CPU):  " + load_average())
        results["latency_ms_per_face"] = {}
        for name in args.models:
            row = {}
            for threads in (1, 2):
                for batch in (1, 64):
                    row[f"threads{threads}_batch{batch}"] = latency(name, threads, batch)
            results["latency_ms_per_face"][name] = row
            cells = [f"{k} {v['wall']:.2f} ({v['cpu']:.2f})" for k, v in row.items()]
            print(f"  {name:13s} " + "  ".join(cells))
    results["load_average_end"] = load_average()
    print("end: " + load_average())
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

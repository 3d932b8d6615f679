"""Real-photo detection benchmark: the `fer detect` detector per image type, against truth.

Reads the set built by ``benchmarks/real_faces.py`` (``--data DATA_DIR/realfaces``)
and runs the detector of ``params.yaml`` (``--set key=value`` overrides any ``detect:`` key)
on every image, decoded as `fer` decodes it. Per image type it reports:

- image level: "has a face" precision / recall / F1 (:func:`fer.faces.scoring.image_level_prf`);
- box level at IoU >= ``detect.iou_threshold``, for the types with truth boxes
  (:func:`fer.faces.scoring.box_level_prf`);
- the exact-count rate (found as many faces as there are), and the over / under-count rates;
- ms per image (detection only, decode excluded; one process, OpenCV's own threads).

Truth rule for the web photos (``web1``, ``multi``): a labelled face is required when its
box, clipped to the image, is at least ``--min-truth-px`` (default: ``detect.min_face_px``)
on its short side in original pixels, the size below which the detector drops boxes anyway.
Smaller labelled faces are ignore regions: a detection matching one (IoU >= threshold) is
neither a hit nor a false positive (:func:`fer.faces.scoring.drop_ignored`). Faces the
source did not label (profiles, tiny faces) count as false positives when found.

``--half cal`` / ``--half test`` keep the even / odd images of each type: settings are swept
on ``cal`` and reported on ``test``. The ``sweep`` subcommand runs the network once per input
setting (``upscale_below`` x ``pad``; with ``pad_retry`` also the bordered second look of every
photo that was not upscaled), caches the raw boxes under ``<data>/cache/``, and replays the
shared filter (:meth:`ScaledDetector._finish`) over a grid of ``min_confidence`` x
``min_confidence_next`` x ``nms_iou`` x ``min_inside``. The pick rule
(:func:`objective`): the mean of the exact-count rates of ``portrait``, ``fer2013``, ``web1``,
``multi`` and the box F1 of ``multi``, among the points whose ``noface`` false-positive rate
is at most ``--max-fp`` (2%). ``animal`` (mammal faces) is reported, not constrained.

    python benchmarks/bench_real_detect.py --data DIR --half test
    python benchmarks/bench_real_detect.py --data DIR --set min_inside=0 --set pad=0 --half test
    python benchmarks/bench_real_detect.py sweep --data DIR --half cal --pad 0,0.1,0.25,0.5

The ``compare`` subcommand runs several settings side by side on the same images, in turn on
each image (so a change of machine load touches every case alike), and prints one table per
``--case`` (comma-separated ``key=value`` overrides on top of ``--set``):

    python benchmarks/bench_real_detect.py compare --data DIR --half test --case backend=ssd \
        --case backend=retinaface,min_confidence=0.9
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FER_PROGRESS", "0")

TYPES = ("portrait", "fer2013", "web1", "multi", "noface", "animal", "video")


# -- truth ---------------------------------------------------------------------------------


def load_truth(data: Path, half: str = "all", types: tuple[str, ...] = TYPES) -> list[dict]:
    """Records of ``truth.json``, the even (``cal``) or odd (``test``) ones of each type."""
    doc = json.loads((data / "truth.json").read_text())
    by_type: dict[str, list[dict]] = defaultdict(list)
    for rec in doc["images"]:
        by_type[rec["type"]].append(rec)
    keep = {"all": slice(None), "cal": slice(0, None, 2), "test": slice(1, None, 2)}[half]
    return [rec for t in types for rec in by_type.get(t, [])[keep]]


def split_truth(
    rec: dict, min_px: float
) -> tuple[list[list[float]] | None, list[list[float]], int]:
    """``(required boxes or None, ignore boxes, required count)`` of one record."""
    if rec["boxes"] is None:
        return None, [], int(rec["n_faces"])
    required, ignore = [], []
    for x, y, w, h in rec["boxes"]:
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(rec["width"]), x + w), min(float(rec["height"]), y + h)
        box = [x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)]
        (required if min(box[2], box[3]) >= min_px else ignore).append(box)
    return required, ignore, len(required)


def score(rows: list[dict], iou_threshold: float) -> dict[str, Any]:
    """Metrics of one image type from per-image rows (``truth``, ``ignore``, ``n_truth``,
    ``pred``, ``ms``)."""
    from fer.faces.scoring import box_level_prf, drop_ignored, image_level_prf

    kept_all, truth_boxed, kept_boxed = [], [], []
    for r in rows:
        if r["truth"] is None:
            kept = r["pred"]
        else:
            idx = drop_ignored(r["truth"], r["ignore"], r["pred"], iou_threshold)
            kept = [r["pred"][j] for j in idx]
            truth_boxed.append(r["truth"])
            kept_boxed.append(kept)
        kept_all.append(kept)
    n_truth = [r["n_truth"] for r in rows]
    n_pred = [len(k) for k in kept_all]
    n = max(1, len(rows))
    image = image_level_prf([t > 0 for t in n_truth], [p > 0 for p in n_pred])
    box = box_level_prf(truth_boxed, kept_boxed, iou_threshold) if truth_boxed else None
    return {
        "n": len(rows),
        "faces": sum(n_truth),
        "image": image,
        "box": box,
        "exact": sum(t == p for t, p in zip(n_truth, n_pred, strict=True)) / n,
        "over": sum(p > t for t, p in zip(n_truth, n_pred, strict=True)) / n,
        "under": sum(p < t for t, p in zip(n_truth, n_pred, strict=True)) / n,
        "fp_images": sum(p > 0 for t, p in zip(n_truth, n_pred, strict=True) if t == 0),
        "ms": sum(r["ms"] for r in rows) / n,
    }


# -- running the detector ------------------------------------------------------------------


def detect_config(sets: list[str], params: Path) -> Any:
    """``DetectConfig`` from ``params`` with ``key=value`` overrides (YAML-parsed values)."""
    from fer.config import DetectConfig

    raw = yaml.safe_load(params.read_text()).get("detect", {})
    for item in sets:
        key, _, value = item.partition("=")
        raw[key.strip()] = yaml.safe_load(value)
    return DetectConfig(**raw)


def run_detector(cfg: Any, recs: list[dict], data: Path) -> list[dict]:
    """Per-image rows: predicted boxes and detection time."""
    from fer.data.images import load_rgb
    from fer.faces.detectors import create_detector

    det = create_detector(cfg)
    rows = []
    for rec in recs:
        rgb = load_rgb(data / "images" / rec["path"])
        start = time.perf_counter()
        faces = det.detect(rgb)
        ms = 1000 * (time.perf_counter() - start)
        rows.append({"path": rec["path"], "type": rec["type"], "ms": ms,
                     "pred": [list(f.box) for f in faces],
                     "scores": [f.score for f in faces]})  # fmt: skip
    return rows


def attach_truth(rows: list[dict], recs: list[dict], min_px: float) -> None:
    """Add ``truth`` / ``ignore`` / ``n_truth`` to each row (same order as ``recs``)."""
    for row, rec in zip(rows, recs, strict=True):
        row["truth"], row["ignore"], row["n_truth"] = split_truth(rec, min_px)


def by_type(rows: list[dict], iou_threshold: float) -> dict[str, dict]:
    """:func:`score` per image type, in :data:`TYPES` order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["type"]].append(r)
    return {t: score(groups[t], iou_threshold) for t in TYPES if t in groups}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def table(results: dict[str, dict]) -> str:
    """Markdown table of :func:`by_type` results."""
    lines = [
        "| type | images | faces | image P / R / F1 | box P / R / F1 | exact | over | under "
        "| ms/img |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, m in results.items():
        im, bx = m["image"], m["box"]
        prf = ("precision", "recall", "f1")
        if m["faces"] == 0:  # nothing to find: only false positives can be counted
            image = f"FP images {m['fp_images']} ({m['over']:.1%})"
            box = "n/a" if bx is None else f"FP boxes {bx['fp']}"
        else:
            image = " / ".join(_fmt(im[k]) for k in prf)
            box = "n/a" if bx is None else " / ".join(_fmt(bx[k]) for k in prf)
        lines.append(
            f"| {t} | {m['n']} | {m['faces']} | {image} | {box} | {m['exact']:.3f} "
            f"| {m['over']:.3f} | {m['under']:.3f} | {m['ms']:.1f} |"
        )
    return "\n".join(lines)


def header(argv: list[str], cfg: Any, extra: str = "") -> str:
    """Command, settings and load average, printed with every result."""
    keys = ("backend", "min_confidence", "min_confidence_next", "nms_iou", "min_inside", "pad",
            "pad_retry", "upscale_below", "max_side", "min_face_px", "max_aspect",
            "iou_threshold")  # fmt: skip
    settings = ", ".join(f"{k}={getattr(cfg, k, None)}" for k in keys)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    cmd = "python benchmarks/bench_real_detect.py " + " ".join(shlex.quote(a) for a in argv)
    return f"# {cmd}\n# {settings}{extra}\n# cpus={os.cpu_count()}, load average {load}"


# -- sweep ---------------------------------------------------------------------------------


def raw_boxes(cfg: Any, recs: list[dict], data: Path) -> list[dict]:
    """Per image: the detector's raw boxes (detection pixels), the scale and the size."""
    from fer.data.images import load_rgb
    from fer.faces.detectors import create_detector

    det = create_detector(cfg)
    out = []
    for rec in recs:
        rgb = load_rgb(data / "images" / rec["path"])
        start = time.perf_counter()
        raw, scale, h, w = det.raw_detections(rgb)
        ms = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        retry = det.retry_raw(rgb)  # pad_retry's second look, kept whatever the first found
        retry_ms = 1000 * (time.perf_counter() - start)
        out.append({"raw": _floats_of(raw), "scale": scale, "h": h, "w": w, "ms": ms,
                    "retry": None if retry is None else _floats_of(retry),
                    "retry_ms": retry_ms})  # fmt: skip
    return out


def _floats_of(raw: list) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in b) for b in raw]


def cached_raw(cfg: Any, recs: list[dict], data: Path) -> list[dict]:
    """:func:`raw_boxes`, cached per input setting (keyed by image path) under ``<data>/cache``."""
    key = (f"{cfg.backend}_up{cfg.upscale_below}_border{cfg.pad}{'_retry' * cfg.pad_retry}"
           f"_ms{cfg.max_side}_c{cfg.min_confidence}")  # fmt: skip
    path = data / "cache" / f"raw_{key}.pkl"
    cache: dict[str, dict] = pickle.loads(path.read_bytes()) if path.is_file() else {}
    missing = [rec for rec in recs if rec["path"] not in cache]
    if missing:
        cache.update(zip((r["path"] for r in missing), raw_boxes(cfg, missing, data), strict=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(cache))
    return [cache[rec["path"]] for rec in recs]


def replay(cfg: Any, raws: list[dict], recs: list[dict], min_px: float) -> dict[str, dict]:
    """Metrics per type of the shared filter with ``cfg`` applied to cached raw boxes."""
    from fer.faces.detectors import ScaledDetector

    finisher = ScaledDetector(cfg)
    rows = []
    for raw, rec in zip(raws, recs, strict=True):
        faces = finisher._finish(raw["raw"], raw["scale"], raw["h"], raw["w"])
        ms = raw["ms"]
        if not faces and raw.get("retry") is not None:  # what ScaledDetector.detect does
            faces = finisher._finish(raw["retry"], raw["scale"], raw["h"], raw["w"])
            ms += raw["retry_ms"]
        rows.append({"type": rec["type"], "ms": ms, "pred": [list(f.box) for f in faces]})
    attach_truth(rows, recs, min_px)
    return by_type(rows, cfg.iou_threshold)


def objective(res: dict[str, dict], max_fp: float) -> float:
    """The sweep's pick rule: mean of the exact-count rates of the face types and the box F1
    of ``multi``; -1 when the no-face false-positive rate exceeds ``max_fp``."""
    if "noface" in res and 1 - res["noface"]["exact"] > max_fp:
        return -1.0  # (animal faces are reported, not constrained: see the docstring)
    parts = [res[t]["exact"] for t in ("portrait", "fer2013", "web1", "multi") if t in res]
    if "multi" in res and res["multi"]["box"] is not None:
        parts.append(res["multi"]["box"]["f1"])
    return sum(parts) / max(1, len(parts))


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def sweep(args: argparse.Namespace, argv: list[str]) -> int:
    """Grid over input settings (network runs) and filter settings (replays)."""
    base = detect_config(args.set, args.params)
    recs = load_truth(args.data, args.half, tuple(args.types.split(",")))
    min_px = args.min_truth_px if args.min_truth_px is not None else base.min_face_px
    print(header(argv, base, f", half={args.half}, images={len(recs)}, min_truth_px={min_px}"))
    grid = []
    for up in (int(v) for v in _floats(args.upscale)):
        for pad in _floats(args.pad):
            update = {"upscale_below": up, "pad": pad, "min_confidence": args.floor}
            net_cfg = base.model_copy(update=update)
            start = time.perf_counter()
            raws = cached_raw(net_cfg, recs, args.data)
            secs = time.perf_counter() - start
            print(f"# raw boxes upscale_below={up} pad={pad}: {secs:.0f} s", flush=True)
            for conf, nxt, nms, inside in itertools.product(
                _floats(args.conf), _floats(args.next), _floats(args.nms), _floats(args.inside)
            ):
                if nxt > conf:
                    continue
                update = {"min_confidence": conf, "min_confidence_next": nxt,
                          "nms_iou": nms, "min_inside": inside}  # fmt: skip
                res = replay(net_cfg.model_copy(update=update), raws, recs, min_px)
                grid.append(((up, pad, conf, nxt, nms, inside), res))
    print_grid(grid, args.max_fp)
    if args.json:
        args.json.write_text(json.dumps([{"key": k, "res": r} for k, r in grid], indent=1))
    return 0


def print_grid(grid: list[tuple[tuple, dict]], max_fp: float) -> None:
    """One markdown row per grid point, the best one marked."""
    cols = [t for t in TYPES if t in grid[0][1]]
    exact = " | ".join(f"{t} exact" for t in cols)
    print(f"\n| upscale | pad | conf | next | nms | inside | {exact} | multi box F1 | objective |")
    print("|" + "---|" * (8 + len(cols)))
    best = max(grid, key=lambda g: objective(g[1], max_fp))
    for key, res in grid:
        f1 = res["multi"]["box"]["f1"] if "multi" in res else float("nan")
        mark = " **best**" if key == best[0] else ""
        cells = " | ".join(f"{res[t]['exact']:.3f}" for t in cols)
        keys = " | ".join(str(k) for k in key)
        print(f"| {keys} | {cells} | {f1:.3f} | {objective(res, max_fp):.3f}{mark} |")
    up, pad, conf, nxt, nms, inside = best[0]
    print(
        f"\nbest (objective, no-face FP <= {max_fp}): upscale_below={up} pad={pad} "
        f"min_confidence={conf} min_confidence_next={nxt} nms_iou={nms} min_inside={inside}"
    )


# -- main ----------------------------------------------------------------------------------


def compare(args: argparse.Namespace, argv: list[str]) -> int:
    """Each ``--case`` on the same images, interleaved per image; one table per case."""
    from fer.data.images import load_rgb
    from fer.faces.detectors import create_detector

    base = detect_config(args.set, args.params)
    recs = load_truth(args.data, args.half, tuple(args.types.split(",")))
    min_px = args.min_truth_px if args.min_truth_px is not None else base.min_face_px
    cases = [detect_config([*args.set, *c.split(",")], args.params) for c in args.case or [""]]
    print(header(argv, base, f", half={args.half}, images={len(recs)}, min_truth_px={min_px}"))
    if args.cv_threads is not None:
        import cv2

        cv2.setNumThreads(args.cv_threads)
        print(f"# OpenCV threads: {args.cv_threads}")
    detectors = [create_detector(cfg) for cfg in cases]
    rows: list[list[dict]] = [[] for _ in cases]
    for rec in progress(recs):
        rgb = load_rgb(args.data / "images" / rec["path"])
        for det, out in zip(detectors, rows, strict=True):
            start = time.perf_counter()
            faces = det.detect(rgb)
            ms = 1000 * (time.perf_counter() - start)
            out.append({"path": rec["path"], "type": rec["type"], "ms": ms,
                        "pred": [list(f.box) for f in faces],
                        "scores": [f.score for f in faces]})  # fmt: skip
    results = []
    for label, cfg, out in zip(args.case or ["params.yaml"], cases, rows, strict=True):
        attach_truth(out, recs, min_px)
        res = by_type(out, cfg.iou_threshold)
        results.append({"case": label, "results": res})
        print(f"\n## {label or 'params.yaml'}\n{header([], cfg).splitlines()[1]}\n{table(res)}")
    if args.frame_rounds:
        print(frame_speed(detectors, args.case or ["params.yaml"], args.frame_rounds))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n# load average after: {load}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def frame_speed(detectors: list, labels: list[str], rounds: int) -> str:
    """Median ms per ``detect`` on one 640×480 photo (the astronaut letterboxed), the cases
    interleaved over ``rounds`` rounds after one warm-up call each."""
    import statistics

    import cv2
    import numpy as np
    import skimage.data

    frame = np.full((480, 640, 3), 30, np.uint8)
    frame[:, 80:560] = cv2.resize(
        skimage.data.astronaut(), (480, 480), interpolation=cv2.INTER_AREA
    )
    times: list[list[float]] = [[] for _ in detectors]
    for det in detectors:
        det.detect(frame)
    for _ in range(rounds):
        for det, out in zip(detectors, times, strict=True):
            start = time.perf_counter()
            det.detect(frame)
            out.append(1000 * (time.perf_counter() - start))
    lines = [f"\n# 640x480 photo, median of {rounds} interleaved rounds (min):"]
    for label, out in zip(labels, times, strict=True):
        lines.append(f"#   {label}: {statistics.median(out):.1f} ms ({min(out):.1f} ms)")
    return "\n".join(lines)


def progress(items: list) -> Any:
    """``items`` with fer's progress bar (off when not a terminal)."""
    from fer.progress import bar

    return bar(items, desc="images", unit="img")


def evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the configured detector on the benchmark and print the per-type table."""
    cfg = detect_config(args.set, args.params)
    recs = load_truth(args.data, args.half, tuple(args.types.split(",")))
    min_px = args.min_truth_px if args.min_truth_px is not None else cfg.min_face_px
    print(header(argv, cfg, f", half={args.half}, min_truth_px={min_px}"), flush=True)
    rows = run_detector(cfg, recs, args.data)
    attach_truth(rows, recs, min_px)
    results = by_type(rows, cfg.iou_threshold)
    print(table(results))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# load average after: {load}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "rows": rows}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=("run", "sweep", "compare"), default="run")
    parser.add_argument("--data", type=Path, required=True, help="DATA_DIR/realfaces")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--set", action="append", default=[], help="detect key=value override")
    parser.add_argument("--half", choices=("all", "cal", "test"), default="all")
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--min-truth-px", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the full results here")
    sw = parser.add_argument_group("sweep")
    sw.add_argument("--upscale", default="160")
    sw.add_argument("--pad", default="0,0.5")
    sw.add_argument("--conf", default="0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    sw.add_argument("--next", default="0.5", help="min_confidence_next values")
    sw.add_argument("--nms", default="0.3")
    sw.add_argument("--inside", default="0,0.6")
    sw.add_argument("--floor", type=float, default=0.2, help="confidence kept in the raw cache")
    sw.add_argument("--max-fp", type=float, default=0.02, help="no-face FP limit of the pick")
    cmp = parser.add_argument_group("compare")
    cmp.add_argument("--case", action="append", default=None, help="key=value,... overrides")
    cmp.add_argument("--cv-threads", type=int, default=None, help="cv2.setNumThreads first")
    cmp.add_argument("--frame-rounds", type=int, default=0, help="also time a 640x480 photo")
    args = parser.parse_args(argv)
    modes = {"sweep": sweep, "compare": compare, "run": evaluate}
    return modes[args.mode](args, argv)


if __name__ == "__main__":
    sys.exit(main())

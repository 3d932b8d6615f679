"""`fer detect`: find and crop faces in every ``ok`` manifest image (docs/data-contracts.md).

Writes ``detect.images`` (one row per ok image, with its face count and status),
``detect.faces`` (one row per kept face) and crops under ``detect.crops_dir``; metrics to
``detect.metrics`` (headline numbers: localization scores when ground truth is available) and
``detect.details`` (every count).

Incremental: detections are cached per (image content hash, detection settings hash), so a
re-run only detects new images; the crops dir is kept consistent by the stage itself (wiped
when crop or detection settings change, missing crops written, stale ones deleted).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer.errors import InputError
from fer.faces.cache import DetectionCache
from fer.faces.crops import crop_name, crop_settings_hash, kept_indices
from fer.faces.detectors import Face, create_detector, settings_hash
from fer.faces.runner import resolve_workers, run_batches
from fer.faces.worker import Result, Task, WorkerSpec
from fer.io import contained, read_table, write_json, write_parquet
from fer.progress import bar
from fer.tracking import write_run_facts

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import Config, CropConfig, DetectConfig

SETTINGS_FILE = ".settings.json"
OUTSIDE = "path_outside_raw_dir:"
"""Error of a manifest row whose path resolves outside ``ingest.raw_dir`` (never opened)."""
MANIFEST_COLUMNS = ("id", "path", "expression", "label", "status")
PRECROPPED_HASH = "precropped-1"
"""Detection settings hash in ``detect.mode: precropped`` (no detector runs)."""
_SUBDIR = re.compile(r"[0-9a-f]{2}")
_CROP = re.compile(r"[0-9a-f]{16}_\d+\.png")
_TEMP = re.compile(r"\.[0-9a-f]{16}_\d+\.png\.tmp\..*")


def run(cfg: Config) -> dict[str, Any]:
    """Detect, crop, write the tables and metrics, print a summary.

    Returns:
        The metrics (counts and, with truth, localization scores) plus ``seconds`` and
        ``images_per_s``.

    Raises:
        InputError: the manifest is missing or lacks required columns.
        ModelError: the detector's model files are missing or wrong.
    """
    dcfg = cfg.detect
    start = time.perf_counter()
    images = _ok_rows(Path(cfg.ingest.manifest))
    precropped = dcfg.mode == "precropped"
    det_hash = PRECROPPED_HASH if precropped else settings_hash(dcfg)  # ModelError before work
    crops_dir = Path(dcfg.crops_dir)
    _sync_crops_settings(crops_dir, crop_settings_hash(dcfg.crop, det_hash), det_hash)
    # Exact duplicates (same id) share one detection and one crop file: first path wins.
    unique = images.drop_duplicates("id", keep="first")
    with DetectionCache(dcfg.cache_dir, det_hash) as cache:
        results, tasks = _plan(unique, cache, Path(cfg.ingest.raw_dir), dcfg)
        hits = (r for r in results.values() if not r.error.startswith(OUTSIDE))
        cache_hits = 0 if precropped else sum(1 for _ in hits)
        workers = _workers(dcfg, len(tasks))
        counts = _detect(cfg, tasks, results, cache, workers)
    detections, faces = _tables(images, results, dcfg)
    removed = _remove_stale_crops(crops_dir, set(faces["crop_path"]))
    write_parquet(faces, dcfg.faces)
    write_parquet(detections, dcfg.images)

    metrics = {**_counts(detections, faces), "cache_hits": cache_hits, **counts,
               "crops_removed": removed, "settings_hash": det_hash}  # fmt: skip
    if cfg.truth is not None and cfg.truth.is_file():
        metrics["localization"] = _localization(detections, results, cfg.truth, dcfg.iou_threshold)
    seconds = time.perf_counter() - start
    write_json(dcfg.details, metrics)
    write_json(dcfg.metrics, headline(metrics))
    if "localization" in metrics:
        _log_mlflow(cfg, metrics, det_hash)
    timing = {
        "seconds": round(seconds, 3),
        "images_per_s": round(len(detections) / seconds, 2) if seconds > 0 else 0.0,
    }
    write_run_facts("detect", timing)  # wall time: never in an output (same bytes every run)
    summary = {**metrics, **timing, "workers": workers}
    _print_summary(summary, dcfg.faces)
    return summary


def _plan(
    unique: pd.DataFrame, cache: DetectionCache, raw_dir: Path, dcfg: DetectConfig
) -> tuple[dict[str, Result], list[Task]]:
    """Cached results, and the tasks left: detection for new images, crops for missing files.

    In ``precropped`` mode every image is one face (:func:`whole_image_face`) and only crops
    are written. A manifest path that resolves outside ``raw_dir`` is recorded as an error,
    never opened.
    """
    crops_dir = Path(dcfg.crops_dir)
    results: dict[str, Result] = {}
    tasks: list[Task] = []
    precropped = dcfg.mode == "precropped"
    cached = {} if precropped else cache.get_many(unique["id"])
    for row in unique.itertuples(index=False):
        image_id = row.id
        path = contained(raw_dir, row.path)
        if path is None:
            results[image_id] = Result(image_id, error=f"{OUTSIDE} {raw_dir}", cacheable=False)
            continue
        if precropped:  # the image is the face: no detector, no cache
            hit = ([whole_image_face(row.width, row.height, dcfg.crop)], "")
        else:
            hit = cached.get(image_id)
        if hit is None:
            tasks.append(Task(image_id, str(path)))
            continue
        faces, error = hit
        results[image_id] = Result(image_id, faces=faces, error=error)
        missing = [
            i
            for i in kept_indices(faces, dcfg.crop.policy)
            if not (crops_dir / crop_name(image_id, i)).is_file()
        ]
        if not error and missing:
            tasks.append(Task(image_id, str(path), tuple(faces)))
    return results, tasks


def _workers(dcfg: DetectConfig, n_tasks: int) -> int:
    """Worker processes for ``n_tasks``: one when spawning a pool would cost more than it saves."""
    workers = resolve_workers(dcfg.workers)
    if dcfg.executor == "local" and n_tasks <= dcfg.batch_size:
        workers = 1
    return workers


def _batch_size(dcfg: DetectConfig, n_tasks: int, workers: int) -> int:
    """Images per task: smaller for small runs, so no worker idles while another finishes."""
    if dcfg.executor == "dask":
        # A Prefect task costs ~0.2-0.5 worker-s (benchmarks/bench_dask.py): keep batches
        # near batch_size, split evenly into whole rounds of `workers` tasks.
        rounds = max(1, math.ceil(n_tasks / (workers * dcfg.batch_size)))
        return max(1, math.ceil(n_tasks / (workers * rounds)))
    return max(1, min(dcfg.batch_size, math.ceil(n_tasks / (16 * workers))))


def _detect(
    cfg: Config,
    tasks: list[Task],
    results: dict[str, Result],
    cache: DetectionCache,
    workers: int,
) -> dict[str, int]:
    """Run the tasks; fills ``results`` and the cache; returns detected and written counts."""
    dcfg = cfg.detect
    needs_detector = any(t.faces is None for t in tasks)
    if needs_detector:
        create_detector(dcfg)  # fail fast (ModelError) in this process, not per image
    crops_dir = str(Path(dcfg.crops_dir).resolve())
    spec = WorkerSpec(detect=dcfg.detector(), crop=dcfg.crop, crops_dir=crops_dir,
                      max_pixels=cfg.ingest.max_pixels, needs_detector=needs_detector,
                      landmarker=_landmarker_factory(dcfg.crop))  # fmt: skip
    size = _batch_size(dcfg, len(tasks), workers)
    detected = crops_written = 0
    with bar(total=len(tasks), desc="detect", unit="img") as progress:
        for batch_results in run_batches(
            spec, _batches(tasks, size), executor=dcfg.executor, workers=workers,
            dask_address=dcfg.dask_address,
        ):  # fmt: skip
            cache.put_many(
                (r.image_id, r.faces, r.error) for r in batch_results if r.detected and r.cacheable
            )
            for r in batch_results:
                detected += r.detected
                crops_written += r.crops_written
                prev = results.get(r.image_id)
                if prev is not None and not r.error and not r.crop_error:
                    continue  # crop-only task for a cache hit went fine
                results[r.image_id] = r
            progress.update(len(batch_results))
    return {"detected": detected, "crops_written": crops_written}


def _landmarker_factory(crop: CropConfig) -> Any:
    """For ``crop.box: landmarks``: a picklable builder of face-api's landmark net (one thread
    per worker process), checked here first (ModelError when its weights are missing)."""
    if crop.box != "landmarks":
        return None
    from functools import partial

    from fer.learning.models.landmarks68 import FaceLandmarker, landmark_net

    landmark_net()  # fail fast in this process, not per image
    return partial(FaceLandmarker, threads=1)


def _ok_rows(manifest: Path) -> pd.DataFrame:
    """The manifest's ``ok`` rows, sorted by path so outputs are deterministic."""

    df = read_table(manifest, producer="fer ingest", columns=MANIFEST_COLUMNS)
    ok = df[(df["status"] == "ok") & (df["id"].astype(str) != "")].copy()
    for column, empty in (("usage", ""), ("width", 0), ("height", 0)):
        if column not in ok.columns:  # manifests of older versions
            ok[column] = empty
    return ok.sort_values("path", kind="stable").reset_index(drop=True)


def whole_image_face(width: int, height: int, crop: CropConfig) -> Face:
    """For a pre-cropped face image: the box whose crop window is the whole image.

    The window is the box grown by ``crop.margin`` on every side, so the box is the image
    shrunk by that margin; the crop is then exactly the image, resized, and the same margin
    frames a detector's box like the dataset's crops at prediction time.
    """
    scale = 1 + 2 * crop.margin
    w, h = max(1, round(width / scale)), max(1, round(height / scale))
    return Face(round((width - w) / 2), round((height - h) / 2), w, h, 1.0)


def _batches(tasks: list[Task], size: int) -> Iterator[list[Task]]:
    for start in range(0, len(tasks), size):
        yield tasks[start : start + size]


def _crop_files(crops_dir: Path) -> Iterator[Path]:
    """Files in the crops dir that this stage made: crops and leftover atomic-write temps.

    Anything else (a user's file, a misconfigured ``crops_dir: data``) is never touched.
    """
    if not crops_dir.is_dir():
        return
    for sub in crops_dir.iterdir():
        if sub.is_dir() and _SUBDIR.fullmatch(sub.name):
            for path in sub.iterdir():
                if path.is_file() and (_CROP.fullmatch(path.name) or _TEMP.fullmatch(path.name)):
                    yield path


def _sync_crops_settings(crops_dir: Path, crop_hash: str, det_hash: str) -> None:
    """Delete all crops when they were made with other settings; record the current ones."""
    marker = crops_dir / SETTINGS_FILE
    try:
        previous = json.loads(marker.read_text(encoding="utf-8")).get("hash")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == crop_hash:
        return
    for path in _crop_files(crops_dir):
        path.unlink()
    _remove_empty_dirs(crops_dir)
    write_json(marker, {"hash": crop_hash, "detect_settings_hash": det_hash})


def _remove_stale_crops(crops_dir: Path, expected: set[str]) -> int:
    """Delete crops no row refers to (removed images, old faces) and leftover temp files."""
    keep = {Path(p).name for p in expected}
    removed = 0
    for path in _crop_files(crops_dir):
        if path.name not in keep:
            path.unlink()
            removed += not path.name.startswith(".")
    _remove_empty_dirs(crops_dir)
    return removed


def _remove_empty_dirs(crops_dir: Path) -> None:
    if crops_dir.is_dir():
        for sub in crops_dir.iterdir():
            if sub.is_dir() and _SUBDIR.fullmatch(sub.name) and not any(sub.iterdir()):
                sub.rmdir()


def _tables(
    images: pd.DataFrame, results: dict[str, Result], dcfg: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``detections`` (one row per ok image) and ``faces`` (one row per kept face)."""
    import pandas as pd

    crops_dir = Path(dcfg.crops_dir)
    det_rows: list[dict[str, Any]] = []
    face_rows: list[dict[str, Any]] = []
    for row in images.itertuples(index=False):
        r = results[row.id]
        error = r.error or r.crop_error
        faces = [] if r.error else r.faces
        kept = [] if error else kept_indices(faces, dcfg.crop.policy)
        base = {
            "image_id": row.id,
            "path": row.path,
            "expression": row.expression,
            "label": row.label,
            "usage": row.usage,
        }
        det_rows.append(
            {
                **base,
                "n_faces": len(faces),
                "n_crops": len(kept),
                "status": "error" if error else "ok",
                "reason": error,
            }
        )
        path_key = hashlib.sha1(str(row.path).encode()).hexdigest()[:12]
        for index in kept:
            face = faces[index]
            face_rows.append(
                {
                    "face_id": f"{path_key}_{index}",
                    **base,
                    "face_index": index,
                    "x": face.x,
                    "y": face.y,
                    "w": face.w,
                    "h": face.h,
                    "score": face.score,
                    "crop_path": (crops_dir / crop_name(row.id, index)).as_posix(),
                    "n_faces": len(faces),
                }
            )
    det_cols = ["image_id", "path", "expression", "label", "usage", "n_faces", "n_crops"]
    det_cols += ["status"]
    face_cols = ["face_id", "image_id", "path", "expression", "label", "usage", "face_index"]
    face_cols += ["x", "y", "w", "h", "score", "crop_path", "n_faces"]
    detections = pd.DataFrame(det_rows, columns=[*det_cols, "reason"])
    faces_df = pd.DataFrame(face_rows, columns=face_cols)
    int_cols = ["face_index", "x", "y", "w", "h", "n_faces"]
    faces_df = faces_df.astype({c: "int64" for c in int_cols} | {"score": "float64"})
    detections = detections.astype({"n_faces": "int64", "n_crops": "int64"})
    return detections, faces_df


def _counts(detections: pd.DataFrame, faces: pd.DataFrame) -> dict[str, Any]:
    ok = detections[detections["status"] == "ok"]
    return {
        "images": len(detections),
        "with_face": int((ok["n_faces"] > 0).sum()),
        "no_face": int((ok["n_faces"] == 0).sum()),
        "multi_face": int((ok["n_faces"] > 1).sum()),
        "faces": int(ok["n_faces"].sum()),
        "crops": len(faces),
        "errors": int((detections["status"] == "error").sum()),
    }


def _localization(
    detections: pd.DataFrame, results: dict[str, Result], truth_csv: Path, iou_threshold: float
) -> dict[str, Any]:
    """Image- and box-level P/R/F1 on ok images that also appear in the truth file."""
    import pandas as pd

    from fer.faces.scoring import box_level_prf, image_level_prf

    truth = pd.read_csv(truth_csv)
    for col in ("path", "n_faces", "boxes"):
        if col not in truth.columns:
            raise InputError(f"truth {truth_csv}: missing column {col!r}")
    by_path = dict(
        zip(truth["path"], zip(truth["n_faces"], truth["boxes"], strict=True), strict=True)
    )
    t_has, p_has, t_boxes, p_boxes = [], [], [], []
    for row in detections[detections["status"] == "ok"].itertuples(index=False):
        if row.path not in by_path:
            continue
        n_true, boxes = by_path[row.path]
        faces: list[Face] = results[row.image_id].faces
        t_has.append(int(n_true) > 0)
        p_has.append(len(faces) > 0)
        t_boxes.append(json.loads(boxes) if isinstance(boxes, str) and boxes else [])
        p_boxes.append([f.box for f in faces])
    return {
        "scored_images": len(t_has),
        "iou_threshold": iou_threshold,
        "image": image_level_prf(t_has, p_has),
        "box": box_level_prf(t_boxes, p_boxes, iou_threshold),
    }


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """``detect.metrics``: the few numbers `dvc metrics show` lists for this stage.

    Images and faces, the localization scores where there is truth (face/no-face per image,
    boxes at ``iou_threshold``); the rest stays in ``detect.details``.
    """
    out = {"images": details["images"], "faces": details["faces"]}
    loc = details.get("localization")
    if loc:
        out["image_f1"] = loc["image"]["f1"]
        out.update({f"box_{k}": loc["box"][k] for k in ("precision", "recall", "f1")})
    return out


def _log_mlflow(cfg: Config, metrics: dict[str, Any], det_hash: str) -> None:
    """Log the localization scores as one MLflow run (through fer.tracking)."""
    if not cfg.tracking.enabled:
        return
    from fer.tracking import log_stage_run

    dcfg = cfg.detect
    params = {
        **dcfg.detector().model_dump(mode="json"),
        "crop_policy": dcfg.crop.policy,
        "settings_hash": det_hash,
    }
    loc = metrics["localization"]
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    for level in ("image", "box"):
        flat.update({f"{level}_{k}": v for k, v in loc[level].items()})
    log_stage_run(cfg.tracking, "detect", params, flat, [Path(dcfg.details)])  # all of metrics


def _print_summary(s: dict[str, Any], faces_path: Path) -> None:
    print(
        f"detect: {s['images']} images: {s['with_face']} with face, {s['no_face']} no face, "
        f"{s['multi_face']} multi-face, {s['errors']} errors; {s['faces']} faces, "
        f"{s['crops']} crops ({s['crops_written']} written, {s['crops_removed']} removed)"
    )
    print(
        f"detect: {s['cache_hits']} cache hits, {s['detected']} detected; "
        f"{s['images_per_s']:.1f} images/s over {s['seconds']:.1f}s "
        f"with {s['workers']} workers -> {faces_path}"
    )
    loc = s.get("localization")
    if loc:
        im, bx = loc["image"], loc["box"]
        print(
            f"detect: localization on {loc['scored_images']} images: image P/R/F1 "
            f"{im['precision']:.3f}/{im['recall']:.3f}/{im['f1']:.3f}, box "
            f"P/R/F1@{loc['iou_threshold']:g} "
            f"{bx['precision']:.3f}/{bx['recall']:.3f}/{bx['f1']:.3f}"
        )

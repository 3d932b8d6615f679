"""`fer predict PATH... [--model URI_OR_DIR] [--out DIR] [--json]`: classify faces in the wild.

Images (files or folders, walked recursively) get ``<out>/<name>.annotated.jpg``; videos get
``<out>/<name>.annotated.mp4`` (MJPG ``.avi`` where this OpenCV cannot write mp4v). All records
also go to ``<out>/predictions.json``. With ``--json`` stdout holds only that JSON (a list of
records, see fer.prediction.predict and fer.prediction.video for their shapes); progress and
summaries go to stderr. Unreadable files get an ``error`` record and the rest go on; if no input
at all could be used the stage fails (exit 2) after writing its report.

This module's import path stays free of Prefect, DVC and Great Expectations, and mlflow is
imported only when the model is an MLflow URI (see fer.prediction.model_resolution).
"""

from __future__ import annotations

import json as jsonlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer.errors import InputError
from fer.io import write_bytes, write_json
from fer.prediction.model_resolution import resolve_model
from fer.prediction.predict import (
    InputItem,
    annotate,
    annotated_path,
    encode_jpeg,
    expand_inputs,
    image_record,
    predict_images,
)
from fer.progress import bar

if TYPE_CHECKING:
    from fer.config import Config, CropConfig
    from fer.prediction.inference import FaceClassifier

REPORT = "predictions.json"


def run(
    cfg: Config,
    *,
    paths: list[Path],
    model: str | None = None,
    out: Path | None = None,
    json: bool = False,
) -> dict[str, Any]:
    """Predict on ``paths``; write annotated files and ``predictions.json`` under ``out``.

    Returns:
        ``{"records", "out_dir", "model", "images", "videos", "faces", "errors", "seconds"}``.

    Raises:
        InputError: no input could be used (after the report is written), or no path given.
        ModelError: the model does not resolve (the message lists what was looked for).
    """
    start = time.perf_counter()
    items = expand_inputs(paths)
    if not items:
        raise InputError(f"no files found in {', '.join(str(p) for p in paths) or '(nothing)'}")
    out_dir = Path(out if out is not None else cfg.predict.out_dir)
    log = sys.stderr if json else sys.stdout

    resolved = resolve_model(cfg, model)
    classifier, crop = load_classifier(resolved.path, cfg)
    from fer.faces.detectors import create_detector

    detector = create_detector(cfg.detect)
    print(f"model: {resolved.source} ({resolved.path}, {classifier.arch})", file=sys.stderr)

    records: list[dict[str, Any]] = [{} for _ in items]
    index = {id(item): i for i, item in enumerate(items)}
    images = [it for it in items if it.kind == "image"]
    progress = bar(total=len(images), desc="predict", unit="img") if images else None
    from fer.data.images import load_rgb

    for res in predict_images(
        images,
        load=load_rgb,
        detector=detector,
        classifier=classifier,
        crop=crop,
        batch_size=cfg.predict.batch_size,
    ):
        if res.image is not None:
            target = annotated_path(out_dir, res.item, ".jpg")
            write_bytes(target, encode_jpeg(annotate(res.image, res.record["faces"])))
        records[index[id(res.item)]] = res.record
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()

    for item in items:
        if item.kind == "missing":
            records[index[id(item)]] = image_record(item.path, [], "missing: no such file")
        elif item.kind == "video":
            records[index[id(item)]] = _video(item, out_dir, cfg, detector, classifier, crop)

    write_json(out_dir / REPORT, records)
    summary = _summary(records)
    for rec in records:
        print(_line(rec), file=log)
    print(
        f"{summary['images']} image(s), {summary['videos']} video(s), {summary['faces']} "
        f"face(s), {summary['errors']} error(s) -> {out_dir}",
        file=log,
    )
    if json:
        sys.stdout.write(jsonlib.dumps(records, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    result = {
        "records": records,
        "out_dir": str(out_dir),
        "model": resolved.source,
        **summary,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if summary["errors"] == len(records):
        raise InputError(f"no input could be used ({records[0]['path']}: {records[0]['error']})")
    return result


def load_classifier(model_dir: Path, cfg: Config) -> tuple[FaceClassifier, CropConfig]:
    """The classifier and the crop settings it was trained with (params' when not recorded)."""
    from fer.prediction.inference import FaceClassifier

    classifier = FaceClassifier.load(model_dir, batch_size=cfg.predict.batch_size)
    # A model trained with other crop settings must see crops cut its way.
    return classifier, classifier.crop_config(default=cfg.detect.crop)


def _video(
    item: InputItem, out_dir: Path, cfg: Config, detector: Any, classifier: Any, crop: Any
) -> dict[str, Any]:
    from fer.prediction.video import process_video, video_codec

    try:
        _, suffix = video_codec()
        return process_video(
            item.path,
            annotated_path(out_dir, item, suffix),
            detector=detector,
            classifier=classifier,
            crop=crop,
            detect_every=cfg.predict.detect_every,
            batch_size=cfg.predict.batch_size,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        msg = str(exc).removeprefix(f"{item.path}: ")
        return {"path": str(item.path), "frames": [], "error": f"video: {msg}"}


def _summary(records: list[dict[str, Any]]) -> dict[str, int]:
    videos = [r for r in records if "frames" in r]
    images = [r for r in records if "frames" not in r]
    faces = sum(len(r.get("faces", [])) for r in images) + sum(
        len(f["faces"]) for r in videos for f in r["frames"]
    )
    return {
        "images": len(images),
        "videos": len(videos),
        "faces": faces,
        "errors": sum(1 for r in records if "error" in r),
    }


def _line(rec: dict[str, Any]) -> str:
    """One human line per input."""
    if "error" in rec:
        return f"{rec['path']}: ERROR {rec['error']}"
    if "frames" in rec:
        tracks = ", ".join(f"#{t['track']} {t['label']}" for t in rec.get("tracks", []))
        return f"{rec['path']}: {len(rec['frames'])} frames, tracks: {tracks or 'no faces'}"
    if not rec["faces"]:
        return f"{rec['path']}: no faces"
    faces = ", ".join(f"{f['label']} ({f['probs'][f['label']]:.2f})" for f in rec["faces"])
    return f"{rec['path']}: {len(rec['faces'])} face(s): {faces}"

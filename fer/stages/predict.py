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
from collections.abc import Callable, Sequence
from functools import partial
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
from fer.progress import bar, enabled

if TYPE_CHECKING:
    from fer.config import Config
    from fer.faces.recipes import FaceCutter
    from fer.prediction.ensemble import EnsembleCutter, FaceEnsemble
    from fer.prediction.inference import FaceClassifier

REPORT = "predictions.json"


def run(
    cfg: Config,
    *,
    paths: list[Path],
    model: str | None = None,
    out: Path | None = None,
    json: bool = False,
    camera: int | None = None,
    show: bool = False,
    detect_with: str = "model",
    precropped: bool = False,
) -> dict[str, Any]:
    """Predict on ``paths`` (and/or a camera); write annotated files and ``predictions.json``.

    ``precropped``: every image is already one face crop (FER2013-style folders): no detector,
    the whole image is the face, resized to the model's input (its recipe's size and colour).

    Returns:
        ``{"records", "out_dir", "model", "images", "videos", "faces", "errors", "seconds"}``.

    Raises:
        InputError: no input could be used (after the report is written), no path given, or
            ``show`` without a display.
        ModelError: the model does not resolve (the message lists what was looked for).
    """
    from fer.faces.recipes import WholeImage

    start = time.perf_counter()
    items = expand_inputs(paths)
    if not items and camera is None:
        raise InputError(f"no files found in {', '.join(str(p) for p in paths) or '(nothing)'}")
    window = live_window() if show else None  # fails before any work when there is no display
    out_dir = Path(out if out is not None else cfg.predict.out_dir)
    log = sys.stderr if json else sys.stdout
    resolved = resolve_model(cfg, model)
    classifier, crop = load_classifier(resolved.path, cfg)
    if precropped:
        detector: Any = WholeImage()
        crop = crop.whole_image()
        source = "none: --precropped, each image is one face"
    else:
        detector = _detector(classifier, cfg, detect_with)
        source = f"{detector.name} (settings from the {detect_with})"
    print(
        f"model: {resolved.source} ({resolved.path}, {classifier.arch}); detector: {source}",
        file=sys.stderr,
    )
    make = WholeImage if precropped else partial(_detector, classifier, cfg, detect_with)
    ahead = AheadDetectors(detector, make, cfg.predict.detect_workers)
    video = VideoJob(out_dir, cfg, detector, classifier, crop, window, ahead)
    records = _predict_images(items, out_dir, cfg, detector, classifier, crop, ahead)
    for i, item in enumerate(items):
        if item.kind == "missing":
            records[i] = image_record(item.path, [], "missing: no such file")
        elif item.kind == "video":
            records[i] = video.run(item.path, annotated_path(out_dir, item, video.suffix))
    if camera is not None:
        records.append(video.run(camera, out_dir / f"camera{camera}.annotated{video.suffix}"))
    return _report(records, out_dir, resolved.source, json=json, log=log, start=start)


def _predict_images(
    items: list[InputItem],
    out_dir: Path,
    cfg: Config,
    detector: Any,
    classifier: FaceClassifier,
    crop: FaceCutter,
    ahead: Callable[[], Sequence[Any]] = tuple,
) -> list[dict[str, Any]]:
    """Records for every item (images filled in, the rest left ``{}``); annotated JPEGs.
    With more than one image, ``ahead()``'s detectors decode and detect the next ones."""
    from fer.data.images import load_rgb

    records: list[dict[str, Any]] = [{} for _ in items]
    index = {id(item): i for i, item in enumerate(items)}
    images = [it for it in items if it.kind == "image"]
    workers = ahead() if len(images) > 1 else ()
    with bar(
        total=len(images), desc="predict", unit="img", disable=not (images and enabled())
    ) as progress:
        for res in predict_images(
            images, load=load_rgb, detector=detector, classifier=classifier, crop=crop,
            batch_size=cfg.predict.batch_size, ahead=workers,
        ):  # fmt: skip
            if res.image is not None:
                target = annotated_path(out_dir, res.item, ".jpg")
                write_bytes(target, encode_jpeg(annotate(res.image, res.record["faces"])))
            records[index[id(res.item)]] = res.record
            progress.update(1)
    return records


def _report(
    records: list[dict[str, Any]],
    out_dir: Path,
    source: str,
    *,
    json: bool,
    log: Any,
    start: float,
) -> dict[str, Any]:
    """Write ``predictions.json``, print a line per input (and the JSON with ``--json``)."""
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
    if summary["errors"] == len(records):
        raise InputError(f"no input could be used ({records[0]['path']}: {records[0]['error']})")
    return {
        "records": records,
        "out_dir": str(out_dir),
        "model": source,
        **summary,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _detector(classifier: FaceClassifier, cfg: Config, detect_with: str) -> Any:
    """The model's own detector settings (as the served pyfunc uses), or params' ``detect``."""
    from fer.faces.detectors import create_detector

    params = cfg.detect.detector()
    if detect_with == "params":
        return create_detector(params)
    return create_detector(classifier.detector_settings(default=params))


class AheadDetectors:
    """The detectors of the workers that detect ahead (``predict.detect_workers``): the run's
    own detector and more made like it, built on first use (none for a single image)."""

    def __init__(self, detector: Any, make: Callable[[], Any], setting: int | str) -> None:
        self.detector, self.make, self.setting = detector, make, setting
        self._built: list[Any] | None = None

    def __call__(self) -> list[Any]:
        """``[detector, made, ...]``, one per worker; empty when there are no workers."""
        if self._built is None:
            from fer.prediction.ahead import detect_workers

            count = detect_workers(self.setting)
            more = [self.make() for _ in range(count - 1)]
            self._built = [self.detector, *more] if count else []
        return self._built


def load_classifier(
    model_dir: Path, cfg: Config
) -> tuple[FaceClassifier | FaceEnsemble, FaceCutter | EnsembleCutter]:
    """The classifier (or ensemble) and the cutter of its face recipe(s) (params'
    ``detect.crop`` when a model records neither a recipe nor its training crops)."""
    from fer.prediction.ensemble import load_for_inference

    classifier = load_for_inference(model_dir, batch_size=cfg.predict.batch_size)
    # A model trained with other crop settings must see crops cut its way.
    return classifier, classifier.face_cutter(default=cfg.detect.crop)


class VideoJob:
    """Videos and cameras of one `fer predict` run: same detector, classifier and window."""

    def __init__(
        self,
        out_dir: Path,
        cfg: Config,
        detector: Any,
        classifier: Any,
        crop: Any,
        window: Any,
        ahead: Callable[[], Sequence[Any]] = tuple,
    ) -> None:
        self.out_dir, self.cfg, self.window = out_dir, cfg, window
        self.detector, self.classifier, self.crop = detector, classifier, crop
        self.ahead = ahead
        self._suffix: str | None = None

    @property
    def suffix(self) -> str:
        """The annotated video's suffix (``.mp4``, or ``.avi`` where mp4v cannot be written)."""
        from fer.prediction.video import video_codec

        if self._suffix is None:
            self._suffix = video_codec()[1]
        return self._suffix

    def run(self, source: Path | int, target: Path) -> dict[str, Any]:
        """The video record; an unusable video or camera is an ``error`` record."""
        from fer.prediction.video import process_video

        try:
            return process_video(
                source, target, detector=self.detector, classifier=self.classifier,
                crop=self.crop, detect_every=self.cfg.predict.detect_every,
                batch_size=self.cfg.predict.batch_size,
                extra_sinks=[self.window] if self.window is not None else None,
                ahead=self.ahead(),
            )  # fmt: skip
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            msg = str(exc).split(": ", 1)[-1]
            return {"path": str(source), "frames": [], "error": f"video: {msg}"}


def live_window() -> Any:
    """A sink showing annotated frames in a window (``q`` or Esc stops the video).

    Raises:
        InputError: no display, or an OpenCV build without a GUI (opencv-python-headless).
    """
    import os

    import cv2

    gui = next(
        (ln.split(":", 1)[1].strip() for ln in cv2.getBuildInformation().splitlines()
         if ln.strip().startswith("GUI:")),
        "NONE",
    )  # fmt: skip
    if gui.upper() == "NONE":
        raise InputError(
            "--show needs an OpenCV build with a GUI: pip install opencv-python "
            "(this one is opencv-python-headless); drop --show to only write the annotated video"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise InputError("--show needs a display (DISPLAY is not set); drop --show")

    def show(frame_bgr: Any) -> None:
        cv2.imshow("fer predict", frame_bgr)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise StopIteration

    return show


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

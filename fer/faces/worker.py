"""The detection worker: one batch of images in, small results out (boxes, errors, counts).

Workers load the detector once per process, decode, detect and write their crops themselves
(atomically). The same :func:`process_batch` runs in this process, in the process pool of
:mod:`fer.faces.runner`, or as a Prefect task on Dask (``flows/dask_runner.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer.faces.crops import crop_name, kept_indices
from fer.faces.detectors import Face

if TYPE_CHECKING:
    from collections.abc import Callable

    from fer.config import CropConfig, DetectorSettings
    from fer.faces.detectors import Detector
    from fer.faces.landmarks import Landmarker


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable: detector settings, crop settings, limits."""

    detect: DetectorSettings
    crop: CropConfig
    crops_dir: str
    max_pixels: int
    cv_threads: int = 1  # 1 in pool workers (one process per core); 0 = OpenCV's default
    needs_detector: bool = True  # False when every task only writes crops (precropped, cached)
    landmarker: Callable[[], Landmarker] | None = None  # builds one (picklable) for crop.box
    # landmarks; the stage passes it, this room never imports the net


@dataclass(frozen=True)
class Task:
    """One unique image. ``faces`` given means "detection is cached, only write crops"."""

    image_id: str
    path: str
    faces: tuple[Face, ...] | None = None


@dataclass
class Result:
    """What a worker sends back for one task."""

    image_id: str
    faces: list[Face] = field(default_factory=list)
    error: str = ""  # detection or decode failure: the image has no usable faces
    cacheable: bool = True  # False for failures that may not recur (I/O, crashes)
    detected: bool = False  # detection ran (a cache miss) rather than crop-only
    crops_written: int = 0
    crop_error: str = ""


_STATE: dict[str, Any] = {"cfg": None, "detector": None, "threads": None, "landmarker": None}


def _detector(spec: WorkerSpec) -> Detector:
    """The process's detector, built once and reused across batches (and Dask tasks)."""
    import cv2

    if _STATE["threads"] != spec.cv_threads:
        if spec.cv_threads:
            cv2.setNumThreads(spec.cv_threads)
        _STATE["threads"] = spec.cv_threads
    if _STATE["detector"] is None or _STATE["cfg"] != spec.detect:
        from fer.faces.detectors import create_detector

        _STATE["detector"] = create_detector(spec.detect)
        _STATE["cfg"] = spec.detect
    return _STATE["detector"]


def _landmarker(spec: WorkerSpec) -> Landmarker:
    """The process's landmarker, built once from ``spec.landmarker``.

    Raises:
        ValueError: the crop settings need landmarks but the spec brings no landmarker.
    """
    if spec.landmarker is None:
        raise ValueError("detect.crop.box is landmarks but no landmarker was given")
    if _STATE["landmarker"] is None:
        _STATE["landmarker"] = spec.landmarker()
    return _STATE["landmarker"]


def init_worker(spec: WorkerSpec) -> None:
    """Process-pool initializer: one OpenCV thread per process, model loaded up front."""
    import cv2

    if spec.cv_threads:
        cv2.setNumThreads(spec.cv_threads)
    if spec.needs_detector:
        _detector(spec)


def write_crops(image_rgb: Any, image_id: str, faces: list[Face], spec: WorkerSpec) -> int:
    """Write the missing crops of the faces the policy keeps; returns how many were written.

    Cut by ``detect.crop``'s recipe (:class:`fer.faces.recipes.FaceCutter`; with
    ``box: landmarks`` the landmarks of those faces are found first).
    """
    import cv2

    from fer.faces.recipes import FaceCutter, FaceRecipe
    from fer.io import atomic_path

    # Same name = same content, settings and face: the stage wipes the dir whenever crop or
    # detection settings change, and writes are atomic (never partial).
    missing = [
        (index, target)
        for index in kept_indices(faces, spec.crop.policy)
        if not (target := Path(spec.crops_dir) / crop_name(image_id, index)).is_file()
    ]
    if not missing:
        return 0
    recipe = FaceRecipe.from_crop(spec.crop)
    cutter = FaceCutter(recipe, _landmarker(spec) if recipe.needs_landmarks else None)
    crops = cutter.cut(image_rgb, [faces[index] for index, _ in missing])
    written = 0
    for (_, target), crop in zip(missing, crops, strict=True):
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {target}")
        written += 1
    return written


def process_batch(spec: WorkerSpec, tasks: list[Task]) -> list[Result]:
    """Decode, detect (unless cached) and crop each task; never raises for one bad image."""
    from fer.data.images import DecodeError, load_rgb

    out: list[Result] = []
    for task in tasks:
        result = Result(task.image_id)
        try:
            image = load_rgb(task.path, max_pixels=spec.max_pixels)
        except DecodeError as exc:
            # Same bytes always fail the same way: safe to cache.
            result.error = f"decode:{exc.reason}: {exc}"
            result.detected = task.faces is None
            out.append(result)
            continue
        except Exception as exc:
            result.error, result.cacheable = f"{type(exc).__name__}: {exc}", False
            out.append(result)
            continue
        if task.faces is None:
            result.detected = True
            try:
                result.faces = _detector(spec).detect(image)  # built once per process
            except Exception as exc:
                result.error, result.cacheable = f"{type(exc).__name__}: {exc}", False
                out.append(result)
                continue
        else:
            result.faces = list(task.faces)
        try:
            result.crops_written = write_crops(image, task.image_id, result.faces, spec)
        except Exception as exc:
            result.crop_error = f"crop: {type(exc).__name__}: {exc}"
        out.append(result)
    return out


def crashed(batch: list[Task], why: str) -> list[Result]:
    """Every task of ``batch`` as failed with ``why`` (not cached: the crash may not recur)."""
    return [Result(t.image_id, error=f"worker crashed: {why}", cacheable=False) for t in batch]

"""`fer predict` helpers: expand inputs, batch faces across images, build records, annotate.

The pipeline per image is decode → detect → crop (``fer.faces.crops.crop_face``, the same crops
training used) → classify (``FaceClassifier``, which runs ``fer.learning.preprocess``).
Faces of many images are classified together in batches of ``predict.batch_size``, while only
that many images are held in memory at a time. The JSON record of one image follows DESIGN.md §3::

    {"path": str, "faces": [{"box": [x, y, w, h], "score": float,
                             "probs": {"positive": p, "negative": p, "neutral": p},
                             "label": str}], "error": str}   # "error" only when unreadable
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fer import CLASSES

if TYPE_CHECKING:
    from fer.config import CropConfig
    from fer.faces.detectors import Detector, Face
    from fer.faces.recipes import FaceCutter

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"})
# Files that are never photos; skipped in folders without a record (everything else found in a
# folder is tried as an image: the decoder, not the file name, decides what is an image).
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
ANNOTATED_SUFFIX = ".annotated"

# BGR-free RGB colours per label; unknown labels get grey.
COLORS: dict[str, tuple[int, int, int]] = {
    "positive": (40, 200, 60),
    "negative": (230, 50, 50),
    "neutral": (70, 140, 255),
}


@dataclass(frozen=True)
class InputItem:
    """One file to predict on; ``rel`` names its output (relative to the output folder)."""

    path: Path
    kind: Literal["image", "video", "missing"]
    rel: Path


def expand_inputs(paths: Iterable[Path]) -> list[InputItem]:
    """Files to process, in the given order; folders are walked recursively, sorted.

    Video is recognised by suffix; any other file is an image candidate. Inside folders,
    hidden files and OS junk are skipped. A path that does not exist becomes a ``missing``
    item (reported per file, not raised). Output names keep the sub-folder of files found in a
    folder, and clashes (``a.jpg`` and ``a.png``) get ``-2``, ``-3``.
    """
    items: list[InputItem] = []
    used: set[str] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.name.lower() not in JUNK_NAMES
            )
            for f in files:
                items.append(_item(f, f.relative_to(path).with_suffix(""), used))
        elif path.exists():
            items.append(_item(path, Path(path.stem), used))
        else:
            items.append(InputItem(path, "missing", Path(path.stem)))
    return items


def _item(path: Path, stem: Path, used: set[str]) -> InputItem:
    kind: Literal["image", "video"] = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
    rel, n = stem, 1
    while rel.as_posix().lower() in used:
        n += 1
        rel = stem.with_name(f"{stem.name}-{n}")
    used.add(rel.as_posix().lower())
    return InputItem(path, kind, rel)


def annotated_path(out_dir: Path, item: InputItem, suffix: str = ".jpg") -> Path:
    """``<out>/<rel>.annotated<suffix>`` (``.jpg`` for images, ``.mp4``/``.avi`` for video)."""
    return out_dir / item.rel.with_name(item.rel.name + ANNOTATED_SUFFIX + suffix)


def face_record(face: Face, probs: Sequence[float], classes: Sequence[str] = CLASSES) -> dict:
    """One face of the JSON contract; ``label`` is the most probable class."""
    values = [float(p) for p in probs]
    return {
        "box": [int(face.x), int(face.y), int(face.w), int(face.h)],
        "score": round(float(face.score), 6),
        "probs": {c: round(v, 6) for c, v in zip(classes, values, strict=True)},
        "label": classes[int(np.argmax(values))],
    }


def image_record(path: Path | str, faces: list[dict], error: str | None = None) -> dict:
    """The per-image record; ``error`` is present only when the file could not be used."""
    rec: dict[str, Any] = {"path": str(path), "faces": faces}
    if error is not None:
        rec["error"] = error
    return rec


def classify_crops(classifier: Any, crops: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """Probabilities ``(N, 3)`` for uint8 crops, ``batch_size`` at a time."""
    if not crops:
        return np.zeros((0, len(CLASSES)), dtype=np.float32)
    out = []
    for start in range(0, len(crops), batch_size):
        batch = crops[start : start + batch_size]  # an ensemble's crops are tuples: no stack
        out.append(np.asarray(classifier.predict_proba(batch), dtype=np.float32))
    return np.concatenate(out)


@dataclass
class ImageResult:
    """A processed image: the decoded pixels (None on error) and its JSON record."""

    item: InputItem
    image: np.ndarray | None
    record: dict


Found = tuple[InputItem, "np.ndarray | None", "list[Face]", "str | None"]
"""An image's item, pixels (None: not decoded), faces and error (None: fine)."""


def predict_images(
    items: Iterable[InputItem],
    *,
    load: Callable[[Path], np.ndarray],
    detector: Detector,
    classifier: Any,
    crop: FaceCutter | CropConfig,
    batch_size: int,
    ahead: Sequence[Detector] = (),
) -> Iterator[ImageResult]:
    """Decode, detect and crop image after image; classify the crops of up to ``batch_size``
    images (or faces) in one batch; yield results in input order.

    ``load`` must raise ``fer.data.images.DecodeError`` for unusable files: that image gets
    an ``error`` record and the others go on. ``batch_size == 1`` classifies image by image.
    ``ahead``: detectors set up like ``detector`` (it may be one of them) that decode and
    detect the next images in worker threads, one each
    (:class:`~fer.prediction.ahead.DetectorPool`), while this thread classifies a few images at
    a time (:func:`~fer.prediction.ahead.batch_with`); the records are the same.
    """
    from fer.faces.recipes import as_cutter
    from fer.prediction.ahead import batch_with

    cutter = as_cutter(crop)
    classes = tuple(getattr(classifier, "classes", CLASSES))
    pending: list[Found] = []
    n_faces = 0
    per_batch = batch_with(len(ahead), batch_size)

    def flush() -> Iterator[ImageResult]:
        cut = cutter.cut_many([(image, faces) for _, image, faces, _ in pending if faces])
        probs = classify_crops(classifier, [c for crops in cut for c in crops], batch_size)
        i = 0
        for item, image, faces, error in pending:
            recs = [face_record(f, probs[i + k], classes) for k, f in enumerate(faces)]
            i += len(faces)
            yield ImageResult(item, image, image_record(item.path, recs, error))
        pending.clear()

    for found in _found_faces(items, load, detector, ahead):
        pending.append(found)
        n_faces += len(found[2])
        if len(pending) >= per_batch or n_faces >= batch_size:
            yield from flush()
            n_faces = 0
    if pending:
        yield from flush()


def _found_faces(
    items: Iterable[InputItem],
    load: Callable[[Path], np.ndarray],
    detector: Detector,
    ahead: Sequence[Detector],
) -> Iterator[Found]:
    """Each item decoded and detected, in order: here, or in ``ahead``'s workers, which run
    one image more ahead than there are workers."""
    if not ahead:
        for item in items:
            yield _load_and_detect(detector, item, load=load)
        return
    from fer.prediction.ahead import DetectorPool

    pool = DetectorPool(ahead)
    try:
        for _, found in pool.in_order(partial(_load_and_detect, load=load), items):
            yield found
    finally:
        pool.close()


def _load_and_detect(
    detector: Detector, item: InputItem, *, load: Callable[[Path], np.ndarray]
) -> Found:
    from fer.data.images import DecodeError

    try:
        image = load(item.path)
    except DecodeError as exc:
        msg = str(exc).removeprefix(f"{item.path}: ")
        return item, None, [], f"{exc.reason}: {msg}"
    try:
        return item, image, detector.detect(image), None
    except Exception as exc:  # one odd image must not end the run
        return item, image, [], f"detect_error: {exc}"


def annotate(image_rgb: np.ndarray, faces: Sequence[dict]) -> np.ndarray:
    """A copy of the image with each face's box, label and class probabilities drawn.

    Text size follows the face size (within limits), so small and large faces stay readable.
    """
    import cv2

    out = np.ascontiguousarray(image_rgb.copy())
    height, width = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in faces:
        x, y, w, h = (int(v) for v in face["box"])
        label = face.get("label", "")
        color = COLORS.get(label, (200, 200, 200))
        thick = max(1, round(min(height, width) / 240))
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick, cv2.LINE_AA)
        scale = float(np.clip(w / 160.0, 0.35, 1.2))
        text_thick = max(1, round(scale * 2))
        probs = face.get("probs", {})
        lines = [(f"{label} {probs.get(label, 0.0):.2f}", color, True)]
        lines += [
            (f"{c[:3]} {float(p):.2f}", COLORS.get(c, color), False) for c, p in probs.items()
        ]
        (_, th), base = cv2.getTextSize("Ag", font, scale, text_thick)
        line_h = th + base + 4
        block_h = line_h * len(lines)
        # Above the box when it fits, else below it, else inside it (never over the face
        # unless the image leaves no room).
        if y - block_h - thick >= 0:
            top = y - block_h - thick
        elif y + h + thick + block_h <= height:
            top = y + h + thick
        else:
            top = y + thick
        for i, (text, col, head) in enumerate(lines):
            (tw, _), _ = cv2.getTextSize(text, font, scale, text_thick)
            y0 = top + i * line_h
            x0 = int(np.clip(x, 0, max(0, width - tw - 4)))
            bg = col if head else (0, 0, 0)
            cv2.rectangle(out, (x0, y0), (x0 + tw + 4, y0 + line_h), bg, -1)
            if not head:  # probability bar under the text
                frac = float(probs.get(_full(text, probs), 0.0))
                cv2.rectangle(
                    out, (x0, y0 + line_h - 3), (x0 + int((tw + 4) * frac), y0 + line_h), col, -1
                )
            fg = (0, 0, 0) if head else (255, 255, 255)
            cv2.putText(out, text, (x0 + 2, y0 + th + 2), font, scale, fg, text_thick, cv2.LINE_AA)
    return out


def _full(text: str, probs: dict) -> str:
    """The class a ``"pos 0.91"`` line stands for."""
    short = text.split(" ", 1)[0]
    return next((c for c in probs if c.startswith(short)), short)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image (written atomically by the stage)."""
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()

"""Video for `fer predict`: stream frames, detect every N frames, track between, classify, write.

Frames are read and written one at a time (only a small chunk is held, for batched
classification), so memory does not grow with the video length. Detection runs on every
``detect_every``-th frame; in between, each box moves on at the velocity measured between its
last two detections (constant-velocity prediction; a new track stands still). New detections
are matched to tracks by IoU, so a face keeps its ``track`` id across the video. (The headless
OpenCV build offers only TrackerMIL without extra model files; at tens of ms per face it costs
more than re-detecting.) Faces are re-classified on every frame.

The video record (one per video in ``--json``) replaces the per-image ``faces`` with
per-frame lists::

    {"path", "video": {"fps", "width", "height", "frames", "detect_every", "annotated"},
     "frames": [{"frame": i, "time_s": t, "detected": bool,
                 "faces": [{"box", "score", "probs", "label", "track"}]}],
     "tracks": [{"track", "first_frame", "last_frame", "frames", "probs", "label"}]}
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES
from fer.errors import InputError
from fer.prediction.predict import annotate, classify_crops, face_record

if TYPE_CHECKING:
    from fer.config import CropConfig
    from fer.faces.detectors import Detector, Face

# (fourcc, suffix) in order of preference; the first this OpenCV build can write is used.
CODECS: tuple[tuple[str, str], ...] = (("mp4v", ".mp4"), ("MJPG", ".avi"))
CHUNK_FRAMES = 16  # frames held at once for one classification batch
DEFAULT_FPS = 25.0


@dataclass
class Track:
    """A face followed across frames: its current box, last detection and velocity."""

    id: int
    face: Face  # box on the current frame (detected or predicted)
    first: int
    last: int
    det: Face | None = None  # last detected box, at frame ``det_frame``
    det_frame: int = 0
    vx: float = 0.0  # px per frame, from the last two detections
    vy: float = 0.0
    n: int = 0
    prob_sum: np.ndarray | None = None

    def observe(self, face: Face, frame: int) -> None:
        """Take a fresh detection; update the velocity from the previous one."""
        if self.det is not None and frame > self.det_frame:
            dt = frame - self.det_frame
            self.vx = (face.x + face.w / 2 - self.det.x - self.det.w / 2) / dt
            self.vy = (face.y + face.h / 2 - self.det.y - self.det.h / 2) / dt
        self.face, self.det, self.det_frame, self.last = face, face, frame, frame

    def predict(self, frame: int, width: int, height: int) -> Face:
        """The box expected on ``frame``: the last detection moved at constant velocity."""
        from fer.faces.detectors import Face

        base = self.det or self.face
        dt = frame - self.det_frame
        x = round(min(max(base.x + self.vx * dt, 0), max(0, width - base.w)))
        y = round(min(max(base.y + self.vy * dt, 0), max(0, height - base.h)))
        return Face(x, y, base.w, base.h, base.score)


def iou(a: Face, b: Face) -> float:
    """Intersection over union of two boxes."""
    x1, y1 = max(a.x, b.x), max(a.y, b.y)
    x2, y2 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def match_tracks(
    tracks: list[Track],
    faces: list[Face],
    frame: int,
    next_id: int,
    *,
    min_iou: float = 0.3,
    max_shift: float = 0.8,
) -> tuple[list[Track], int]:
    """Greedy matching of fresh detections to tracks (``track.face``: the predicted box).

    A pair matches when its IoU reaches ``min_iou``, or, for a face that moved fast, when the
    centres are closer than ``max_shift`` × the box side and the sizes are within 2× (two
    distinct faces side by side are about one side apart). A matched track takes the new box;
    an unmatched detection starts a track; an unmatched track ends. Returns the live tracks
    (in detection order) and the next free id.
    """
    pairs = []
    for ti, t in enumerate(tracks):
        for fi, f in enumerate(faces):
            overlap, shift = iou(t.face, f), _shift(t.face, f)
            ratio = (f.w * f.h) / max(1, t.face.w * t.face.h)
            if overlap >= min_iou or (shift < max_shift and 0.5 <= ratio <= 2.0):
                pairs.append((overlap, -shift, ti, fi))
    pairs.sort(reverse=True)
    taken_t: set[int] = set()
    owner: dict[int, Track] = {}
    for _, _, ti, fi in pairs:
        if ti in taken_t or fi in owner:
            continue
        taken_t.add(ti)
        tracks[ti].observe(faces[fi], frame)
        owner[fi] = tracks[ti]
    live: list[Track] = []
    for fi, face in enumerate(faces):
        if fi not in owner:
            owner[fi] = Track(next_id, face, first=frame, last=frame, det=face, det_frame=frame)
            next_id += 1
        live.append(owner[fi])
    return live, next_id


def _shift(a: Face, b: Face) -> float:
    """Distance between box centres over the larger box side."""
    dx = (a.x + a.w / 2) - (b.x + b.w / 2)
    dy = (a.y + a.h / 2) - (b.y + b.h / 2)
    return float(np.hypot(dx, dy)) / max(1, a.w, a.h, b.w, b.h)


@functools.lru_cache(maxsize=1)
def video_codec() -> tuple[str, str]:
    """The first ``(fourcc, suffix)`` of :data:`CODECS` this OpenCV build can write."""
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        for fourcc, suffix in CODECS:
            probe = str(Path(tmp) / f"probe{suffix}")
            writer = cv2.VideoWriter(probe, cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
            ok = writer.isOpened()
            writer.release()
            if ok:
                return fourcc, suffix
    raise InputError("this OpenCV build cannot write video (tried mp4v .mp4 and MJPG .avi)")


def _frames(cap: Any) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        yield frame


def process_video(
    path: Path,
    out_path: Path | None,
    *,
    detector: Detector,
    classifier: Any,
    crop: CropConfig,
    detect_every: int = 1,
    batch_size: int = 64,
    max_frames: int | None = None,
) -> dict:
    """Predict on every frame of a video; write the annotated video to ``out_path``.

    ``out_path`` is written atomically (its suffix should come from :func:`video_codec`);
    None skips writing (benchmarks). Returns the video record described in the module doc.

    Raises:
        InputError: the video cannot be opened or holds no decodable frame.
    """
    import cv2

    from fer.faces.crops import crop_face
    from fer.io import atomic_path

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: cannot open video (unsupported codec or not a video file)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and fps == fps and 0 < fps < 1000 else DEFAULT_FPS
    classes = tuple(getattr(classifier, "classes", CLASSES))
    state: dict[str, Any] = {"tracks": [], "next_id": 0, "writer": None, "size": None}
    frames_out: list[dict] = []
    all_tracks: dict[int, Track] = {}

    # Each chunk entry keeps (track, box) pairs: a track's box moves on before the chunk is
    # classified, so the box of that frame must be captured when the frame is read.
    Held = list[tuple[Track, "Face"]]

    def flush(chunk: list[tuple[int, np.ndarray, Held, bool]], tmp: Path | None) -> None:
        crops = [crop_face(rgb, f, crop) for _, rgb, held, _ in chunk for _, f in held]
        probs = classify_crops(classifier, crops, batch_size)
        k = 0
        for idx, rgb, held, detected in chunk:
            faces = []
            for t, face in held:
                rec = face_record(face, probs[k], classes)
                rec["track"] = t.id
                t.n += 1
                t.prob_sum = probs[k].astype(np.float64) + (
                    t.prob_sum if t.prob_sum is not None else 0.0
                )
                faces.append(rec)
                k += 1
            frames_out.append(
                {"frame": idx, "time_s": round(idx / fps, 3), "detected": detected, "faces": faces}
            )
            if tmp is not None:
                _write(state, tmp, fps, cv2.cvtColor(annotate(rgb, faces), cv2.COLOR_RGB2BGR))
        chunk.clear()

    def loop(tmp: Path | None) -> None:
        chunk: list[tuple[int, np.ndarray, Held, bool]] = []
        n_crops = 0
        for idx, bgr in enumerate(_frames(cap)):
            if max_frames is not None and idx >= max_frames:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            state["size"] = state["size"] or rgb.shape[:2]
            detected = idx % detect_every == 0
            for t in state["tracks"]:
                t.face = t.predict(idx, rgb.shape[1], rgb.shape[0])
            if detected:
                found = detector.detect(rgb)
                state["tracks"], state["next_id"] = match_tracks(
                    state["tracks"], found, idx, state["next_id"]
                )
            held = [(t, t.face) for t in state["tracks"]]
            for t, _ in held:
                t.last = idx
                all_tracks[t.id] = t
            chunk.append((idx, rgb, held, detected))
            n_crops += len(held)
            if len(chunk) >= CHUNK_FRAMES or n_crops >= batch_size:
                flush(chunk, tmp)
                n_crops = 0
        if chunk:
            flush(chunk, tmp)
        if state["writer"] is not None:
            state["writer"].release()
        if not frames_out:
            raise InputError(f"{path}: no frame could be decoded")

    try:
        if out_path is None:
            loop(None)
        else:
            with atomic_path(out_path) as tmp:
                loop(tmp)
    finally:
        cap.release()
        if state["writer"] is not None:
            state["writer"].release()
    height, width = state["size"]
    return {
        "path": str(path),
        "video": {
            "fps": round(fps, 3),
            "width": width,
            "height": height,
            "frames": len(frames_out),
            "detect_every": detect_every,
            "annotated": str(out_path) if out_path is not None else None,
        },
        "frames": frames_out,
        "tracks": [_track_summary(t, classes) for t in all_tracks.values() if t.n],
    }


def _write(state: dict[str, Any], tmp: Path, fps: float, frame_bgr: np.ndarray) -> None:
    """Open the writer on the first frame (its real size), then append frames."""
    import cv2

    if state["writer"] is None:
        fourcc, _ = video_codec()
        height, width = frame_bgr.shape[:2]
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if not writer.isOpened():
            raise InputError(f"{tmp}: cannot open a {fourcc} video writer")
        state["writer"], state["size"] = writer, (height, width)
    state["writer"].write(frame_bgr)


def _track_summary(t: Track, classes: tuple[str, ...]) -> dict:
    mean = (t.prob_sum / t.n) if t.prob_sum is not None else np.zeros(len(classes))
    return {
        "track": t.id,
        "first_frame": t.first,
        "last_frame": t.last,
        "frames": t.n,
        "probs": {c: round(float(p), 4) for c, p in zip(classes, mean, strict=True)},
        "label": classes[int(np.argmax(mean))],
    }

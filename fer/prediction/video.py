"""Video for `fer predict`: stream frames, detect every N frames, track between, classify, write.

Frames are read and written one at a time (only a small chunk is held, for batched
classification), so memory does not grow with the video length. Detection runs on every
``detect_every``-th frame; in between, each box moves on at the velocity measured between its
last two detections (constant-velocity prediction; a new track stands still). New detections
are matched to tracks by IoU, so a face keeps its ``track`` id across the video. (The headless
OpenCV build offers only TrackerMIL without extra model files; at tens of ms per face it costs
more than re-detecting.) Faces are re-classified on every frame.

With ``ahead`` detectors (``predict.detect_workers``) a few frames are read in advance and
detected in worker threads (:mod:`fer.prediction.ahead`) while the main thread finds
landmarks, classifies and writes the frames before them, a few at a time. The records are the
same as without workers; a camera's picture lags by one frame more than there are workers.

The video record (one per video in ``--json``) replaces the per-image ``faces`` with
per-frame lists::

    {"path", "video": {"fps", "width", "height", "frames", "detect_every", "annotated"},
     "frames": [{"frame": i, "time_s": t, "detected": bool,
                 "faces": [{"box", "score", "probs", "label", "track"}]}],
     "tracks": [{"track", "first_frame", "last_frame", "frames", "probs", "label"}]}
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES
from fer.errors import InputError
from fer.faces.scoring import iou
from fer.prediction.ahead import DetectorPool, batch_with
from fer.prediction.predict import annotate, classify_crops, face_record

if TYPE_CHECKING:
    from fer.config import CropConfig
    from fer.faces.detectors import Detector, Face
    from fer.faces.recipes import FaceCutter

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
            overlap, shift = iou(t.face.box, f.box), _shift(t.face, f)
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


FrameSink = Callable[[np.ndarray], None]
"""Receives each annotated BGR frame in order: a video writer, a window."""


class VideoWriterSink:
    """Writes annotated frames to a file, opening the writer on the first frame (its size)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self.writer = path, fps, None

    def __call__(self, frame_bgr: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            fourcc, _ = video_codec()
            height, width = frame_bgr.shape[:2]
            size = (width, height)
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc),
                                          self.fps, size)  # fmt: skip
            if not self.writer.isOpened():
                raise InputError(f"{self.path}: cannot open a {fourcc} video writer")
        self.writer.write(frame_bgr)

    def close(self) -> None:
        """Release the writer (idempotent)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None


class VideoRun:
    """One video's state: tracks, the chunk of frames awaiting classification, the records.

    :meth:`feed` takes frames in order (detecting every ``detect_every``-th, predicting the
    boxes in between); chunks are classified together and handed to the sinks in order.
    """

    def __init__(
        self,
        *,
        detector: Detector,
        classifier: Any,
        crop: FaceCutter | CropConfig,
        fps: float,
        detect_every: int,
        batch_size: int,
        sinks: list[FrameSink],
        chunk_frames: int = CHUNK_FRAMES,
    ) -> None:
        self.detector, self.classifier, self.crop = detector, classifier, crop
        self.fps, self.detect_every, self.batch_size = fps, detect_every, batch_size
        self.chunk_frames = chunk_frames
        self.sinks = sinks
        self.classes = tuple(getattr(classifier, "classes", CLASSES))
        self.tracks: list[Track] = []
        self.next_id = 0
        self.all_tracks: dict[int, Track] = {}
        self.frames: list[dict] = []
        self.size: tuple[int, int] | None = None
        # Each chunk entry keeps (track, box) pairs: a track's box moves on before the chunk
        # is classified, so the box of that frame must be captured when the frame is read.
        self.chunk: list[tuple[int, np.ndarray, list[tuple[Track, Face]], bool]] = []
        self.pending_crops = 0

    def detects(self, idx: int) -> bool:
        """Whether frame ``idx`` is one the detector sees."""
        return idx % self.detect_every == 0

    def feed(self, idx: int, rgb: np.ndarray, found: list[Face] | None = None) -> None:
        """Track (and every ``detect_every`` frames detect) the faces of frame ``idx``.

        ``found``: the frame's detections when they were made ahead (``ahead`` detectors).
        """
        self.size = self.size or rgb.shape[:2]
        detected = self.detects(idx)
        for t in self.tracks:
            t.face = t.predict(idx, rgb.shape[1], rgb.shape[0])
        if detected:
            found = self.detector.detect(rgb) if found is None else found
            self.tracks, self.next_id = match_tracks(self.tracks, found, idx, self.next_id)
        held = [(t, t.face) for t in self.tracks]
        for t, _ in held:
            t.last = idx
            self.all_tracks[t.id] = t
        self.chunk.append((idx, rgb, held, detected))
        self.pending_crops += len(held)
        if len(self.chunk) >= self.chunk_frames or self.pending_crops >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Classify the held frames' faces; record and emit each frame."""
        import cv2

        from fer.faces.recipes import as_cutter

        cutter = as_cutter(self.crop)
        frames = [(rgb, [f for _, f in held]) for _, rgb, held, _ in self.chunk]
        per_frame = cutter.cut_many(frames)
        crops = [c for frame_crops in per_frame for c in frame_crops]
        probs = classify_crops(self.classifier, crops, self.batch_size)
        k = 0
        for idx, rgb, held, detected in self.chunk:
            faces = []
            for t, face in held:
                faces.append({**face_record(face, probs[k], self.classes), "track": t.id})
                t.n += 1
                t.prob_sum = probs[k].astype(np.float64) + (
                    t.prob_sum if t.prob_sum is not None else 0.0
                )
                k += 1
            record = {"frame": idx, "time_s": round(idx / self.fps, 3), "detected": detected,
                      "faces": faces}  # fmt: skip
            self.frames.append(record)
            if self.sinks:
                bgr = cv2.cvtColor(annotate(rgb, faces), cv2.COLOR_RGB2BGR)
                for sink in self.sinks:
                    sink(bgr)
        self.chunk.clear()
        self.pending_crops = 0

    def record(self, path: str, annotated: Path | None) -> dict:
        """The video record of the module doc."""
        height, width = self.size or (0, 0)
        return {
            "path": path,
            "video": {
                "fps": round(self.fps, 3),
                "width": width,
                "height": height,
                "frames": len(self.frames),
                "detect_every": self.detect_every,
                "annotated": str(annotated) if annotated is not None else None,
            },
            "frames": self.frames,
            "tracks": [_track_summary(t, self.classes) for t in self.all_tracks.values() if t.n],
        }


def open_capture(source: Path | int) -> Any:
    """``cv2.VideoCapture`` on a file or a camera index, with the fps it reports.

    Raises:
        InputError: it cannot be opened.
    """
    import cv2

    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        cap.release()
        what = f"camera {source}" if isinstance(source, int) else str(source)
        why = (
            "no such camera, or no access"
            if isinstance(source, int)
            else ("unsupported codec or not a video file")
        )
        raise InputError(f"{what}: cannot open video ({why})")
    return cap


def process_video(
    path: Path | int,
    out_path: Path | None,
    *,
    detector: Detector,
    classifier: Any,
    crop: FaceCutter | CropConfig,
    detect_every: int = 1,
    batch_size: int = 64,
    max_frames: int | None = None,
    extra_sinks: list[FrameSink] | None = None,
    ahead: Sequence[Detector] = (),
) -> dict:
    """Predict on every frame of a video file or camera; write the annotated video to ``out_path``.

    ``out_path`` is written atomically (its suffix should come from :func:`video_codec`);
    None skips writing. ``extra_sinks`` also see every annotated frame (a live window); one
    that raises :class:`StopIteration` ends the video early (a window closed with ``q``).
    ``ahead``: detectors set up like ``detector`` (it may be one of them) that detect frames
    ahead in worker threads, one each (:class:`~fer.prediction.ahead.DetectorPool`); empty:
    ``detector`` detects in this thread. Returns the video record described in the module doc.

    Raises:
        InputError: the video cannot be opened or holds no decodable frame.
    """
    import contextlib

    import cv2

    from fer.io import atomic_path

    cap = open_capture(path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and fps == fps and 0 < fps < 1000 else DEFAULT_FPS
    writer = None
    try:
        with atomic_path(out_path) if out_path is not None else contextlib.nullcontext() as tmp:
            writer = VideoWriterSink(tmp, fps) if tmp is not None else None
            run = VideoRun(
                detector=detector, classifier=classifier, crop=crop, fps=fps,
                detect_every=detect_every, batch_size=batch_size,
                sinks=[s for s in (writer, *(extra_sinks or [])) if s is not None],
                chunk_frames=batch_with(len(ahead), CHUNK_FRAMES),
            )  # fmt: skip
            _play(cap, run, max_frames, ahead)
            if not run.frames:
                raise InputError(f"{path}: no frame could be decoded")
            if writer is not None:
                writer.close()
    finally:
        cap.release()
        if writer is not None:
            writer.close()
    return run.record(str(path), out_path)


def _play(cap: Any, run: VideoRun, max_frames: int | None, ahead: Sequence[Detector] = ()) -> None:
    """Feed every frame (up to ``max_frames``); a sink raising StopIteration ends it early.

    With ``ahead`` detectors, the frames to detect are detected in workers, up to
    ``len(ahead) + 1`` frames ahead of the one fed.
    """
    import cv2

    rgb_frames = (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for bgr in _frames(cap))
    frames = enumerate(itertools.islice(rgb_frames, max_frames))
    pool = DetectorPool(ahead) if ahead else None

    def detect(detector: Detector, frame: tuple[int, np.ndarray]) -> list[Face] | None:
        return detector.detect(frame[1]) if run.detects(frame[0]) else None

    fed = pool.in_order(detect, frames) if pool else ((frame, None) for frame in frames)
    try:
        with contextlib.suppress(StopIteration):
            for (idx, rgb), found in fed:
                run.feed(idx, rgb, found)
            if run.chunk:
                run.flush()
    finally:
        if pool is not None:
            pool.close()


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

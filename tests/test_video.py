"""`fer predict` on video: a generated clip round-trip, detect-every-N with tracking, bad video,
and the track matching rules.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_predict import REPO, train_tiny_model

from fer import CLASSES
from fer.config import config_from_dict
from fer.errors import InputError
from fer.faces.detectors import Face
from fer.faces.scoring import iou
from fer.prediction.video import match_tracks

N_FRAMES, WIDTH, HEIGHT, STEP = 10, 320, 240, 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 frames, 320×240, the astronaut's face sliding right by 8 px a frame."""
    import skimage.data

    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[0:256, 100:356],
                      (160, 160))  # fmt: skip
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(N_FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        frame[40:200, 40 + STEP * i : 200 + STEP * i] = face
        writer.write(frame)
    writer.release()
    return path


def _cfg(detect_every: int = 1):
    taxonomy = yaml.safe_load((REPO / "params.yaml").read_text())["taxonomy"]
    return config_from_dict(
        {"taxonomy": taxonomy, "predict": {"detect_every": detect_every, "batch_size": 4}}
    )


def _read_back(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_video_round_trip(model_dir: Path, clip: Path, tmp_path: Path) -> None:
    from fer.prediction.video import video_codec
    from fer.stages.predict import run

    result = run(_cfg(1), paths=[clip], model=str(model_dir), out=tmp_path, json=False)
    (rec,) = result["records"]
    assert rec["video"]["frames"] == N_FRAMES and rec["video"]["fps"] == pytest.approx(10.0)
    assert (rec["video"]["width"], rec["video"]["height"]) == (WIDTH, HEIGHT)
    annotated = tmp_path / f"clip.annotated{video_codec()[1]}"
    assert rec["video"]["annotated"] == str(annotated)
    frames = _read_back(annotated)
    assert len(frames) == N_FRAMES and frames[0].shape == (HEIGHT, WIDTH, 3)
    assert [f["frame"] for f in rec["frames"]] == list(range(N_FRAMES))
    xs = []
    for f in rec["frames"]:
        assert f["detected"] is True
        assert len(f["faces"]) == 1, f
        face = f["faces"][0]
        assert face["track"] == 0  # one face, one track for the whole clip
        assert list(face["probs"]) == list(CLASSES)
        assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        xs.append(face["box"][0])
    assert xs[-1] - xs[0] == pytest.approx(STEP * (N_FRAMES - 1), abs=12)  # follows the face
    (track,) = rec["tracks"]
    assert track["frames"] == N_FRAMES and track["label"] in CLASSES
    # Boxes and labels were drawn: annotated frames differ from the input frames.
    source = _read_back(clip)
    assert np.abs(frames[5].astype(int) - source[5].astype(int)).mean() > 0.5
    assert not list(tmp_path.glob(".*tmp*"))


def test_detect_every_n_predicts_boxes_between(
    model_dir: Path, clip: Path, tmp_path: Path
) -> None:
    from fer.stages.predict import run

    every = run(_cfg(1), paths=[clip], model=str(model_dir), out=tmp_path / "a", json=False)
    sparse = run(_cfg(4), paths=[clip], model=str(model_dir), out=tmp_path / "b", json=False)
    a, b = every["records"][0]["frames"], sparse["records"][0]["frames"]
    assert [f["detected"] for f in b] == [i % 4 == 0 for i in range(N_FRAMES)]
    for fa, fb in zip(a, b, strict=True):
        assert len(fb["faces"]) == 1 and fb["faces"][0]["track"] == 0
        box_a, box_b = (f["faces"][0]["box"] for f in (fa, fb))
        if fb["frame"] < 4:  # one detection so far: no velocity yet, the box is held
            assert fb["faces"][0]["box"] == b[0]["faces"][0]["box"]
        else:  # constant-velocity prediction keeps the box on the moving face
            assert iou(box_a, box_b) > 0.8, (fa["frame"], box_a, box_b)
    assert len(_read_back(tmp_path / "b" / Path(sparse["records"][0]["video"]["annotated"]).name)
               ) == N_FRAMES  # fmt: skip


def test_unopenable_video_is_reported(model_dir: Path, clip: Path, tmp_path: Path) -> None:
    from fer.stages.predict import run

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 20)
    with pytest.raises(InputError, match="cannot open video"):
        run(_cfg(), paths=[bad], model=str(model_dir), out=tmp_path / "o", json=False)
    result = run(_cfg(), paths=[bad, clip], model=str(model_dir), out=tmp_path / "o", json=False)
    first, second = result["records"]
    assert first["error"].startswith("video: cannot open video") and first["frames"] == []
    assert "error" not in second and len(second["frames"]) == N_FRAMES
    assert not (tmp_path / "o" / "broken.annotated.mp4").exists()


def test_match_tracks_keeps_ids() -> None:
    left, right = Face(10, 10, 50, 50, 0.9), Face(200, 10, 50, 50, 0.9)
    tracks, next_id = match_tracks([], [left, right], frame=0, next_id=0)
    assert [t.id for t in tracks] == [0, 1]
    # Detection order flips and both moved a little: ids follow the faces.
    moved = [Face(205, 12, 50, 50, 0.9), Face(14, 10, 50, 50, 0.9)]
    tracks, next_id = match_tracks(tracks, moved, frame=1, next_id=next_id)
    assert [t.id for t in tracks] == [1, 0] and next_id == 2
    assert tracks[1].vx == pytest.approx(4.0)
    # A fast move (no overlap left) within 0.8 side still matches; a far face is new.
    far = [Face(50, 12, 50, 50, 0.9), Face(100, 180, 50, 50, 0.9)]
    tracks, next_id = match_tracks(tracks[1:], far, frame=2, next_id=next_id)
    assert [t.id for t in tracks] == [0, 2] and next_id == 3
    # A face of very different size is not the same track.
    tracks, _ = match_tracks(tracks[:1], [Face(40, 0, 150, 150, 0.9)], frame=3, next_id=3)
    assert [t.id for t in tracks] == [3]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sink_can_stop_the_video_early(
    model_dir: Path, clip: Path, tmp_path: Path, workers: int
) -> None:
    """What a live window does on `q`: the frames so far are kept and written, also while
    workers detect the next frames ahead."""
    from fer.faces.detectors import create_detector
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.video import process_video, video_codec

    seen: list[np.ndarray] = []

    def stop_after_three(frame_bgr: np.ndarray) -> None:
        seen.append(frame_bgr)
        if len(seen) == 3:
            raise StopIteration

    cfg = _cfg(1)
    clf = FaceClassifier.load(model_dir, batch_size=1)
    out = tmp_path / f"early{video_codec()[1]}"
    rec = process_video(
        clip, out, detector=create_detector(cfg.detect), classifier=clf,
        crop=clf.crop_config(), batch_size=1, extra_sinks=[stop_after_three],
        ahead=[create_detector(cfg.detect) for _ in range(workers)],
    )  # fmt: skip
    assert len(seen) == 3 and seen[0].shape == (HEIGHT, WIDTH, 3)
    assert rec["video"]["frames"] == 3 and len(_read_back(out)) == 3


def test_camera_and_show_fail_in_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    from fer.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_cfg(1).model_dump(mode="json", by_alias=True)))
    base = ["predict", "--params", str(params), "--model", str(model_dir), "--out", str(tmp_path)]
    assert main([*base, "--camera", "97"]) == 2  # no such camera: the only input failed
    err = capsys.readouterr().err
    assert "camera 97: cannot open video" in err
    assert main([*base, "--camera", "97", "--show"]) == 2  # headless here: refused up front
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--show needs" in err[0]


@pytest.mark.parametrize("detect_every", [1, 3])
def test_detecting_ahead_in_workers_gives_the_same_records(
    model_dir: Path, clip: Path, tmp_path: Path, detect_every: int
) -> None:
    """Frames detected ahead in threads (each with its own SSD) = detected in the main thread:
    same boxes, tracks and probabilities, frames in order."""
    from fer.faces.detectors import create_detector
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.video import process_video

    cfg = _cfg(detect_every)
    clf = FaceClassifier.load(model_dir, batch_size=4)

    def run(ahead: list, name: str) -> dict:
        return process_video(
            clip, tmp_path / name, detector=create_detector(cfg.detect), classifier=clf,
            crop=clf.crop_config(), detect_every=detect_every, batch_size=4, ahead=ahead,
        )  # fmt: skip

    inline = run([], "inline.mp4")
    ahead = run([create_detector(cfg.detect) for _ in range(3)], "ahead.mp4")
    assert [f["frame"] for f in ahead["frames"]] == list(range(N_FRAMES))
    assert ahead["frames"] == inline["frames"] and ahead["tracks"] == inline["tracks"]
    xs = [f["faces"][0]["box"][0] for f in ahead["frames"] if f["detected"]]
    assert xs == sorted(xs) and xs[-1] > xs[0]  # the sliding face, frame after frame


def test_detect_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from fer.errors import ConfigError
    from fer.prediction.ahead import MAX_AUTO_WORKERS, batch_with, detect_workers

    assert detect_workers(0) == 0 and detect_workers(3) == 3
    # with workers, a few images per batch (the workers wait while a batch is classified)
    assert batch_with(0, 64) == 64 and batch_with(2, 64) == 4 and batch_with(2, 3) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert detect_workers("auto") == 0  # one core: nothing to overlap
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(2)), raising=False)
    assert detect_workers("auto") == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)), raising=False)
    assert detect_workers("auto") == MAX_AUTO_WORKERS
    for bad in (-1, "many"):
        with pytest.raises(ConfigError, match="detect_workers"):
            config_from_dict({**_cfg().model_dump(mode="json", by_alias=True),
                              "predict": {"detect_workers": bad}})  # fmt: skip

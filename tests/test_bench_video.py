"""The real-video benchmark's parts on tiny generated clips: frame sampling and scoring."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_video_faces
import real_faces


def _clip(path: Path, n: int) -> bytes:
    """An mp4 of ``n`` grey 64x48 frames whose brightness is 20 + 10 x the frame index."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 20 + 10 * i, np.uint8))
    writer.release()
    return path.read_bytes()


def test_video_frames_keeps_evenly_spaced_frames_in_order(tmp_path: Path) -> None:
    data = _clip(tmp_path / "c.mp4", 20)
    frames = real_faces.video_frames(data, ".mp4", 5)
    assert [i for i, _ in frames] == [0, 4, 8, 12, 16]
    for index, rgb in frames:
        assert rgb.shape == (48, 64, 3)
        assert abs(float(rgb.mean()) - (20 + 10 * index)) < 4  # the right frame, decoded
    assert len(real_faces.video_frames(data, ".mp4", 0)) == 20  # 0: every frame


def test_video_frames_of_bytes_that_are_no_video_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="no frame decoded"):
        real_faces.video_frames(b"not a video", ".mp4", 5)


def _record(path: str, faces_per_frame: list[int], tracks: int) -> dict:
    frames = [{"frame": i, "faces": [{"box": [0, 0, 9, 9]}] * n}
              for i, n in enumerate(faces_per_frame)]  # fmt: skip
    return {"path": path, "frames": frames,
            "tracks": [{"label": "neutral"} for _ in range(tracks)]}  # fmt: skip


def test_summary_counts_exact_frames_extra_and_missed_faces_and_tracks() -> None:
    res = bench_video_faces.summarize([
        _record("a.mp4", [1, 1, 1, 2], 2),
        _record("b.mpg", [1, 0, 1, 1, 1, 1], 1),
    ])  # fmt: skip
    a, b = res["clips"]
    assert (a["frames"], a["exactly_one"], a["over"], a["under"], a["tracks"]) == (
        4,
        0.75,
        1,
        0,
        2,
    )
    assert (b["frames"], b["over"], b["under"]) == (6, 0, 1)
    assert res["frames"] == 10
    assert res["exactly_one"] == pytest.approx(8 / 10)
    assert res["one_track_clips"] == 1
    assert a["counts"] == [1, 1, 1, 2]


def test_plot_draws_every_frame_of_every_case(tmp_path: Path) -> None:
    res = bench_video_faces.summarize([_record("a.mp4", [1, 2, 0], 1), _record("b.mpg", [1], 1)])
    res.update(fps=1.0, wall_s=1.0, load_end=0.0)
    bench_video_faces.plot({"off": res, "on": res}, tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 1000
    assert "2 clips, 4 frames: exactly one face on 0.5000" in bench_video_faces.table(res)


def test_a_case_must_name_an_existing_params_file(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="LABEL=PARAMS_FILE"):
        bench_video_faces._cases([f"off={tmp_path / 'missing.yaml'}"])
    (tmp_path / "p.yaml").write_text("detect: {}\n")
    assert bench_video_faces._cases([f"off={tmp_path / 'p.yaml'}"]) == {"off": tmp_path / "p.yaml"}

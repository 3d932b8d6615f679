"""Real OpenCV detectors on public-domain photos from installed packages."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.config import DetectConfig
from fer.errors import ConfigError, ModelError
from fer.faces.detectors import (
    Face,
    available_backends,
    create_detector,
    detection_scale,
    settings_hash,
    tiles,
)
from fer.faces.scoring import iou

ASTRONAUT_FACE = (179, 58, 93, 119)  # checked by eye on skimage's astronaut.png


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook as cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def ssd():
    return create_detector(DetectConfig())


def test_ssd_finds_the_astronaut(ssd) -> None:
    faces = ssd.detect(_astronaut())
    assert len(faces) == 1
    assert iou(faces[0].box, ASTRONAUT_FACE) > 0.8
    assert faces[0].score > 0.9


def test_ssd_finds_grace_hopper(ssd) -> None:
    image = _grace_hopper()
    faces = ssd.detect(image)
    assert len(faces) == 1
    f = faces[0]
    # Her face is in the upper middle of the portrait, a third of its width.
    assert 150 < f.x + f.w / 2 < 350 and 150 < f.y + f.h / 2 < 300
    assert 0.2 < f.w / image.shape[1] < 0.5


def test_haar_finds_the_astronaut() -> None:
    faces = create_detector(DetectConfig(backend="haar")).detect(_astronaut())
    assert len(faces) == 1
    assert iou(faces[0].box, ASTRONAUT_FACE) > 0.6
    assert 0.5 < faces[0].score <= 1.0


@pytest.mark.parametrize("value", [0, 127, 255])
def test_blank_images_have_no_face(ssd, value: int) -> None:
    assert ssd.detect(np.full((480, 640, 3), value, np.uint8)) == []


def test_grey_input_is_accepted(ssd) -> None:
    grey = cv2.cvtColor(_astronaut(), cv2.COLOR_RGB2GRAY)
    assert len(ssd.detect(grey)) == 1


def test_huge_image_is_downscaled_and_boxes_map_back(ssd) -> None:
    big = cv2.resize(_astronaut(), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    faces = ssd.detect(big)
    assert len(faces) == 1
    expected = tuple(v * 4 for v in ASTRONAUT_FACE)
    assert iou(faces[0].box, expected) > 0.8


def test_min_face_px_is_in_original_pixels(ssd) -> None:
    # The astronaut's face box is 93x119 px.
    assert len(create_detector(DetectConfig(min_face_px=90)).detect(_astronaut())) == 1
    assert create_detector(DetectConfig(min_face_px=100)).detect(_astronaut()) == []
    for size in ((1, 1), (5, 3), (20, 400)):
        assert ssd.detect(np.zeros((*size, 3), np.uint8)) == []


def test_long_thin_boxes_are_not_faces() -> None:
    from fer.faces.detectors import ScaledDetector

    class Fixed(ScaledDetector):
        def _raw(self, bgr: np.ndarray) -> list:
            # A square face, a 196x45 stripe (a real sandbox false positive), a 2:1 box.
            return [(10, 10, 80, 90, 0.9), (120, 200, 196, 45, 0.62), (300, 10, 100, 50, 0.8)]

    image = np.zeros((480, 640, 3), np.uint8)
    kept = [f.box for f in Fixed(DetectConfig()).detect(image)]
    assert kept == [(10, 10, 80, 90), (300, 10, 100, 50)]
    assert len(Fixed(DetectConfig(max_aspect=1.5)).detect(image)) == 1
    assert len(Fixed(DetectConfig(max_aspect=5.0)).detect(image)) == 3


def test_small_face_image_is_upscaled_for_haar() -> None:
    # A 36x36 head: the face (~20 px) is below the cascade's 24 px window at 1x.
    face = cv2.resize(_astronaut()[30:210, 140:310], (36, 36), interpolation=cv2.INTER_AREA)
    upscaled = create_detector(DetectConfig(backend="haar", upscale_below=160, min_face_px=10))
    plain = create_detector(DetectConfig(backend="haar", upscale_below=0, min_face_px=10))
    (found,) = upscaled.detect(face)
    assert plain.detect(face) == []
    assert 15 <= found.w <= 30 and found.x + found.w <= 36  # mapped back to original pixels


@pytest.mark.parametrize("transpose", [False, True])
def test_wide_and_tall_strips_are_tiled(ssd, transpose: bool) -> None:
    face = cv2.resize(_astronaut()[20:230, 120:300], None, fx=0.85, fy=0.85)
    strip = np.full((200, 2000, 3), 128, np.uint8)
    strip[10 : 10 + face.shape[0], 1500 : 1500 + face.shape[1]] = face
    expected = (1500 + (179 - 120) * 0.85, 10 + (58 - 20) * 0.85, 93 * 0.85, 119 * 0.85)
    if transpose:  # a tall strip with the face turned sideways
        strip = np.ascontiguousarray(strip.transpose(1, 0, 2))
        expected = (expected[1], expected[0], expected[3], expected[2])
    faces = ssd.detect(strip)
    assert len(faces) == 1
    assert iou(faces[0].box, expected) > 0.5


def test_two_faces_sorted_by_score_and_nms(ssd) -> None:
    face = _astronaut()[20:230, 120:300]
    canvas = np.full((300, 640, 3), 90, np.uint8)
    canvas[40:250, 30:210] = face
    canvas[40:250, 400:580] = face
    faces = ssd.detect(canvas)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    assert iou(faces[0].box, faces[1].box) == 0.0


def test_min_confidence_filters() -> None:
    strict = create_detector(DetectConfig(min_confidence=1.0))
    assert all(f.score >= 1.0 for f in strict.detect(_astronaut()))


def test_unknown_backend_is_refused_when_params_load() -> None:
    """Checked at load time, in one line naming the key and the accepted names."""
    import typing

    from fer.config import DetectorSettings, config_from_dict

    refused = r"detect\.backend: .*'ssd', 'haar', 'yunet' or 'retinaface'"
    with pytest.raises(ConfigError, match=refused):
        config_from_dict({"taxonomy": {"positive": ["a"], "negative": ["b"], "neutral": ["c"]},
                          "detect": {"backend": "mtcnn"}})  # fmt: skip
    # The params schema and the registry of backend modules name the same backends.
    allowed = typing.get_args(DetectorSettings.model_fields["backend"].annotation)
    assert available_backends() == sorted(allowed) == ["haar", "retinaface", "ssd", "yunet"]


def test_each_backend_declares_the_files_to_package(tmp_path: Path) -> None:
    """What the pyfunc ships: rebuilt from copies of those files, the detector finds the same."""
    import shutil

    from fer.config import DetectorSettings
    from fer.faces.detectors import packaged_files

    for backend in ("ssd", "haar", "retinaface"):
        settings = DetectorSettings(backend=backend)
        files = packaged_files(settings)
        assert files and all(f.is_file() for f in files)
        copies = tmp_path / backend
        copies.mkdir()
        for f in files:
            shutil.copy(f, copies / f.name)
        moved = settings.model_copy(update={"model_path": copies / files[0].name})
        original = create_detector(settings).detect(_astronaut())
        assert create_detector(moved).detect(_astronaut()) == original and original


def test_model_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"detect\.model_path"):
        create_detector(DetectConfig(model_path=tmp_path / "missing"))
    with pytest.raises(ModelError, match="yunet backend needs"):
        create_detector(DetectConfig(backend="yunet"))
    with pytest.raises(ModelError, match="not found"):
        create_detector(DetectConfig(backend="yunet", model_path=tmp_path / "y.onnx"))


def test_user_model_folder_with_wrong_file_fails_clearly(tmp_path: Path) -> None:
    from fer.faces.backends import ssd as ssd_backend

    (tmp_path / ssd_backend.PROTOTXT).write_text("garbage")
    (tmp_path / ssd_backend.CAFFEMODEL).write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load"):
        create_detector(DetectConfig(model_path=tmp_path))


def test_user_model_path_accepts_the_caffemodel_file(tmp_path: Path) -> None:
    from fer.faces.backends import ssd as ssd_backend

    proto, model = ssd_backend.model_files(DetectConfig())
    (tmp_path / proto.name).symlink_to(proto)
    (tmp_path / model.name).symlink_to(model)
    cfg = DetectConfig(model_path=tmp_path / model.name)
    assert len(create_detector(cfg).detect(_astronaut())) == 1
    assert settings_hash(cfg) == settings_hash(DetectConfig())  # same bytes, same key


def test_settings_hash_tracks_result_changing_settings_only(tmp_path: Path) -> None:
    base = settings_hash(DetectConfig())
    assert settings_hash(DetectConfig(workers=7, batch_size=3, faces=tmp_path / "f")) == base
    for change in (
        {"min_confidence": 0.6},
        {"min_face_px": 21},
        {"max_aspect": 1.5},
        {"nms_iou": 0.4},
        {"upscale_below": 100},
        {"max_side": 640},
        {"backend": "haar"},
    ):
        assert settings_hash(DetectConfig(**change)) != base, change


def test_detection_scale_and_tiles() -> None:
    assert detection_scale(480, 640, max_side=1280, upscale_below=160) == 1.0
    assert detection_scale(2560, 1000, max_side=1280, upscale_below=160) == 0.5
    assert detection_scale(48, 48, max_side=1280, upscale_below=160) == pytest.approx(160 / 48)
    # Upscaling never passes max_side.
    assert detection_scale(100, 1000, max_side=1280, upscale_below=160) == pytest.approx(1.28)
    assert tiles(480, 640) == [(0, 0, 640, 480)]
    strip = tiles(200, 2000)
    assert strip[0][0] == 0 and strip[-1][0] + strip[-1][2] == 2000
    assert all(w == 300 and h == 200 for _, _, w, h in strip)
    assert all(b[0] - a[0] <= 150 for a, b in itertools.pairwise(strip))


def test_face_is_a_frozen_value() -> None:
    face = Face(1, 2, 3, 4, 0.5)
    assert face.box == (1, 2, 3, 4) and face.area == 12
    with pytest.raises(AttributeError):
        face.x = 5  # type: ignore[misc]


# -- boxes running past the frame (issue #13) ----------------------------------------------


class _Fixed:
    """A ScaledDetector whose backend returns the given raw boxes (detection pixels)."""

    @staticmethod
    def make(raw: list, **cfg):
        from fer.faces.detectors import ScaledDetector

        class Fixed(ScaledDetector):
            def _raw(self, bgr: np.ndarray) -> list:
                return raw

        return Fixed(DetectConfig(**cfg))


def test_overlap_share_and_touches_edge() -> None:
    from fer.faces.detectors import Face, overlap_share, touches_edge

    face, mouth = Face(100, 100, 200, 240, 0.99), Face(160, 280, 60, 40, 0.5)
    assert overlap_share(mouth, face) == 1.0
    assert overlap_share(face, mouth) == pytest.approx(60 * 40 / (200 * 240))
    assert overlap_share(Face(250, 100, 100, 100, 0.9), face) == pytest.approx(0.5)
    assert overlap_share(Face(400, 100, 50, 50, 0.9), face) == 0.0
    assert overlap_share(Face(0, 0, 0, 10, 0.9), face) == 0.0  # empty box
    assert touches_edge(Face(0, 50, 40, 40, 0.9), 480, 640)
    assert touches_edge(Face(600, 440, 40, 40, 0.9), 480, 640)
    assert not touches_edge(Face(1, 1, 40, 40, 0.9), 480, 640)


def test_a_box_nested_in_a_better_face_is_dropped() -> None:
    """A mouth scored 0.48–0.69 inside the face box (real interview video frames)."""
    image = np.zeros((512, 512, 3), np.uint8)
    face, mouth = (155, 96, 260, 350, 0.99), (280, 350, 62, 40, 0.69)
    other = (20, 40, 120, 150, 0.6)  # a second, separate face stays
    kept = _Fixed.make([face, mouth, other]).detect(image)
    assert [f.box for f in kept] == [(155, 96, 260, 350), (20, 40, 120, 150)]
    old = _Fixed.make([face, mouth, other], max_nested=1.0).detect(image)
    assert (280, 350, 62, 40) in [f.box for f in old]
    # Half inside: kept at the default 0.5, dropped at a lower bar.
    half = (380, 200, 70, 70, 0.6)
    assert len(_Fixed.make([face, half]).detect(image)) == 2
    assert len(_Fixed.make([face, half], max_nested=0.4).detect(image)) == 1


def test_a_copy_overlapping_a_better_face_at_the_frame_edge_is_dropped() -> None:
    """The res10 SSD's shifted copy of a face, in the corner of a 512x512 video frame."""
    image = np.zeros((512, 512, 3), np.uint8)
    face = (138, 94, 221, 329, 0.9996)
    copy = (309, 263, 240, 260, 0.88)  # 203x249 of it inside (81%): min_inside keeps it
    kept = _Fixed.make([face, copy]).detect(image)
    assert [f.box for f in kept] == [(138, 94, 221, 329)]
    old = _Fixed.make([face, copy], drop_edge_copies=False).detect(image)
    assert [f.box for f in old] == [(138, 94, 221, 329), (309, 263, 203, 249)]
    # At the edge but apart from the face: a real face cut by the frame stays.
    cut = (420, 20, 100, 110, 0.7)
    assert len(_Fixed.make([face, cut]).detect(image)) == 2
    # Overlapping the face but inside the frame (two heads side by side): both stay.
    beside = (300, 120, 150, 180, 0.7)
    assert len(_Fixed.make([face, beside]).detect(image)) == 2
    # The best face itself is never dropped for reaching the edge.
    assert len(_Fixed.make([(0, 0, 300, 400, 0.99)]).detect(image)) == 1


def test_inside_fraction() -> None:
    from fer.faces.detectors import inside_fraction

    assert inside_fraction(10, 10, 50, 50, 640, 480) == 1.0
    assert inside_fraction(600, 10, 80, 50, 640, 480) == pytest.approx(0.5)
    # The res10 corner box on a 256x256 portrait: x 0.59-1.08, y 0.58-1.22 of the frame.
    x1, y1, x2, y2 = (v * 256 for v in (0.589, 0.585, 1.084, 1.221))
    assert inside_fraction(x1, y1, x2 - x1, y2 - y1, 256, 256) == pytest.approx(0.54, abs=0.01)
    assert inside_fraction(700, 500, 50, 50, 640, 480) == 0.0  # wholly outside
    assert inside_fraction(-20, -20, 40, 40, 640, 480) == pytest.approx(0.25)
    assert inside_fraction(10, 10, 0, 50, 640, 480) == 0.0  # empty box


def test_boxes_mostly_outside_the_frame_are_dropped_before_clipping() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    face = (200, 100, 120, 150, 0.99)
    corner = (560, 380, 150, 170, 0.97)  # 80x100 of it inside: 31%; clipped it would be kept
    kept = _Fixed.make([face, corner]).detect(image)
    assert [f.box for f in kept] == [(200, 100, 120, 150)]
    # Without the rule the clipped corner box comes back as a second "face".
    old = _Fixed.make([face, corner], min_inside=0.0).detect(image)
    assert [f.box for f in old] == [(200, 100, 120, 150), (560, 380, 80, 100)]
    # A face cut by the edge but mostly inside stays, clipped.
    cut = (580, 100, 80, 100, 0.9)  # 75% inside
    assert [f.box for f in _Fixed.make([cut]).detect(image)] == [(580, 100, 60, 100)]
    assert _Fixed.make([cut], min_inside=0.8).detect(image) == []


def test_frame_rule_is_measured_in_detection_pixels() -> None:
    # A 48x48 crop is upscaled to 160x160 for detection; raw boxes are in those pixels.
    small = np.zeros((48, 48, 3), np.uint8)
    inside = (20, 20, 100, 100, 0.9)
    shifted = (100, 100, 100, 100, 0.95)  # 60x60 of 100x100 inside the 160 frame: 36%
    kept = _Fixed.make([inside, shifted], min_face_px=10).detect(small)
    assert [f.box for f in kept] == [(6, 6, 30, 30)]


def test_border_size() -> None:
    from fer.faces.detectors import border

    assert border(160, 160, pad=0.0) == (0, 0)
    assert border(160, 160, pad=0.5) == (80, 80)
    assert border(100, 300, pad=0.25) == (25, 75)


def test_only_upscaled_images_get_a_border() -> None:
    seen: list[tuple[int, int]] = []
    from fer.faces.detectors import ScaledDetector

    class Recording(ScaledDetector):
        pad_value = (0.0, 0.0, 0.0)

        def _raw(self, bgr: np.ndarray) -> list:
            seen.append(bgr.shape[:2])
            # A box at the canvas centre: after the border comes off it is the crop's centre.
            h, w = bgr.shape[:2]
            return [(w / 2 - 40, h / 2 - 40, 80, 80, 0.9)]

    det = Recording(DetectConfig(pad=0.5, min_face_px=10))
    (face,) = det.detect(np.zeros((48, 48, 3), np.uint8))  # upscaled to 160, border 80
    assert seen == [(320, 320)]
    assert face.box == (12, 12, 24, 24)  # (80-40)/160*48 = 12, 80/160*48 = 24
    det.detect(np.zeros((480, 640, 3), np.uint8))  # not upscaled: no border
    assert seen[-1] == (480, 640)
    Recording.pad_value = None  # a backend without a border (haar)
    det.detect(np.zeros((48, 48, 3), np.uint8))
    assert seen[-1] == (160, 160)


def _astronaut_crop_48(rows: slice, cols: slice) -> np.ndarray:
    """A FER2013-like 48x48 grey crop of the astronaut's face."""
    crop = cv2.resize(_astronaut()[rows, cols], (48, 48), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


def test_ssd_finds_one_face_in_a_48px_crop(ssd) -> None:
    # With some margin the old settings found the face twice: the real box and a shifted
    # copy running past the bottom-right corner, clipped into it.
    head = _astronaut_crop_48(slice(40, 200), slice(160, 290))
    old = create_detector(DetectConfig(min_inside=0.0, pad=0.0)).detect(head)
    assert len(old) == 2
    (face,) = ssd.detect(head)
    assert iou(face.box, (8, 6, 33, 35)) > 0.8
    # Cut tight (the face fills the crop) the old settings returned only a corner copy; the
    # frame rule alone finds nothing; with the border the face is found where it is.
    tight = _astronaut_crop_48(slice(60, 175), slice(175, 275))
    (old_box,) = [
        f.box for f in create_detector(DetectConfig(min_inside=0.0, pad=0.0)).detect(tight)
    ]
    assert old_box[0] > 12 and old_box[1] > 12  # bottom-right quarter
    assert create_detector(DetectConfig(pad=0.0)).detect(tight) == []
    (face,) = ssd.detect(tight)
    assert face.w > 36 and face.h > 36 and face.x < 8 and face.y < 8


def test_a_face_that_fills_a_photo_is_found_on_a_second_look_inside_the_border() -> None:
    # A 350x350 web photo cut tight around the face (LFW-like): the SSD finds nothing on the
    # frame itself; inside the border it finds the face, filling the frame.
    tight = cv2.resize(_astronaut()[60:175, 175:275], (350, 350), interpolation=cv2.INTER_CUBIC)
    assert create_detector(DetectConfig(pad_retry=False)).detect(tight) == []
    (face,) = create_detector(DetectConfig(pad_retry=True)).detect(tight)
    assert face.w > 0.8 * 350 and face.h > 0.8 * 350 and face.score > 0.9
    assert create_detector(DetectConfig(pad_retry=True)).detect(np.zeros_like(tight)) == []


def test_the_second_look_runs_only_on_unbordered_images_without_a_face() -> None:
    from fer.faces.detectors import ScaledDetector

    class Recording(ScaledDetector):
        pad_value = (0.0, 0.0, 0.0)
        misses_filling_faces = True

        def __init__(self, cfg: DetectConfig) -> None:
            super().__init__(cfg)
            self.seen: list[tuple[int, int]] = []

        def _raw(self, bgr: np.ndarray) -> list:
            self.seen.append(bgr.shape[:2])
            if bgr.shape[:2] != (960, 1280):  # only the bordered 480x640 frame holds a face
                return []
            return [(640 - 100, 480 - 100, 200, 200, 0.9)]

    det = Recording(DetectConfig(pad=0.5))
    (face,) = det.detect(np.zeros((480, 640, 3), np.uint8))
    assert det.seen == [(480, 640), (960, 1280)]
    assert face.box == (220, 140, 200, 200)  # the border (240, 320) comes off again
    assert det.retry_raw(np.zeros((480, 640, 3), np.uint8)) is not None
    det.seen.clear()
    det.detect(np.zeros((48, 48, 3), np.uint8))  # upscaled: bordered at once, looked at once
    assert det.seen == [(320, 320)]
    assert det.retry_raw(np.zeros((48, 48, 3), np.uint8)) is None
    off = Recording(DetectConfig(pad=0.5, pad_retry=False))
    assert off.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert off.seen == [(480, 640)]
    assert off.retry_raw(np.zeros((480, 640, 3), np.uint8)) is None
    Recording.misses_filling_faces = False  # a backend that finds such faces (retinaface)
    finder = Recording(DetectConfig(pad=0.5))
    assert finder.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert finder.seen == [(480, 640)]
    Recording.misses_filling_faces = True
    Recording.pad_value = None  # a backend without a border (haar) never looks twice
    bare = Recording(DetectConfig(pad=0.5))
    assert bare.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert bare.seen == [(480, 640)]


def test_settings_hash_tracks_the_frame_and_border_settings() -> None:
    base = settings_hash(DetectConfig())
    for change in ({"min_inside": 0.0}, {"pad": 0.0}, {"pad_retry": False}):
        assert settings_hash(DetectConfig(**change)) != base, change


def test_an_image_needs_one_confident_face_then_further_faces_need_less() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    bars = {"min_confidence": 0.7, "min_confidence_next": 0.5}
    weak = [(10, 10, 80, 90, 0.65), (300, 10, 80, 90, 0.55)]
    assert _Fixed.make(weak, **bars).detect(image) == []  # no-face photo: nothing reaches 0.7
    group = [(10, 10, 80, 90, 0.9), (300, 10, 80, 90, 0.55), (150, 300, 80, 90, 0.45)]
    kept = _Fixed.make(group, **bars).detect(image)
    assert [f.score for f in kept] == [0.9, 0.55]
    one_bar = _Fixed.make(group, min_confidence=0.7, min_confidence_next=0.7).detect(image)
    assert [f.score for f in one_bar] == [0.9]
    # A "next" bar above the first one is the first one.
    assert len(_Fixed.make(group, min_confidence=0.5, min_confidence_next=0.9).detect(image)) == 2

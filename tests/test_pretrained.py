"""Pretrained real-face models: ports vs the original runtimes, mapped head, weights, fine-tuning.

The fixture holds what Keras and face-api (TensorFlow.js) computed on 24 fixed inputs
(benchmarks/make_pretrained_reference.py). The weights come from ``fer weights`` (``make setup``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from fer import CLASSES
from fer.config import ModelSpec
from fer.errors import ConfigError, ModelError
from fer.learning.models import available, build_model, input_spec
from fer.learning.models.emotions import FER2013_EMOTIONS, class_indices, emotion_classes
from fer.learning.models.faceexpr import FACEAPI_LABELS
from fer.learning.models.layers import MappedHead, same_padding
from fer.learning.models.pretrained import (
    CATALOG,
    WEIGHTS_ENV,
    fetch_weights,
    weights_dir,
    weights_path,
)
from fer.learning.preprocess import preprocess

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "pretrained_reference.npz"
MODELS = ("minixception", "faceexpr")
EMOTIONS = {"minixception": FER2013_EMOTIONS, "faceexpr": FACEAPI_LABELS}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def weights_root() -> Path:
    """The project's verified weights (``fer weights``); a clear failure when absent."""
    root = weights_dir()
    try:
        for model in CATALOG:
            weights_path(model, root)
    except ModelError as exc:
        pytest.fail(str(exc))
    return root


def emotion_probs(name: str, x: np.ndarray) -> np.ndarray:
    """7-emotion probabilities of the pretrained port, through our preprocessing."""
    model = build_model(name, ModelSpec(pretrained=True)).eval()
    model.head = nn.Identity()
    with torch.no_grad():
        return torch.softmax(model(preprocess(x, input_spec(name))), dim=1).numpy()


@pytest.mark.parametrize("name", MODELS)
def test_port_matches_original_runtime(name: str, reference: dict, weights_root: Path) -> None:
    probs = emotion_probs(name, reference[f"{name}_inputs"])
    expected = reference[f"{name}_probs"]
    assert probs.shape == expected.shape == (24, 7)
    assert np.abs(probs - expected).max() <= 1e-4
    assert list(reference["faceexpr_labels"]) == list(FACEAPI_LABELS)


def test_smiling_astronaut_is_positive(reference: dict, weights_root: Path) -> None:
    face = list(reference["names"]).index("astronaut_face")
    for name in MODELS:
        model = build_model(name, ModelSpec(pretrained=True)).eval()
        with torch.no_grad():
            x = preprocess(reference[f"{name}_inputs"][face : face + 1], input_spec(name))
            assert CLASSES[int(model(x).argmax())] == "positive"


@pytest.mark.parametrize("name", MODELS)
def test_mapped_head_equals_summed_emotion_probabilities(
    name: str, reference: dict, weights_root: Path
) -> None:
    """End to end, with surprise made positive through the params as a user would."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    mapping = {**params["import"]["fer2013"], "surprise": "joyful"}
    classes_of = emotion_classes(mapping, params["taxonomy"])
    assert classes_of["surprise"] == "positive" and classes_of["fear"] == "negative"
    x = preprocess(reference[f"{name}_inputs"], input_spec(name))
    model = build_model(name, ModelSpec(pretrained=True), emotion_classes=classes_of).eval()
    with torch.no_grad():
        p3 = torch.softmax(model(x), dim=1).numpy()
    p7 = reference[f"{name}_probs"]
    index = class_indices(EMOTIONS[name], classes_of)
    summed = np.stack(
        [p7[:, [i for i, c in enumerate(index) if c == k]].sum(1) for k in range(3)], 1
    )
    assert np.abs(p3 - summed).max() <= 1e-4


def test_mapped_head_is_exact_and_trainable() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 7, requires_grad=True)
    index = [1, 1, 1, 0, 1, 0, 2]
    out = MappedHead(index, 3)(logits)
    p7 = torch.softmax(logits, dim=1)
    summed = torch.stack(
        [p7[:, [i for i, c in enumerate(index) if c == k]].sum(1) for k in range(3)], 1
    )
    assert torch.allclose(torch.softmax(out, dim=1), summed, atol=1e-6)
    out.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="class indices"):
        MappedHead([0, 3], 3)


def test_class_indices_follow_each_models_order_and_check_the_mapping() -> None:
    assert class_indices(FER2013_EMOTIONS) == [1, 1, 1, 0, 1, 1, 2]
    assert class_indices(FACEAPI_LABELS) == [2, 0, 1, 1, 1, 1, 1]  # neutral, happy, sad, ...
    no_neutral = dict(zip(FER2013_EMOTIONS, ["negative"] * 6 + ["positive"], strict=True))
    with pytest.raises(ConfigError, match="no emotion maps to class 'neutral'"):
        class_indices(FER2013_EMOTIONS, no_neutral)
    with pytest.raises(ConfigError, match=r"import\.fer2013\.surprise: missing"):
        class_indices(FACEAPI_LABELS, {e: "neutral" for e in FER2013_EMOTIONS if e != "surprise"})
    with pytest.raises(ConfigError, match="not in the taxonomy"):
        emotion_classes({e: "nope" for e in FER2013_EMOTIONS}, {"positive": ["happy"]})


def test_tensorflow_same_padding() -> None:
    assert same_padding(112, 3, 2) == (0, 1)  # even side, stride 2: the extra pixel after
    assert same_padding(15, 3, 2) == (1, 1)
    assert same_padding(60, 1, 2) == (0, 0)
    assert same_padding(64, 3, 1) == (1, 1)


def test_registry_and_input_specs() -> None:
    assert {"minixception", "faceexpr"} <= set(available())
    assert input_spec("alexnet") is None
    mx, fe = input_spec("minixception"), input_spec("faceexpr")
    assert (mx.size, mx.color, mx.mean, mx.std) == (64, "gray", (0.5,) * 3, (0.5,) * 3)
    assert (fe.size, fe.color, fe.std) == (112, "rgb", (1.0,) * 3)
    assert np.allclose(np.array(fe.mean) * 255, [122.782, 117.001, 104.298])


@pytest.mark.parametrize("name", MODELS)
def test_from_scratch_reads_no_weights_and_model_pt_rebuilds(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_root: Path
) -> None:
    """pretrained: false trains from scratch; ``for_rebuild()`` restores a fine-tuned model."""
    size = input_spec(name).size
    x = torch.rand(2, 3, size, size)
    tuned_spec = ModelSpec(pretrained=True)
    classes_of = {**dict.fromkeys(FER2013_EMOTIONS, "negative"), "happy": "positive",
                  "surprise": "positive", "neutral": "neutral"}  # fmt: skip
    tuned = build_model(name, tuned_spec, emotion_classes=classes_of).eval()
    state = tuned.state_dict()

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "empty"))  # no weights from here on
    scratch = build_model(name, ModelSpec(), num_classes=3).eval()
    with torch.no_grad():
        assert scratch(x).shape == (2, 3)
    rebuilt = build_model(name, tuned_spec.for_rebuild()).eval()  # default mapping...
    rebuilt.load_state_dict(state)  # ...replaced by the one that travels in the state dict
    with torch.no_grad():
        assert torch.equal(rebuilt(x), tuned(x))
    assert rebuilt.head.class_of_emotion.tolist() == class_indices(EMOTIONS[name], classes_of)
    with pytest.raises(ModelError, match="not found"):
        build_model(name, tuned_spec)


def test_missing_or_corrupt_weights_give_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_root: Path
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=r"not found \(run `fer weights` or `make setup`\)") as e:
        build_model("minixception", ModelSpec(pretrained=True))
    assert "\n" not in str(e.value)
    shutil.copytree(weights_root / "faceexpr", tmp_path / "faceexpr")
    weights_path("faceexpr")  # intact copy: fine
    binary = tmp_path / "faceexpr" / "face_expression_model.bin"
    binary.write_bytes(binary.read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"corrupt .*`fer weights`") as e:
        build_model("faceexpr", ModelSpec(pretrained=True))
    assert "\n" not in str(e.value) and str(binary) in str(e.value)


def test_fetch_weights_keeps_intact_files(tmp_path: Path, weights_root: Path) -> None:
    for model in CATALOG:
        shutil.copytree(weights_root / model, tmp_path / model)
    lines: list[str] = []
    assert fetch_weights(tmp_path, log=lines.append) == dict.fromkeys(CATALOG, "present")
    assert len(lines) == len(CATALOG) and all("present" in ln for ln in lines)
    with pytest.raises(ModelError, match="no pretrained weights for 'alexnet'"):
        fetch_weights(tmp_path, ["alexnet"])


@pytest.mark.parametrize(("name", "head"), [("minixception", "mapped"), ("faceexpr", "new")])
def test_fine_tuning_step_lowers_the_loss(name: str, head: str, weights_root: Path) -> None:
    """A few Adam steps on generated images, from the packaged weights."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    size = input_spec(name).size
    crops = rng.integers(0, 256, size=(6, size, size, 3), dtype=np.uint8)
    x, y = preprocess(crops, input_spec(name)), torch.tensor([0, 1, 2, 0, 1, 2])
    model = build_model(name, ModelSpec(pretrained=True, head=head)).train()
    assert model.classifier.weight.shape[0] == (7 if head == "mapped" else 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_fer_weights_command(
    tmp_path: Path,
    make_params: Callable[..., Path],
    weights_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fer.cli import main

    dest = tmp_path / "w"
    for model in CATALOG:
        shutil.copytree(weights_root / model, dest / model)
    params = make_params()
    assert main(["--params", str(params), "weights", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.count("present") == len(CATALOG)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert main(["--params", str(params), "weights", "--dest", str(blocked)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fer weights: error:") and "\n" not in err


def test_pretrained_asked_of_other_architectures_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"models\.alexnet\.pretrained: .*minixception"):
        build_model("alexnet", ModelSpec(pretrained=True))
    with pytest.raises(ConfigError, match=r"models\.baseline\.head"):
        build_model("baseline", ModelSpec(head="mapped"))
    assert build_model("baseline", ModelSpec(head="new", width=4))(
        torch.zeros(1, 3, 64, 64)
    ).shape == (1, 3)

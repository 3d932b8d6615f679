"""FER+ votes on generated data shaped like FER2013 + FER+: the join by row and by pixels
(duplicates, ties, rows without a FER+ image), the label sources, the soft-label loss, training
on votes, evaluation against both truths and the not-a-face quarantine."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fer import FER2013_EMOTIONS
from fer.data import ferplus, ferplus_join
from fer.labels import Taxonomy
from tests.test_fer2013 import _config

N_ROWS = 30
NO_PNG = 9  # a row FER+ has no image for (its votes: all NF)
NOT_FACE = 10  # a row whose NF votes win
TIE = 11  # happiness 4, sadness 4: positive and negative tie
DUPLICATES = ((5, 6), (7, 8))  # pixel-identical rows: same votes, then different votes
FLIPPED = (12, 13)  # FER+ disagrees with FER2013's valence
AS_FERPLUS = {v: k for k, v in ferplus.AS_FER2013.items()}


@dataclass
class Fer2013PlusData:
    """Generated FER2013 rows, their FER+ votes and where each row's files went."""

    root: Path
    emotion: list[int] = field(default_factory=list)
    usage: list[str] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    votes: list[list[int]] = field(default_factory=list)
    jpg: dict[str, int] = field(default_factory=dict)  # Kaggle file name → row

    @property
    def csv(self) -> Path:
        return self.root / "fer2013.csv"

    @property
    def votes_csv(self) -> Path:
        return self.root / "fer2013new.csv"

    @property
    def pngs(self) -> Path:
        return self.root / "ferplus"

    @property
    def folders(self) -> Path:
        return self.root / "kaggle"


def _face(rng: np.random.Generator) -> np.ndarray:
    """A smooth 48x48 grey picture (faces are smooth: JPEG keeps them within ~2 grey levels)."""
    low = rng.integers(0, 255, (6, 6)).astype(np.float32)
    grey = cv2.resize(low, (48, 48), interpolation=cv2.INTER_CUBIC)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    cv2.circle(grey, (int(rng.integers(14, 34)), 24), 9, int(rng.integers(0, 255)), -1)
    return grey


def _votes(emotion: int, row: int) -> list[int]:
    votes = [0] * len(ferplus.FERPLUS_COLUMNS)
    name = AS_FERPLUS[FER2013_EMOTIONS[emotion]]
    if row == NO_PNG:
        votes[ferplus.NF_INDEX] = 10
    elif row == NOT_FACE:
        votes[ferplus.NF_INDEX], votes[0] = 6, 4
    elif row == TIE:
        votes[1], votes[3], votes[0] = 4, 4, 2
    elif row in FLIPPED:  # happy ↔ sad valence
        other = "sadness" if name == "happiness" else "happiness"
        votes[ferplus.FERPLUS_COLUMNS.index(other)] = 9
        votes[-2] = 1  # one "unknown": left out of the distribution
    else:
        votes[ferplus.FERPLUS_COLUMNS.index(name)] = 8
        votes[0] += 2
    return votes


def make_fer2013_plus(root: Path, seed: int = 0) -> Fer2013PlusData:
    """``fer2013.csv``, ``fer2013new.csv`` (one row short), FER+ PNGs and Kaggle folders."""
    rng = np.random.default_rng(seed)
    data = Fer2013PlusData(root)
    root.mkdir(parents=True, exist_ok=True)
    for row in range(N_ROWS):
        usage = "Training" if row < 20 else "PublicTest" if row < 25 else "PrivateTest"
        emotion = 3 if row in FLIPPED else int(rng.integers(0, 7))
        dup = next((a for a, b in DUPLICATES if b == row), None)
        if dup is not None:
            emotion = data.emotion[dup]
        data.emotion.append(emotion)
        data.usage.append(usage)
        data.pixels.append(data.pixels[dup].copy() if dup is not None else _face(rng))
        votes = list(data.votes[dup]) if dup is not None else _votes(emotion, row)
        if row == DUPLICATES[1][1]:
            votes[0], votes[1] = votes[0] + 1, votes[1] + 1  # a pair whose votes differ
        data.votes.append(votes)
    with data.csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for e, p, u in zip(data.emotion, data.pixels, data.usage, strict=True):
            w.writerow([e, " ".join(map(str, p.ravel())), u])
    folder = {
        "Training": "FER2013Train",
        "PublicTest": "FER2013Valid",
        "PrivateTest": "FER2013Test",
    }
    with data.votes_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", *ferplus.FERPLUS_COLUMNS])
        for row in range(N_ROWS - 1):  # FER+ one row short: the last row has no votes
            name = "" if row == NO_PNG else f"fer{row:07d}.png"
            w.writerow([data.usage[row], name, *data.votes[row]])
            if name:
                (data.pngs / folder[data.usage[row]]).mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(
                    str(data.pngs / folder[data.usage[row]] / name), data.pixels[row]
                )
    numbers = rng.permutation(np.arange(100, 100 + N_ROWS))  # Kaggle names carry no row order
    for row in range(N_ROWS):
        split = "train" if data.usage[row] == "Training" else "test"
        out = data.folders / split / FER2013_EMOTIONS[data.emotion[row]]
        out.mkdir(parents=True, exist_ok=True)
        name = f"{data.usage[row]}_{numbers[row]}.jpg"
        assert cv2.imwrite(str(out / name), data.pixels[row])
        data.jpg[name] = row
    return data


@pytest.fixture
def generated(tmp_path: Path) -> Fer2013PlusData:
    return make_fer2013_plus(tmp_path / "src")


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / ferplus.VOTES_FILE)


# --- The join --------------------------------------------------------------------------------


def test_votes_join_the_csv_by_row(tmp_path: Path, generated: Fer2013PlusData) -> None:
    from fer.stages import imports, ingest

    cfg = _config(tmp_path)
    summary = imports.run(cfg, format="fer2013", csv=generated.csv, out=tmp_path / "raw",
                          votes=generated.votes_csv)  # fmt: skip
    v = summary["votes"]
    assert (v["by"], v["images"], v["matched"], v["unmatched"]) == ("row", 30, 29, 1)
    assert (v["rows_without_votes"], v["usage_mismatch"]) == (1, 0)
    assert v["duplicate_groups"] == {
        "groups": 2, "images": 4, "identical_votes": 1, "different_votes": 1
    }  # fmt: skip
    assert v["not_face"] == 2  # the row without a PNG (NF 10) and the NF-majority row
    table = _table(tmp_path / "raw").set_index(ferplus.ROW_COLUMN)
    assert list(table.loc[TIE, list(ferplus.VOTE_COLUMNS)]) == generated.votes[TIE]
    assert table.loc[TIE, "path"].endswith(f"fer2013_training_{TIE:06d}.png")

    ingest.run(cfg)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet").set_index("path")
    assert set(ferplus.VOTE_COLUMNS) <= set(manifest.columns)
    for path, row in table.reset_index().set_index("path")[ferplus.ROW_COLUMN].items():
        assert manifest.at[path, ferplus.ROW_COLUMN] == row
        assert list(manifest.loc[path, list(ferplus.VOTE_COLUMNS)]) == generated.votes[row]
    last = next(p for p in manifest.index if p.endswith(f"_{N_ROWS - 1:06d}.png"))
    assert manifest.at[last, ferplus.ROW_COLUMN] == -1  # kept, without votes
    assert manifest.loc[last, list(ferplus.VOTE_COLUMNS)].sum() == 0


def test_votes_join_image_folders_by_pixels(
    tmp_path: Path, generated: Fer2013PlusData, capsys: pytest.CaptureFixture[str]
) -> None:
    from fer.errors import InputError
    from fer.stages import imports, ingest

    cfg = _config(tmp_path)
    with pytest.raises(InputError, match="--ferplus-images"):
        imports.run(cfg, format="fer2013", csv=generated.folders, out=tmp_path / "raw",
                    votes=generated.votes_csv)  # fmt: skip
    summary = imports.run(cfg, format="fer2013", csv=generated.folders, out=tmp_path / "raw",
                          votes=generated.votes_csv, ferplus_images=generated.pngs)  # fmt: skip
    v = summary["votes"]
    # Every image but the one row FER+ has no PNG for (and the last row, missing from the
    # votes CSV) finds its row; JPEG moved pixels a little, another face is far away. The
    # PNG-less row's image takes the votes of its Usage's PNG-less rows (all NF 10).
    assert (v["by"], v["images"], v["matched"], v["no_png"], v["unmatched"]) == (
        "pixels", 30, 28, 1, 1
    )  # fmt: skip
    assert v["exact"] == 0 and v["nearest"] == 28
    assert v["distance_matched"]["max"] < v["threshold"] < v["distance_runner_up"]["min"]
    assert v["distance_unmatched"]["min"] > v["threshold"]
    assert v["ferplus_duplicate_groups"] == {
        "groups": 2, "images": 4, "identical_votes": 1, "different_votes": 1
    }  # fmt: skip
    assert v["rows_matched_twice"] == 2  # each duplicate pair's two images share one row
    assert v["png_less"] == {
        "given": 1, "missing_pngs": 0,
        "by_usage": {"training": {"rows": 1, "given": 1, "votes": generated.votes[NO_PNG]}},
    }  # fmt: skip
    assert v["not_face"] == 2  # as by row: the PNG-less row and the NF-majority row
    out = capsys.readouterr().out
    assert "1 given the PNG-less rows' votes, 1 without votes (kept)" in out
    assert "training: 1 / 1 (votes 0 0 0 0 0 0 0 0 0 10)" in out

    table = _table(tmp_path / "raw")
    for path, row, how in zip(table["path"], table[ferplus.ROW_COLUMN], table["match"],
                              strict=True):  # fmt: skip
        true_row = generated.jpg[path.rsplit("/", 1)[-1]]
        if true_row == NO_PNG:
            assert (row, how) == (-1, "no_png")
            continue
        twins = next((pair for pair in DUPLICATES if true_row in pair), (true_row,))
        assert row in twins and row == twins[0]  # duplicates: the first of the group
    joined = ingest.run(cfg)["ferplus"]
    assert (joined["with_votes"], joined["without_votes"], joined["unused"]) == (29, 1, 0)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert (manifest[ferplus.ROW_COLUMN] >= 0).sum() == 28 and len(manifest) == 30
    no_png = manifest[manifest[ferplus.ROW_COLUMN] < 0].set_index("path")
    voted = no_png[no_png[list(ferplus.VOTE_COLUMNS)].sum(axis=1) > 0]
    assert [generated.jpg[p.rsplit("/", 1)[-1]] for p in voted.index] == [NO_PNG]
    assert list(voted.iloc[0][list(ferplus.VOTE_COLUMNS)]) == generated.votes[NO_PNG]


def _not_face_rows(tmp_path: Path, source: Path, name: str, row_of, **kw: object) -> set[int]:
    """Import ``source`` with votes, ingest it, and return the FER2013 rows validate's
    not-a-face step quarantines (``row_of``: an imported path's true row)."""
    from fer.stages import imports, ingest
    from fer.stages.validate import _quarantine_not_face

    cfg = _config(tmp_path / name)
    imports.run(cfg, format="fer2013", csv=source, out=tmp_path / name / "raw", **kw)
    ingest.run(cfg)
    manifest = pd.read_parquet(tmp_path / name / "manifest.parquet")
    none = pd.DataFrame({"path": [], "image_id": [], "reason": []})
    q = _quarantine_not_face(manifest, none, [])
    assert set(q["reason"]) <= {"ferplus_not_face"}
    return {row_of(p) for p in q["path"]}


def test_png_less_rows_are_quarantined_by_pixels_as_by_row(
    tmp_path: Path, generated: Fer2013PlusData
) -> None:
    by_row = _not_face_rows(
        tmp_path, generated.csv, "csv", lambda p: int(p.rsplit("_", 1)[-1][:-4]),
        votes=generated.votes_csv,
    )  # fmt: skip
    by_pixels = _not_face_rows(
        tmp_path, generated.folders, "folders", lambda p: generated.jpg[p.rsplit("/", 1)[-1]],
        votes=generated.votes_csv, ferplus_images=generated.pngs,
    )  # fmt: skip
    assert by_row == by_pixels == {NO_PNG, NOT_FACE}


def _rewrite_votes(data: Fer2013PlusData, png_less: dict[int, list[int]]) -> None:
    """Make ``png_less``'s rows PNG-less (empty Image name, their PNG removed) with these votes."""
    lines = list(csv.reader(data.votes_csv.open(newline="")))
    for row, votes in png_less.items():
        name = lines[row + 1][1]
        for png in data.pngs.rglob(name or "-"):
            png.unlink()
        lines[row + 1] = [lines[row + 1][0], "", *map(str, votes)]
        data.votes[row] = votes
    with data.votes_csv.open("w", newline="") as fh:
        csv.writer(fh).writerows(lines)


def _import_by_pixels(tmp_path: Path, data: Fer2013PlusData) -> tuple[dict, pd.DataFrame]:
    from fer.stages import imports

    cfg = _config(tmp_path)
    out = tmp_path / "raw"
    summary = imports.run(cfg, format="fer2013", csv=data.folders, out=out, votes=data.votes_csv,
                          ferplus_images=data.pngs)  # fmt: skip
    table = _table(out)
    table["true_row"] = [data.jpg[p.rsplit("/", 1)[-1]] for p in table["path"]]
    return summary["votes"], table.set_index("true_row")


def test_png_less_votes_go_to_every_unmatched_image_of_the_usage(
    tmp_path: Path, generated: Fer2013PlusData, capsys: pytest.CaptureFixture[str]
) -> None:
    nf = [0] * 9 + [10]
    # Training: 2 PNG-less rows; PrivateTest: 1, and the last row (no votes row at all, no
    # PNG) also matches nothing there: it takes them too, a surplus the report shows.
    _rewrite_votes(generated, {3: nf, 27: nf})
    v, table = _import_by_pixels(tmp_path, generated)
    assert v["png_less"]["by_usage"] == {
        "privatetest": {"rows": 1, "given": 2, "votes": nf},
        "training": {"rows": 2, "given": 2, "votes": nf},
    }  # fmt: skip
    assert (v["matched"], v["no_png"], v["unmatched"]) == (26, 4, 0)
    for row in (3, NO_PNG, 27, N_ROWS - 1):
        assert (table.at[row, ferplus.ROW_COLUMN], table.at[row, "match"]) == (-1, "no_png")
        assert table.at[row, "distance"] > v["threshold"]
        assert list(table.loc[row, list(ferplus.VOTE_COLUMNS)]) == nf
    out = capsys.readouterr().out
    assert "privatetest: 2 / 1 (votes 0 0 0 0 0 0 0 0 0 10; 1 more than rows" in out


def test_png_less_votes_that_differ_are_given_to_none(
    tmp_path: Path, generated: Fer2013PlusData, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite_votes(generated, {3: [0] * 8 + [1, 9]})  # Training's PNG-less rows now differ
    v, table = _import_by_pixels(tmp_path, generated)
    assert v["png_less"]["by_usage"] == {"training": {"rows": 2, "given": 0, "votes": None}}
    assert (v["matched"], v["no_png"], v["unmatched"]) == (27, 0, 3)
    assert {3, NO_PNG, N_ROWS - 1}.isdisjoint(table.index)
    assert "training: 0 / 2 (their votes differ: none given)" in capsys.readouterr().out


def test_png_less_votes_need_every_png(
    tmp_path: Path, generated: Fer2013PlusData, capsys: pytest.CaptureFixture[str]
) -> None:
    # A partial FER+ folder: an image whose PNG is missing must not take the NF votes.
    next(generated.pngs.rglob(f"fer{4:07d}.png")).unlink()
    v, table = _import_by_pixels(tmp_path, generated)
    assert v["png_less"] == {
        "given": 0, "missing_pngs": 1,
        "by_usage": {"training": {"rows": 1, "given": 0, "votes": generated.votes[NO_PNG]}},
    }  # fmt: skip
    assert (v["matched"], v["no_png"], v["unmatched"]) == (27, 0, 3)
    assert {4, NO_PNG, N_ROWS - 1}.isdisjoint(table.index)
    assert "none given: 1 PNG(s) named by the votes CSV missing" in capsys.readouterr().out


def test_png_less_rows_per_usage() -> None:
    nf, other = (0,) * 9 + (10,), (1,) + (0,) * 8 + (9,)
    rows = [
        ferplus.VoteRow(0, "Training", "", nf),
        ferplus.VoteRow(1, "Training", "fer0000001.png", other),
        ferplus.VoteRow(2, "training", "", nf),
        ferplus.VoteRow(3, "PublicTest", "", nf),
        ferplus.VoteRow(4, "PublicTest", "", other),
    ]
    shared = ferplus_join.png_less_rows(rows)
    assert shared == {
        "publictest": ferplus_join.PngLess(2, None),
        "training": ferplus_join.PngLess(2, nf),
    }
    matches = [(-1, "none", 9.0), (1, "nearest", 1.0), (-1, "not_48x48", float("nan")),
               (-1, "none", 8.0), (-1, "none", 7.5)]  # fmt: skip
    usages = ["Training", "Training", "Training", "PublicTest", "PrivateTest"]
    out, given, report = ferplus_join.give_png_less_votes(matches, usages, shared,
                                                          missing_pngs=0)  # fmt: skip
    assert out[0] == (-1, "no_png", 9.0) and out[1:] == matches[1:]
    assert given == [nf, None, None, None, None]
    assert report["given"] == 1 and report["by_usage"]["training"]["given"] == 1
    out, given, report = ferplus_join.give_png_less_votes(matches, usages, shared,
                                                          missing_pngs=2)  # fmt: skip
    assert out == matches and given == [None] * 5 and report["given"] == 0


def test_pixel_index_exact_then_nearest() -> None:
    rng = np.random.default_rng(1)
    faces = np.stack([_face(rng) for _ in range(20)])
    index = ferplus_join.PixelIndex(faces)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", faces[4])[1], cv2.IMREAD_GRAYSCALE)
    other = _face(rng)
    exact, near, none = index.match(np.stack([faces[3], jpeg, other]))
    assert (exact.index, exact.how, exact.distance) == (3, "exact", 0.0)
    assert (near.index, near.how) == (4, "nearest") and 0 < near.distance < 2
    assert (none.index, none.how) == (-1, "none") and none.distance > 4


def test_bad_votes_csv_is_one_line(tmp_path: Path, generated: Fer2013PlusData) -> None:
    from fer.errors import InputError
    from fer.stages import imports

    bad = tmp_path / "bad.csv"
    bad.write_text("Usage,Image name,neutral\nTraining,fer0.png,3\n")
    with pytest.raises(InputError, match=r"not a FER\+ votes CSV"):
        imports.run(_config(tmp_path), format="fer2013", csv=generated.csv, out=tmp_path / "r",
                    votes=bad)  # fmt: skip
    with pytest.raises(InputError, match="not found"):
        imports.run(_config(tmp_path), format="fer2013", csv=generated.csv, out=tmp_path / "r",
                    votes=tmp_path / "missing.csv")  # fmt: skip


# --- Labels from votes -----------------------------------------------------------------------


def _folders() -> tuple[tuple[str, ...], Taxonomy]:
    cfg = _config(Path("."))
    taxonomy = Taxonomy(cfg.taxonomy)
    return ferplus.emotion_folders(cfg.import_.fer2013, "distaste", taxonomy), taxonomy


def test_label_sources_from_votes() -> None:
    folders, taxonomy = _folders()
    assert folders == ("neutral", "happy", "awe", "heartbroken", "angry", "disgust",
                       "frightened", "distaste")  # fmt: skip
    votes = np.array([
        [2, 8, 0, 0, 0, 0, 0, 0, 0, 0],  # positive
        [2, 4, 0, 4, 0, 0, 0, 0, 0, 0],  # positive/negative tie
        [0, 0, 3, 0, 2, 0, 0, 1, 4, 0],  # surprise + anger + contempt = negative; unknown out
        [4, 0, 0, 0, 0, 0, 0, 0, 0, 6],  # not a face; neutral among the class votes
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # no class vote
    ])  # fmt: skip
    per_class = ferplus.class_votes(votes, folders, taxonomy)
    assert per_class.tolist() == [[8, 0, 2], [4, 4, 2], [0, 6, 0], [0, 0, 4], [0, 0, 0]]
    assert ferplus.majority(per_class).tolist() == [0, -1, 1, 2, -1]
    assert ferplus.is_tie(per_class).tolist() == [False, True, False, False, False]
    soft = ferplus.soft_targets(per_class)
    np.testing.assert_allclose(soft[1], [0.4, 0.4, 0.2])
    np.testing.assert_allclose(soft[2], [0, 1, 0])
    assert soft[4].sum() == 0
    assert ferplus.not_face(votes).tolist() == [False, False, False, True, True]
    # FER+'s side of `evaluate.without: [awe]`: faces the crowd called surprise most
    assert ferplus.top_folder_in(votes, folders, ["awe"]).tolist() == [0, 0, 1, 0, 0]


def test_contempt_folder_must_be_in_the_taxonomy() -> None:
    from fer.errors import ConfigError

    cfg = _config(Path("."))
    with pytest.raises(ConfigError, match=r"import\.ferplus_contempt"):
        ferplus.emotion_folders(cfg.import_.fer2013, "smug", Taxonomy(cfg.taxonomy))


# --- The soft-label loss ---------------------------------------------------------------------


def _train_cfg(**kw: object):
    cfg = _config(Path("."))
    return cfg.train.model_copy(update=kw)


def test_soft_loss_equals_hard_loss_for_one_hot_votes() -> None:
    import torch

    from fer.learning.training import make_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 3, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    train_y = np.array([0] * 10 + [1] * 4 + [2] * 2)
    for smoothing in (0.0, 0.1):
        loss = make_loss(_train_cfg(class_balance="none", label_smoothing=smoothing), train_y, 3)
        assert float(loss(logits, one_hot)) == pytest.approx(float(loss(logits, y)), abs=1e-6)
    # Class weights: the same per-sample terms; torch averages soft targets over the batch and
    # hard labels over the summed weights of the batch's labels.
    weighted = make_loss(_train_cfg(class_balance="weights"), train_y, 3)
    w = weighted.weight[y].sum() / len(y)
    assert float(weighted(logits, one_hot)) == pytest.approx(float(weighted(logits, y) * w))


def test_soft_loss_pulls_towards_the_vote_distribution() -> None:
    import torch

    from fer.learning.training import make_loss

    loss_fn = make_loss(_train_cfg(class_balance="none"), np.array([0, 1, 2]), 3)
    target = torch.tensor([[0.6, 0.3, 0.1]])
    logits = torch.zeros(1, 3, requires_grad=True)
    loss_fn(logits, target).backward()
    # d/dz of CE(softmax(z), t) is softmax(z) - t: down where the votes are, up where not.
    np.testing.assert_allclose(logits.grad.numpy(), [[1 / 3 - 0.6, 1 / 3 - 0.3, 1 / 3 - 0.1]],
                               atol=1e-6)  # fmt: skip
    z = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        loss_fn(z, target).backward()
        opt.step()
    np.testing.assert_allclose(torch.softmax(z, 1).detach().numpy(), target.numpy(), atol=1e-3)


# --- Training and evaluation on votes ---------------------------------------------------------

NO_TRACKING = {"enabled": False}


def _voted_project(fake_project, root: Path, labels: str, tracking: bool = False):
    """The train scene, with a manifest whose votes say positive ↔ negative (FER+ overrules
    every such label), one tie and one face without votes among the training faces."""
    params = {"train": {"epochs": 4, "labels": labels}}
    if not tracking:
        params["tracking"] = NO_TRACKING
    project = fake_project(root, "train", n_faces=60, params=params)
    splits = pd.read_parquet(root / "data/splits.parquet")
    rows = []
    for i, r in enumerate(splits.itertuples()):
        votes = [0] * 10
        column = {"positive": "sadness", "negative": "happiness", "neutral": "neutral"}[r.label]
        votes[ferplus.FERPLUS_COLUMNS.index(column)] = 7
        votes[0 if column != "neutral" else 1] = 3
        if r.split == "train" and i == 0:
            votes = [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]  # tie
        if r.split == "train" and i == 1:
            votes = [0] * 9 + [10]  # no class vote
        rows.append({"path": r.path, "id": r.image_id, "status": "ok", "ferplus_row": i,
                     **dict(zip(ferplus.VOTE_COLUMNS, votes, strict=True))})  # fmt: skip
    pd.DataFrame(rows).to_parquet(root / project.config.ingest.manifest)
    return project.config, splits


@pytest.mark.parametrize("labels", ["ferplus_majority", "ferplus_soft"])
def test_train_on_votes_then_evaluate_against_both_truths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_project, labels: str
) -> None:
    from fer.stages import evaluate, train

    tracking = labels == "ferplus_majority"  # one case also checks what MLflow records
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, splits = _voted_project(fake_project, tmp_path, labels, tracking=tracking)
    monkeypatch.chdir(tmp_path)
    summary = train.run(cfg, model="baseline")
    if tracking:
        from mlflow import MlflowClient

        run = MlflowClient().get_run(summary["mlflow_run_id"])
        assert run.data.tags["label_source"] == labels
        assert run.data.params["train.labels"] == labels
    reasons = {s["face_id"]: s["reason"] for s in summary["skipped"]}
    first, second = splits["face_id"].iloc[0], splits["face_id"].iloc[1]
    assert reasons[second] == "ferplus_no_votes"
    if labels == "ferplus_majority":
        assert reasons[first] == "ferplus_tie"
    else:
        assert first not in reasons  # a tie is a fine distribution
    n_train = int((splits["split"] == "train").sum())
    assert summary["n_train"] == n_train - len(reasons)
    assert summary["labels"] == labels
    # Learned from the votes (positive ↔ negative swapped), not from the split's labels.
    assert summary["val_macro_f1"] > 0.8

    metrics = evaluate.run(cfg, model="baseline")
    fp = metrics["ferplus"]
    assert fp["n"] == int((splits["split"] == "test").sum())
    assert fp["accuracy"] > 0.8 and metrics["accuracy"] < 0.6
    assert fp["agreement"] == pytest.approx(
        (splits.loc[splits["split"] == "test", "label"] == "neutral").mean()
    )
    assert set(fp["recall"]) == {"positive", "negative", "neutral"}
    assert np.array(fp["confusion"]).sum() == fp["n"]


def test_ferplus_labels_need_votes(tmp_path: Path, monkeypatch, fake_project) -> None:
    from fer.errors import InputError
    from fer.stages import train

    params = {"train": {"labels": "ferplus_soft"}, "tracking": NO_TRACKING}
    project = fake_project(tmp_path, "train", n_faces=9, params=params)
    pd.DataFrame({"path": ["x"], "id": ["y"], "status": ["ok"]}).to_parquet(
        tmp_path / project.config.ingest.manifest
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"train\.labels: ferplus_soft needs FER\+ votes"):
        train.run(project.config, model="baseline")


def test_not_face_votes_are_quarantined_after_the_audit() -> None:
    from fer.stages.validate import _quarantine_not_face

    votes = [[0] * 9 + [10], [4] + [0] * 8 + [6], [10] + [0] * 9, [0] * 9 + [10]]
    manifest = pd.DataFrame(
        {"path": ["a.png", "b.png", "c.png", "d.png"], "id": ["ia", "ib", "ic", "id"],
         "status": ["ok", "ok", "ok", "rejected"],
         **{c: [v[j] for v in votes] for j, c in enumerate(ferplus.VOTE_COLUMNS)}}
    )  # fmt: skip
    earlier = pd.DataFrame({"path": ["a.png"], "image_id": ["ia"], "reason": ["no_face"]})
    notes: list[str] = []
    q = _quarantine_not_face(manifest, earlier, notes)
    assert q.to_dict(orient="records") == [
        {"path": "a.png", "image_id": "ia", "reason": "no_face"},  # its first reason kept
        {"path": "b.png", "image_id": "ib", "reason": "ferplus_not_face"},
    ]
    assert notes == ["1 image(s) quarantined as ferplus_not_face (FER+ votes: NF)"]
    no_votes = manifest[["path", "id", "status"]]
    assert _quarantine_not_face(no_votes, earlier, []) is earlier


# --- The auditor benchmark's scoring ----------------------------------------------------------


def test_audit_scoring_on_known_errors() -> None:
    from benchmarks.bench_ferplus_audit import precision_at_recall, score_flags, score_quarantine

    given = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    truth = np.array([0, 1, 1, 0, 2, -1, 2, 1])  # errors: faces 1, 3, 6; face 5 has no truth
    flagged = np.array([0, 1, 0, 1, 1, 1, 0, 0], dtype=bool)
    score = np.array([0, 0.9, 0, 0.5, 0.8, 0.99, 0, 0])
    r = score_flags(given, truth, flagged, score)
    assert (r["n"], r["errors"], r["flagged"], r["true_flags"]) == (7, 3, 3, 2)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["flagged_share"] == pytest.approx(3 / 7) and r["base_rate"] == pytest.approx(3 / 7)
    # Down the scores: 0.9 (an error), 0.8 (not), 0.5 (an error); face 5 (0.99) is not scored.
    np.testing.assert_allclose(r["curve"]["precision"], [1, 0.5, 2 / 3])
    np.testing.assert_allclose(r["curve"]["recall"], [1 / 3, 1 / 3, 2 / 3])
    assert r["curve"]["score"] == [0.9, 0.8, 0.5]
    assert precision_at_recall(r, 0.3) == {
        "precision": 1.0,
        "recall": 1 / 3,
        "flagged_share": 1 / 7,
    }
    assert precision_at_recall(r, 0.5) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "flagged_share": 3 / 7}
    )
    assert precision_at_recall(r, 0.9) is None  # a third error is never flagged
    q = score_quarantine(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert (q["both"], q["precision"], q["recall"]) == (1, 0.5, 0.5)
    with pytest.raises(ValueError, match="one entry per face"):
        score_flags(given, truth[:3], flagged, score)


def test_crowd_reference_splits_votes_and_scores_them_against_the_rest() -> None:
    """K drawn votes and the rest always add up to the face's votes; unanimous crowds audit
    perfectly, and a face without other votes, or that is not audited, is left out."""
    from benchmarks.bench_ferplus_audit import crowd_accuracy, crowd_reference, crowd_split

    votes = np.array([[0, 10, 0], [7, 2, 1], [0, 0, 1], [0, 0, 0]])
    drawn, rest = crowd_split(votes, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(drawn + rest, votes)
    assert drawn.sum(axis=1).tolist() == [2, 2, 1, 0] and (drawn >= 0).all() and (rest >= 0).all()
    with pytest.raises(ValueError, match="at least 1"):
        crowd_split(votes, 0, np.random.default_rng(0))
    unanimous = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 0, 0], [0, 10, 0], [1, 0, 0]])
    given = np.array([0, 0, 2, 1, 1, 1])  # errors: faces 1 and 3; face 5 has no other vote
    audited = np.array([1, 1, 1, 1, 0, 1], bool)  # face 4 is not audited
    r = crowd_reference(given, unanimous, audited, 1)
    assert (r["n"], r["errors"]) == (4, 2)
    assert r["curve"]["precision"][:2] == [1.0, 1.0] and r["curve"]["recall"][1] == 1.0
    # Read as a model would: unanimous votes name the others' majority; 1 vote of [3, 0, 7]
    # names class 0 three times in ten.
    assert crowd_accuracy(unanimous, audited, 3) == {"n": 4, "accuracy": 1.0}
    split = np.repeat([[3, 0, 7]], 2000, axis=0)
    read = crowd_accuracy(split, np.ones(2000, bool), 1)
    assert read["n"] == 2000 and read["accuracy"] == pytest.approx(0.7, abs=0.04)


def test_audit_benchmark_runs_on_a_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    from benchmarks.bench_ferplus_audit import main
    from fer.config import load_config
    from tests.kit import ROOT

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    happy = [2, 8, 0, 0, 0, 0, 0, 0, 0, 0]
    sad = [2, 0, 0, 8, 0, 0, 0, 0, 0, 0]
    rows = [  # path, usage, given label, votes
        ("happy/a.png", "training", "positive", happy),
        ("happy/b.png", "training", "positive", sad),  # a real error, flagged
        ("heartbroken/c.png", "training", "negative", happy),  # a real error, missed
        ("heartbroken/d.png", "training", "negative", sad),  # flagged wrongly
        ("happy/e.png", "privatetest", "positive", sad),  # not audited: test split
        ("happy/f.png", "training", "positive", [0] * 9 + [10]),  # no face; quarantined
    ]
    (tmp_path / "data/validation").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    pd.DataFrame(
        [{"id": p, "path": p, "status": "ok", "usage": u, "label": lab, "ferplus_row": i,
          **dict(zip(ferplus.VOTE_COLUMNS, v, strict=True))}
         for i, (p, u, lab, v) in enumerate(rows)]
    ).to_parquet(tmp_path / "data/manifest.parquet")  # fmt: skip
    pd.DataFrame({"face_id": ["b", "d", "e"], "path": ["happy/b.png", "heartbroken/d.png",
                  "happy/e.png"], "score": [0.9, 0.7, 0.95]}).to_csv(
        tmp_path / "data/validation/label_issues.csv", index=False
    )  # fmt: skip
    pd.DataFrame({"path": ["happy/f.png"], "image_id": ["f"], "reason": ["no_face"]}).to_csv(
        tmp_path / "data/validation/quarantine.csv", index=False
    )
    raw = tmp_path / load_config(tmp_path / "params.yaml").ingest.raw_dir
    rng = np.random.default_rng(1)
    for path, *_ in rows:
        (raw / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / path), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    argv = ["--project", str(tmp_path), "--plot", "pr.png", "--out", "r.json"]
    assert main([*argv, "--rank-by", "pretrained:minixception", "--crowd", "1"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    a = result["auditor"]
    assert (a["n"], a["errors"], a["flagged"], a["true_flags"]) == (4, 2, 2, 1)
    alone = result["zero_shot"]["pretrained:minixception"]  # every audited face ranked
    assert (alone["n"], alone["errors"], alone["flagged"]) == (4, 2, 4)
    assert alone["at_recall_0.5"]["recall"] >= 0.5 and a["at_recall_0.5"]["precision"] == 1.0
    assert result["quarantine"]["both"] == 1 and result["quarantine"]["precision"] == 1.0
    # One vote of 10 cannot turn the other nine's majority here: the same faces and errors.
    crowd = result["crowd"]["1"]
    assert (crowd["n"], crowd["errors"], crowd["flagged"]) == (4, 2, 4)
    assert crowd["test"]["n"] == 1  # PrivateTest's one face
    assert cv2.imread(str(tmp_path / "pr.png")) is not None
    assert "precision 0.500, recall 0.500" in capsys.readouterr().out


def test_zero_shot_ranking_reads_each_face_and_its_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 − p(given label) from a packaged model: the three labels' scores of one face sum to 2,
    a face scores as its mirror image does (both are averaged; mini-Xception's cut is
    mirror-symmetric, face-api's legacy resize is not), and nothing is written."""
    from benchmarks.bench_ferplus_audit import zero_shot_scores
    from fer.config import load_config
    from tests.kit import ROOT

    rng = np.random.default_rng(0)
    face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 0)
    cv2.imwrite(str(tmp_path / "a.png"), face)
    cv2.imwrite(str(tmp_path / "mirror.png"), face[:, ::-1])
    cfg = load_config(ROOT / "params.yaml")
    monkeypatch.chdir(tmp_path)  # where params' relative cache_dir would land
    images = [tmp_path / "a.png"] * 3 + [tmp_path / "mirror.png"]
    scores = zero_shot_scores(cfg, "pretrained:minixception", images, np.array([0, 1, 2, 1]))
    assert scores[:3].sum() == pytest.approx(2.0, abs=1e-5)
    assert scores[3] == pytest.approx(scores[1], abs=1e-5)
    assert ((scores >= 0) & (scores <= 1)).all() and len(set(np.round(scores[:3], 6))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "mirror.png"]

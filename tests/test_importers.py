"""`fer import fer2013`: a tiny CSV written by the test, bad rows included, via the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer.cli import main
from fer.config import config_from_dict, load_config
from fer.data.images import load_rgb
from fer.data.importers import FER2013_EMOTIONS, BadRow, convert_fer2013_row, fer2013_folders
from fer.errors import ConfigError
from fer.labels import Taxonomy
from fer.stages import imports

FOLDERS = ("angry", "disgust", "frightened", "happy", "heartbroken", "awe", "neutral")


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def px(a: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in a.ravel())


def write_csv(path: Path) -> dict[int, np.ndarray]:
    """Rows 0, 2, 4 and 6 are good; 1, 3, 5, 7 are bad in different ways."""
    good = {0: pixels(0), 2: pixels(2), 4: pixels(4), 6: pixels(6)}
    lines = [
        "emotion,pixels,Usage",
        f"3,{px(good[0])},Training",
        f"1,{px(pixels(1))[:-4]},Training",  # wrong pixel count
        f"6,{px(good[2])},PublicTest",
        f"9,{px(pixels(3))},Training",  # emotion out of range
        f"0,{px(good[4])},PrivateTest",
        f"2,{px(pixels(5)).replace('1', 'x', 1)},Training",  # non-integer pixel
        f"3,{px(good[6])},Training",
        "happy,1 2 3,Training",  # non-integer emotion
    ]
    path.write_text("\n".join(lines) + "\n")
    return good


def test_import_writes_expected_files_and_pixels(
    tmp_path: Path, make_params: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "fer2013.csv"
    good = write_csv(src)
    out = tmp_path / "raw"
    code = main(["import", "fer2013", str(src), "--out", str(out), "--params", str(make_params())])
    assert code == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == [
        "angry/fer2013_privatetest_000004.png",
        "happy/fer2013_training_000000.png",
        "happy/fer2013_training_000006.png",
        "neutral/fer2013_publictest_000002.png",
    ]
    for row, rel in ((0, files[1]), (2, files[3]), (4, files[0]), (6, files[2])):
        with Image.open(out / rel) as im:
            assert im.size == (48, 48) and im.mode == "L"
            assert np.array_equal(np.asarray(im), good[row])
        assert np.array_equal(load_rgb(out / rel)[:, :, 0], good[row])
    text = capsys.readouterr().out
    assert "4 images" in text and "bad rows skipped: 4" in text
    for row in (1, 3, 5, 7):
        assert f"row {row} " in text


def test_bad_rows_have_reasons(tmp_path: Path, make_params: Callable[..., Path]) -> None:
    src = tmp_path / "fer2013.csv"
    write_csv(src)
    result = imports.run(
        load_config(make_params()), format="fer2013", csv=src, out=tmp_path / "raw"
    )
    reasons = dict(result["bad_rows"])
    assert sorted(reasons) == [1, 3, 5, 7]
    assert "2303 pixel values" in reasons[1]
    assert "out of range" in reasons[3]
    assert "'x" in reasons[5]
    assert "not an integer" in reasons[7]
    assert result["by_expression"] == {"angry": 1, "happy": 2, "neutral": 1}
    assert result["by_usage"] == {"privatetest": 1, "publictest": 1, "training": 2}
    assert result["unchanged"] == 0
    again = imports.run(
        load_config(make_params()), format="fer2013", csv=src, out=tmp_path / "raw"
    )
    assert again["written"] == 4 and again["unchanged"] == 4  # a re-run rewrites nothing


def test_mapping_outside_taxonomy_is_a_config_error(
    tmp_path: Path, make_params: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "fer2013.csv"
    write_csv(src)
    mapping = dict(zip(FER2013_EMOTIONS, FOLDERS, strict=True))
    mapping["surprise"] = "surprised"
    params = make_params(**{"import": {"fer2013": mapping}})
    code = main(
        ["import", "fer2013", str(src), "--out", str(tmp_path / "raw"), "--params", str(params)]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "import.fer2013.surprise" in err
    assert not (tmp_path / "raw").exists()


def test_missing_csv_and_wrong_header(
    tmp_path: Path, make_params: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    params = str(make_params())
    out = str(tmp_path / "raw")
    assert (
        main(["import", "fer2013", str(tmp_path / "nope.csv"), "--out", out, "--params", params])
        == 2
    )
    assert "CSV not found" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["import", "fer2013", str(other), "--out", out, "--params", params]) == 2
    assert "not a FER2013 CSV" in capsys.readouterr().err


def test_folders_follow_the_taxonomy() -> None:
    cfg = config_from_dict(
        {"taxonomy": {"positive": ["happy", "Joyful"], "negative": ["angry"], "neutral": ["calm"]}}
    )
    tax = Taxonomy(cfg.taxonomy)
    mapping = dict.fromkeys(("angry", "disgust", "fear", "sad"), "angry")
    mapping.update(happy="happy", surprise="JOYFUL", neutral="calm")
    assert fer2013_folders(mapping, tax)[5] == "joyful"
    with pytest.raises(ConfigError, match=r"import\.fer2013\.neutral: missing"):
        fer2013_folders({k: v for k, v in mapping.items() if k != "neutral"}, tax)
    with pytest.raises(ConfigError, match=r"import\.fer2013\.contempt"):
        fer2013_folders({**mapping, "contempt": "angry"}, tax)


def test_row_conversion_checks_range() -> None:
    bad = " ".join(["256"] + ["0"] * 2303)
    with pytest.raises(BadRow, match=r"outside 0\.\.255"):
        convert_fer2013_row(0, "0", bad, "Training", FOLDERS)
    img = convert_fer2013_row(12, " 5 ", px(pixels(1)), "", FOLDERS)
    assert img.relpath == "awe/fer2013_all_000012.png"

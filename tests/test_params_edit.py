"""params.yaml overrides keep comments, validate, and leave the file untouched on error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fer.config import load_config
from fer.errors import ConfigError
from fer.params_edit import apply_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_override_sets_value_and_keeps_comments(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, ["train.lr=0.0005", "detect.crop.size=72"])
    cfg = load_config(path)
    assert cfg.train.lr == 0.0005 and cfg.detect.crop.size == 72
    assert "# The one configuration file of fer" in path.read_text()


@pytest.mark.parametrize("bad", ["train.nope=1", "train.lr", "detect.crop.size=10"])
def test_bad_override_leaves_file_untouched(tmp_path, bad) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text()
    with pytest.raises(ConfigError):
        apply_overrides(path, [bad])
    assert path.read_text() == before

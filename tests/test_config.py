"""Typed config: every user error is one line naming the file and key, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from fer.cli import main
from fer.config import Config, load_config
from fer.errors import ConfigError
from fer.labels import Taxonomy

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_project_params_load_and_are_frozen() -> None:
    cfg = load_config(ROOT / "params.yaml")
    assert isinstance(cfg, Config)
    assert cfg.train.batch_size == 64 and cfg.train.epochs == 50 and cfg.train.lr == 0.001
    assert cfg.detect.crop.size >= 63
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.train.lr = 0.1  # type: ignore[misc]


def test_taxonomy_has_18_expressions_in_three_classes() -> None:
    tax = Taxonomy(load_config(ROOT / "params.yaml").taxonomy)
    assert len(tax.expressions) == 18
    assert tax.class_of("Happy") == "positive"
    assert tax.class_of("  CRYING ") == "negative"
    assert tax.class_of("calm") == "neutral"
    assert tax.class_of("bored") is None
    seed_negatives = [
        "angry",
        "annoyed",
        "anxious",
        "awe",
        "crying",
        "disgust",
        "distaste",
        "distressed",
        "fierce",
        "fighting",
        "frightened",
        "heartbroken",
        "hostile",
        "mad",
    ]
    assert all(tax.class_of(e) == "negative" for e in seed_negatives)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["train"].__setitem__("lrr", 0.1), "train.lrr: unknown key"),
        (lambda r: r.__setitem__("trian", {}), "trian: unknown key"),
        (lambda r: r["train"].__setitem__("epochs", "many"), "train.epochs"),
        (lambda r: r["detect"].__setitem__("min_confidence", 1.5), "detect.min_confidence"),
        (lambda r: r["detect"]["crop"].__setitem__("size", 32), "detect.crop.size"),
        (lambda r: r["split"].__setitem__("test", 0.5), "must be 1"),
        (lambda r: r["taxonomy"]["positive"].append("angry"), "in both"),
        (lambda r: r["ingest"].__setitem__("unknown_folders", "skip"), "ingest.unknown_folders"),
    ],
)
def test_bad_params_fail_with_one_line_naming_the_key(tmp_path, mutate, expected) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and expected in msg


def test_missing_and_invalid_params_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_cli_turns_config_errors_into_exit_2_and_one_line(tmp_path, capsys) -> None:
    path = _write(tmp_path, lambda r: r["ingest"].__setitem__("workerz", 2))
    assert main(["ingest", "--params", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ingest.workerz: unknown key" in err
    assert main(["--params", str(tmp_path / "missing.yaml"), "ingest"]) == 2
    assert "params file not found" in capsys.readouterr().err


def test_fer_timings_records_each_command_once(tmp_path) -> None:
    import json
    import subprocess
    import sys

    log = tmp_path / "times.jsonl"
    env = {"PATH": "/usr/bin:/bin", "FER_TIMINGS": str(log)}
    for args in (["--params", str(tmp_path / "missing.yaml"), "ingest"], ["split", "--help"]):
        subprocess.run([sys.executable, "-m", "fer.cli", *args], env=env, capture_output=True)
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]  # --help exits early
    assert record["argv"] == ["--params", str(tmp_path / "missing.yaml"), "ingest"]
    assert 0 < record["end"] - record["start"] < 60


def test_unknown_model_in_params_is_one_line_from_fer(tmp_path) -> None:
    """Not DVC's "missing param models.<name>": fer names the key and the accepted names."""
    import typing

    from fer.config import Architecture, config_from_dict
    from fer.errors import ConfigError
    from fer.learning.models import available

    taxonomy = {"positive": ["a"], "negative": ["b"], "neutral": ["c"]}
    with pytest.raises(ConfigError, match=r"train\.models: unknown model 'vgg'.*alexnet") as err:
        config_from_dict({"taxonomy": taxonomy, "train": {"models": ["alexnet", "vgg"]}})
    assert "\n" not in str(err.value)
    assert sorted(typing.get_args(Architecture)) == available()
    # A `models:` entry may build an architecture under its own name.
    named = config_from_dict(
        {"taxonomy": taxonomy, "train": {"models": ["zs"]},
         "models": {"zs": {"arch": "minixception", "epochs": 0}}}
    )  # fmt: skip
    assert named.architecture("zs") == "minixception"


def test_a_key_dvc_reads_is_required_by_fer_too(tmp_path) -> None:
    """In a DVC project, a params key a stage lists is required by fer as by DVC, never
    silently defaulted; elsewhere (a bare params file) sections still default."""
    import shutil

    from fer.config import load_config
    from fer.errors import ConfigError

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["split"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"split: missing \(dvc\.yaml's stage 'split' reads it"):
        load_config(tmp_path / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["models"]["baseline"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"models\.baseline: missing .*'train@baseline'"):
        load_config(tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").unlink()
    assert load_config(tmp_path / "params.yaml").model_spec("baseline").width == 32

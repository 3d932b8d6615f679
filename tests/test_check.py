"""`fer check`: a fresh run's metrics against the committed ones, within stated tolerances."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from fer.tolerance import Rule, compare, parse_rules

RULES = [
    Rule("*per_expression.*", abs=0.2),
    Rule("*accuracy*", abs=0.02),
    Rule("validate.json:label_issues", rel=0.05),
]
COMMITTED = {
    "alexnet.json": {
        "accuracy": 0.964, "n_test": 276, "model": "alexnet",
        "per_expression": {"awe": {"accuracy": 0.8, "n": 5}},
    },
    "validate.json": {"label_issues": 213, "gate_passed": True},
}  # fmt: skip


def _fresh(**changes: object) -> dict:
    fresh = json.loads(json.dumps(COMMITTED))
    for dotted, value in changes.items():
        *path, leaf = dotted.split("|")
        node = fresh
        for part in path:
            node = node[part]
        node[leaf] = value
    return fresh


def test_figures_within_their_tolerance_pass() -> None:
    fresh = _fresh(**{"alexnet.json|accuracy": 0.957, "validate.json|label_issues": 208})
    deviations, n = compare(COMMITTED, fresh, RULES)
    assert deviations == [] and n == 7


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"alexnet.json|accuracy": 0.94}, "alexnet.json:accuracy"),  # 0.024 > 0.02
        ({"validate.json|label_issues": 190}, "validate.json:label_issues"),  # 10.8 % > 5 %
        ({"alexnet.json|n_test": 275}, "alexnet.json:n_test"),  # no rule: must be equal
        ({"alexnet.json|model": "baseline"}, "alexnet.json:model"),
        ({"validate.json|gate_passed": False}, "validate.json:gate_passed"),  # bools: equal
    ],
)
def test_figures_outside_their_tolerance_are_named(change: dict, key: str) -> None:
    deviations, _ = compare(COMMITTED, _fresh(**change), RULES)
    assert [d.key for d in deviations] == [key]
    assert key in deviations[0].line()


def test_a_figure_missing_on_either_side_is_a_deviation() -> None:
    fresh = _fresh()
    del fresh["alexnet.json"]["n_test"]
    fresh["alexnet.json"]["extra"] = 1
    deviations, _ = compare(COMMITTED, fresh, RULES)
    assert {d.key for d in deviations} == {"alexnet.json:n_test", "alexnet.json:extra"}


def test_the_first_matching_rule_wins() -> None:
    loose = _fresh(**{"alexnet.json|per_expression|awe|accuracy": 0.6})  # one face of five
    assert compare(COMMITTED, loose, RULES)[0] == []
    assert compare(COMMITTED, loose, [Rule("*accuracy*", abs=0.02)])[0]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "non-empty `rules:`"),
        ({"rules": [{"abs": 1}]}, "needs a `key`"),
        ({"rules": [{"key": "*", "tol": 1}]}, "unknown fields"),
        ({"rules": [{"key": "*", "abs": -1}]}, ">= 0"),
    ],
)
def test_bad_rules_are_one_clear_error(doc: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("`", ".").replace("(", r"\(")):
        parse_rules(doc)


def test_the_repository_tolerances_parse() -> None:
    doc = yaml.safe_load(Path("metrics/tolerances.yaml").read_text(encoding="utf-8"))
    assert len(parse_rules(doc)) >= 5


def _alexnet(accuracy: float) -> dict:
    return _fresh(**{"alexnet.json|accuracy": accuracy})["alexnet.json"]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_fer_check_command_in_a_git_project(tmp_path: Path, monkeypatch) -> None:
    from fer.cli import main

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name, doc in COMMITTED.items():
        (metrics / name).write_text(json.dumps(doc))
    rules = {"rules": [{"key": r.key, "abs": r.abs, "rel": r.rel} for r in RULES]}
    (metrics / "tolerances.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "params.yaml").write_text(Path("params.yaml").read_text(encoding="utf-8"))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 0
    (metrics / "alexnet.json").write_text(json.dumps(_alexnet(0.95)))
    assert main(["check"]) == 0  # 0.014 from the committed 0.964
    (metrics / "alexnet.json").write_text(json.dumps(_alexnet(0.90)))
    assert main(["check"]) == 1
    (metrics / "alexnet.json").unlink()
    assert main(["check"]) == 2  # nothing to compare: run the pipeline first
    assert main(["check", "--against", "no-such-rev"]) == 2

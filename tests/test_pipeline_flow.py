"""The Prefect flow's view of the pipeline comes from dvc.yaml, and a failed gate is told from a
fault by the stage command's exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer.errors import FerError, GateError
from tests.pipeline_truth import ROOT, stage_entries


def test_stages_and_metrics_come_from_dvc_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pipeline import chosen_stages, dvc_stages

    monkeypatch.chdir(ROOT)
    stages = dvc_stages()
    names = [s.name for s in stages]
    assert sorted(names) == sorted(stage_entries())
    assert names[:5] == ["sample", "ingest", "detect", "validate", "split"]
    assert names.index("train@alexnet") < names.index("evaluate@alexnet")
    metrics = {s.name: s.metrics for s in stages}
    assert metrics["validate"] == ("metrics/validate.json",)
    assert metrics["evaluate@baseline"] == ("metrics/baseline.json",)
    only = [s.name for s in chosen_stages(stages, ["alexnet", "baseline"], ["baseline"])]
    assert "train@alexnet" not in only and "evaluate@baseline" in only and "split" in only


def test_gate_failure_is_the_commands_exit_code() -> None:
    from flows.pipeline import command_exit_code

    dvc = "ERROR: failed to reproduce 'validate': failed to run: fer validate, exited with {}"
    assert command_exit_code(dvc.format(GateError.exit_code)) == 1
    assert command_exit_code(dvc.format(FerError.exit_code)) == 2
    assert command_exit_code("the data gate was mentioned but nothing exited") is None


def test_pipeline_refuses_a_params_file_dvc_would_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.launcher import check_params_file

    monkeypatch.chdir(ROOT)
    check_params_file(None)
    check_params_file(Path("params.yaml"))
    with pytest.raises(FerError, match=r"read params\.yaml"):
        check_params_file(tmp_path / "other.yaml")

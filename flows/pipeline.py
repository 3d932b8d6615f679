"""The ``pipeline`` Prefect flow: one task per DVC stage, run through ``dvc repro``.

Prefect never bypasses DVC: each task asks DVC whether its stage is stale and, if so, runs
``dvc repro --single-item <stage>``. So a flow run after ``dvc repro`` does no duplicate work,
and ``dvc repro`` after a flow run finds everything up to date. Every stage run shows in the
Prefect UI as a task run with its log, and a markdown artifact with its outcome and metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from fer.errors import FerError, GateError
from fer.mappings import flatten

DATA_STAGES = ("sample", "ingest", "detect", "validate", "split")
PER_MODEL_STAGES = ("train", "evaluate")


class StageFailed(FerError):
    """A DVC stage command failed (after retries); the flow run fails with its output."""

    exit_code = 1


@dataclass(frozen=True)
class StageResult:
    """What one task did: ``ran`` or ``up to date``, with timing and the stage's metrics."""

    stage: str
    action: str
    seconds: float
    metrics: dict[str, Any]


def dvc_executable() -> str:
    """The ``dvc`` beside this interpreter (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else "dvc"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    # Stage commands (`fer ...`) must come from the same venv as this flow.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _metrics_file(stage: str) -> Path | None:
    """The metrics file a stage writes (see dvc.yaml), for the task's artifact."""
    name, _, item = stage.partition("@")
    if name == "detect":
        return Path("metrics/detect.json")
    if name == "validate":
        return Path("metrics/validate.json")
    if name == "evaluate":
        return Path(f"metrics/{item}.json")
    return None


def _read_metrics(stage: str) -> dict[str, Any]:
    path = _metrics_file(stage)
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flattened metrics, scalars only (for markdown and table artifacts)."""
    return {k: v for k, v in flatten(metrics).items() if isinstance(v, int | float | str | bool)}


def _artifact_key(stage: str) -> str:
    return "stage-" + stage.replace("@", "-").replace("_", "-").lower()


def _retry_unless_gate(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures (a DVC lock, I/O); a failed data gate is a verdict, not a fault."""
    try:
        state.result()
    except GateError:
        return False
    except Exception:
        return True
    return False


@task(retries=1, retry_delay_seconds=5, retry_condition_fn=_retry_unless_gate)
def run_stage(stage: str, force: bool = False) -> StageResult:
    """``dvc repro`` one stage (DVC skips it when up to date), streaming output to the log."""
    logger = get_run_logger()
    start = time.perf_counter()
    # No separate `dvc status` first: `dvc repro` checks the lock itself and skips an unchanged
    # stage, so one DVC process per stage keeps the flow's overhead small.
    cmd = [dvc_executable(), "repro", "--single-item", stage] + (["--force"] if force else [])
    logger.info("%s: running `%s`", stage, " ".join(cmd[1:]))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line:
            logger.info("%s | %s", stage, line)
    code = proc.wait()
    output = "\n".join(lines[-60:])
    if code != 0:
        create_markdown_artifact(
            key=_artifact_key(stage),
            markdown=f"## `{stage}` failed (exit {code})\n\n```\n{output}\n```\n",
            description=f"{stage} failed",
        )
        if stage == "validate" and "gate" in output.lower():
            raise GateError(f"validate: the data gate failed; see the artifact\n{output}")
        raise StageFailed(f"{stage}: `dvc repro` exited with {code}\n{output}")
    ran = any(line.startswith("Running stage") for line in lines)
    if not ran:
        logger.info("%s: up to date (DVC lock matches), skipped", stage)
    action = "ran" if ran else "up to date"
    result = StageResult(stage, action, time.perf_counter() - start, _read_metrics(stage))
    _publish(result, output if ran else "")
    return result


def _publish(result: StageResult, output: str) -> None:
    rows = "".join(f"| {k} | {v} |\n" for k, v in _scalars(result.metrics).items())
    table = f"\n| metric | value |\n|---|---|\n{rows}" if rows else ""
    tail = f"\n<details><summary>output</summary>\n\n```\n{output}\n```\n</details>\n"
    create_markdown_artifact(
        key=_artifact_key(result.stage),
        markdown=f"## `{result.stage}`: {result.action} in {result.seconds:.1f} s\n{table}"
        + (tail if output else ""),
        description=f"{result.stage}: {result.action}",
    )


def model_stages(models: list[str]) -> list[str]:
    """``train@m`` then ``evaluate@m`` for each model, in that order."""
    return [f"{stage}@{m}" for m in models for stage in PER_MODEL_STAGES]


@flow(name="pipeline", log_prints=True)
def pipeline(
    models: list[str] | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    params: str = "params.yaml",
) -> list[dict[str, Any]]:
    """Run sample → ingest → detect → validate → split → train@m → evaluate@m via DVC.

    Args:
        models: models to train and evaluate (default: ``train.models`` in params).
        overrides: ``key=value`` params edits applied to params.yaml first, like
            ``dvc exp run -S`` (e.g. ``["train.lr=0.0005"]``).
        force: re-run every stage even when DVC finds it up to date.
        params: the params file (DVC reads ``params.yaml`` in the project root).
    """
    from fer.config import load_config
    from fer.params_edit import apply_overrides

    if overrides:
        apply_overrides(Path(params), overrides)
    cfg = load_config(params)
    chosen = list(models or cfg.train.models)
    unknown = sorted(set(chosen) - set(cfg.train.models))
    if unknown:
        raise FerError(
            f"model {unknown[0]!r} is not in train.models {cfg.train.models} "
            "(dvc.yaml's train/evaluate stages loop over that list)"
        )
    stages = [*DATA_STAGES, *model_stages(chosen)]
    results = [
        run_stage.with_options(name=stage, task_run_name=stage)(stage, force) for stage in stages
    ]

    comparison = [
        {"model": m, **_scalars(_read_metrics(f"evaluate@{m}"))}
        for m in chosen
        if _read_metrics(f"evaluate@{m}")
    ]
    if comparison:
        keep = ("model", "accuracy", "macro_f1", "true_label_accuracy")
        create_table_artifact(
            key="model-comparison",
            table=[{k: row.get(k) for k in keep} for row in comparison],
            description="Test-split metrics per model",
        )
    return [asdict(r) for r in results]


def run(cfg: Any, *, models: list[str] | None = None, force: bool = False) -> None:
    """``fer pipeline``: one flow run of the whole pipeline; prints what each stage did."""
    results = pipeline(models=models, force=force)
    for r in results:
        print(f"{r['stage']:<18} {r['action']:<11} {r['seconds']:7.1f} s")

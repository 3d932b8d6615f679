"""The ``pipeline`` Prefect flow: one task per DVC stage, run through ``dvc repro``.

Prefect never bypasses DVC: the stages, their order and their metrics files come from
``dvc.yaml`` (through DVC's own index), and each task runs ``dvc repro --single-item <stage>``,
which skips a stage whose lock entry matches. So a flow run after ``dvc repro`` does no
duplicate work, and ``dvc repro`` after a flow run finds everything up to date. Every stage
run shows in the Prefect UI as a task run with its log, and a markdown artifact with its
outcome and metrics. A failed data gate is told from a fault by the stage command's own exit
code (1, :class:`fer.errors.GateError`) and is not retried.
"""

from __future__ import annotations

import json
import os
import re
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

PROJECT_PARAMS = Path("params.yaml")
"""The params file DVC's stages read (dvc.yaml names no other; see flows.launcher)."""
_EXITED = re.compile(r"exited with (-?\d+)")


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


@dataclass(frozen=True)
class Stage:
    """One DVC stage as dvc.yaml defines it (``foreach`` items expanded: ``train@alexnet``)."""

    name: str
    metrics: tuple[str, ...]

    @property
    def item(self) -> str | None:
        """The ``foreach`` item (a model name), or None for a plain stage."""
        return self.name.partition("@")[2] or None


def dvc_stages(root: str | Path = ".") -> list[Stage]:
    """Every stage of the project's ``dvc.yaml`` in run order (upstream first, then file order)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        position = {s: i for i, s in enumerate(stages)}
        # DVC's graph points from a stage to the stages it depends on.
        upstream_first = nx.reverse_view(repo.index.graph)
        order = nx.lexicographical_topological_sort(upstream_first, key=lambda s: position[s])
        return [
            Stage(s.addressing, tuple(str(o.def_path) for o in s.outs if o.metric)) for s in order
        ]


def _read_metrics(stage: Stage) -> dict[str, Any]:
    """The stage's metrics files, merged (one file per stage in this project)."""
    out: dict[str, Any] = {}
    for name in stage.metrics:
        try:
            out.update(json.loads(Path(name).read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


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
def run_stage(info: Stage, force: bool = False) -> StageResult:
    """``dvc repro`` one stage (DVC skips it when up to date), streaming output to the log."""
    logger = get_run_logger()
    stage = info.name
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
        if command_exit_code(output) == GateError.exit_code:
            raise GateError(f"{stage}: the data gate failed; see the artifact\n{output}")
        raise StageFailed(f"{stage}: `dvc repro` exited with {code}\n{output}")
    ran = any(line.startswith("Running stage") for line in lines)
    if not ran:
        logger.info("%s: up to date (DVC lock matches), skipped", stage)
    action = "ran" if ran else "up to date"
    result = StageResult(stage, action, time.perf_counter() - start, _read_metrics(info))
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


def command_exit_code(dvc_output: str) -> int | None:
    """The failed stage command's own exit code, from DVC's ``exited with N`` line.

    ``fer`` commands exit 1 only for a failed data gate (:class:`GateError`) and 2 for a user
    error, so the code tells a verdict on the data from a fault.
    """
    codes = _EXITED.findall(dvc_output)
    return int(codes[-1]) if codes else None


def chosen_stages(stages: list[Stage], all_models: list[str], models: list[str]) -> list[Stage]:
    """The stages to run: every stage, less the per-model ones of models not chosen."""
    skip = set(all_models) - set(models)
    return [s for s in stages if s.item not in skip]


@flow(name="pipeline", log_prints=True)
def pipeline(
    models: list[str] | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Run every stage of dvc.yaml (sample → … → evaluate@m) through DVC, in order.

    Args:
        models: models to train and evaluate (default: ``train.models`` in params).
        overrides: ``key=value`` params edits applied to params.yaml first, like
            ``dvc exp run -S`` (e.g. ``["train.lr=0.0005"]``).
        force: re-run every stage even when DVC finds it up to date.
    """
    from fer.config import load_config
    from fer.params_edit import apply_overrides

    if overrides:
        apply_overrides(PROJECT_PARAMS, overrides)
    cfg = load_config(PROJECT_PARAMS)
    chosen = list(models or cfg.train.models)
    unknown = sorted(set(chosen) - set(cfg.train.models))
    if unknown:
        raise FerError(
            f"model {unknown[0]!r} is not in train.models {cfg.train.models} "
            "(dvc.yaml's train/evaluate stages loop over that list)"
        )
    stages = chosen_stages(dvc_stages(), cfg.train.models, chosen)
    results = [run_stage.with_options(name=s.name, task_run_name=s.name)(s, force) for s in stages]
    comparison = [
        {"model": s.item, **_scalars(metrics)}
        for s in stages
        if s.item and s.name.startswith("evaluate@") and (metrics := _read_metrics(s))
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

"""Helpers for end-to-end tests: a throw-away copy of the project with tiny params.

The copy is its own git + DVC repository in ``tmp_path``, so ``dvc repro`` and ``dvc exp`` run
for real without touching the developer's workspace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small enough that the whole pipeline runs in well under a minute of compute on 2 cores.
TINY_OVERRIDES = [
    "sample.n=60",
    "sample.workers=1",
    "ingest.workers=1",
    "detect.workers=1",
    "validate.folds=2",
    "validate.cv_epochs=1",
    "validate.levels.class_balance=warning",
    "train.epochs=2",
    "train.batch_size=32",
    "train.early_stopping_patience=0",
    "evaluate.gallery_size=4",
]

_TOP_LEVEL_SKIP = {
    ".git", ".venv", "data", "models", "metrics", "plots", "predictions", "mlruns", "mlflow.db",
    ".fer_cache", "tmp", "docs", "benchmarks", "tests", "dvc.lock",
}  # fmt: skip
_ANYWHERE_SKIP = shutil.ignore_patterns(
    "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"
)


def _COPY_IGNORE(folder: str, names: list[str]) -> set[str]:
    """Skip workspace outputs at the top level only (``fer/data`` is code, ``data/`` is not)."""
    skip = set(_ANYWHERE_SKIP(folder, names))
    here = Path(folder).resolve()
    if here == ROOT:
        skip |= _TOP_LEVEL_SKIP & set(names)
    elif here == ROOT / ".dvc":
        skip |= {"cache", "tmp"} & set(names)  # the workspace's data cache stays behind
    return skip


def env(project: Path) -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH, telemetry off, own Prefect home."""
    e = dict(os.environ)
    e.update(
        PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GIT_AUTHOR_NAME="fer test", GIT_AUTHOR_EMAIL="test@fer.local",
        GIT_COMMITTER_NAME="fer test", GIT_COMMITTER_EMAIL="test@fer.local",
    )  # fmt: skip
    e.pop("MLFLOW_TRACKING_URI", None)
    return e


def sh(
    project: Path,
    *cmd: str,
    check: bool = True,
    timeout: float = 900,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command in the project copy; on failure raise with its output."""
    proc = subprocess.run(
        list(cmd),
        cwd=project,
        env={**env(project), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def make_project(dest: Path, overrides: list[str] | None = None) -> Path:
    """Copy code + dvc.yaml + params.yaml to ``dest``, shrink params, and commit as a git repo."""
    from fer.params_edit import apply_overrides

    shutil.copytree(ROOT, dest, ignore=_COPY_IGNORE)
    apply_overrides(dest / "params.yaml", [*TINY_OVERRIDES, *(overrides or [])])
    sh(dest, "git", "init", "-q", "-b", "main")
    if not (dest / ".dvc").exists():
        sh(dest, str(BIN / "dvc"), "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "test project")
    return dest

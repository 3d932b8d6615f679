"""Two fresh copies of the project give the same bytes; and killing `dvc repro` at random points
in detect and train, again and again, finishes equal to an uninterrupted run (nothing
half-written, training resumed from its checkpoint)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.kit import BIN, env, sh

pytestmark = pytest.mark.slow
DVC = str(BIN / "dvc")
ONE_MODEL = ["train.models=[baseline]", "train.epochs=4"]
VOLATILE = {  # wall-clock fields, and work counts that depend on what an earlier run left
    "seconds",
    "train_seconds",
    "images_per_s",
    "files_per_s",
    "cache_hits",
    "detected",
    "crops_written",
    "crops_removed",
}


def _kill_during(project: Path, stage: str, delay: float) -> bool:
    """Start `dvc repro`; SIGKILL its whole process group ``delay`` s into ``stage``.

    Returns whether it was killed (False: the pipeline finished before the stage came up).
    """
    proc = subprocess.Popen(
        [DVC, "repro"], cwd=project, env=env(project), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"Running stage '{stage}"):
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
    proc.wait()
    return False


def _metrics(project: Path) -> dict:
    out = {}
    for path in sorted((project / "metrics").glob("*.json")):
        data = json.loads(path.read_text())
        out[path.name] = {k: v for k, v in data.items() if k not in VOLATILE}
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory, project_copy) -> Path:
    """One uninterrupted `dvc repro` of a fresh copy."""
    project = project_copy(tmp_path_factory.mktemp("straight") / "p", ONE_MODEL)
    sh(project, DVC, "repro")
    return project


def output_hashes(project: Path) -> dict[str, str]:
    """Every stage output's hash in dvc.lock: ``{"stage: path": md5}``."""
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    return {
        f"{stage}: {out['path']}": out["md5"]
        for stage, entry in lock["stages"].items()
        for out in entry.get("outs", [])
    }


def test_two_fresh_copies_give_identical_outputs(straight: Path, tmp_path: Path, project_copy):
    """Same code, params and seeds on one machine: every output, models and metrics included,
    is the same bytes (no wall time, run id or temp name inside any of them)."""
    twin = project_copy(tmp_path / "twin", ONE_MODEL)
    sh(twin, DVC, "repro")
    a, b = output_hashes(straight), output_hashes(twin)
    assert len(a) >= 15, sorted(a)  # every stage's outputs, metrics and plots
    assert a == b, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}


def test_killed_repro_resumes_to_the_same_result(tmp_path: Path, straight: Path, project_copy):
    chaos = project_copy(tmp_path / "chaos", ONE_MODEL)
    rng = random.Random(0)
    kills = 0
    for stage in ("detect", "train@baseline", "detect", "train@baseline"):
        kills += _kill_during(chaos, stage, rng.uniform(0.5, 4.0))
    assert kills >= 2  # at least one kill landed in each stage's first round
    sh(chaos, DVC, "repro")
    assert json.loads(sh(chaos, DVC, "status", "--json").stdout) == {"ingest": ["always changed"]}
    for table in ("data/manifest.parquet", "data/faces.parquet", "data/splits.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(straight / table), pd.read_parquet(chaos / table), obj=table
        )
    a, b = _metrics(straight), _metrics(chaos)
    assert a.keys() == b.keys()
    for name in a:
        if name == "baseline.json":  # resumed training: equal up to float reduction order
            for key in ("accuracy", "macro_f1"):
                assert b[name][key] == pytest.approx(a[name][key], abs=0.02), key
        else:
            assert a[name] == b[name], name
    assert not list(chaos.rglob("*.tmp.*"))  # no half-written output left anywhere

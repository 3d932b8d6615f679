"""Kill `dvc repro` at random points in detect and train, again and again: the finished pipeline
equals an uninterrupted one (nothing half-written, training resumed from its checkpoint)."""

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


def test_killed_repro_resumes_to_the_same_result(tmp_path: Path, project_copy) -> None:
    straight = project_copy(tmp_path / "straight", ONE_MODEL)
    sh(straight, DVC, "repro")
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

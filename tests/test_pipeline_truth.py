"""dvc.yaml tells the truth: each stage lists the code its command runs, and the committed
dvc.lock matches the code and params in the tree (so `dvc repro` on a clean clone re-runs
nothing it does not have to). The params half is checked in tests/test_e2e.py, from the keys a
real `dvc repro` read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline_truth import ROOT, command_module, covered, imported_files, stage_entries

# The dispatcher every command passes through: it parses arguments and imports the stage;
# its text (help, argument names) changes no result, so it is not a dependency of any stage.
NOT_DEPS = {"fer/cli.py"}
# Every stage lists the shared foundation, the params schema included, even where it only
# reads it through another module.
FOUNDATION = {
    "fer/__init__.py", "fer/config.py", "fer/errors.py", "fer/io.py", "fer/numerics.py",
    "fer/progress.py",
}  # fmt: skip


@pytest.mark.parametrize("stage", sorted(stage_entries()))
def test_stage_deps_cover_the_code_its_command_imports(stage: str) -> None:
    entry = stage_entries()[stage]
    files = (imported_files(command_module(entry["cmd"])) | FOUNDATION) - NOT_DEPS
    missing = sorted(f for f in files if not covered(f, entry["deps"]))
    assert not missing, f"dvc.yaml stage {stage!r} imports code it does not list: {missing}"


@pytest.mark.parametrize("stage", sorted(stage_entries()))
def test_stage_lists_no_code_it_does_not_use(stage: str) -> None:
    entry = stage_entries()[stage]
    files = imported_files(command_module(entry["cmd"]))
    code = [d for d in entry["deps"] if d.startswith(("fer/", "flows/")) and d not in FOUNDATION]
    unused = [d for d in code if not any(covered(f, [d]) for f in files)]
    assert not unused, f"dvc.yaml stage {stage!r} lists code it never imports: {unused}"


def test_committed_lock_matches_the_code_and_params() -> None:
    """`dvc status` on this tree: no stage may see changed code or params.

    Data outputs are not in git (a clean clone has none), so only code and params changes
    count. When this fails after a code change, re-run the pipeline (`make run`) and commit
    the new dvc.lock with the change.
    """
    lock = ROOT / "dvc.lock"
    if not lock.is_file():
        pytest.skip("no dvc.lock committed")
    dvc = Path(sys.executable).with_name("dvc")
    proc = subprocess.run(
        [str(dvc), "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"DVC_NO_ANALYTICS": "1", "PATH": str(dvc.parent)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout or "{}")
    stale = {}
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                continue
            code = {
                path: why
                for path, why in change.get("changed deps", {}).items()
                if path.startswith(("fer/", "flows/", "params.yaml"))
            }
            if code:
                stale[stage] = code
    assert not stale, f"dvc.lock is stale for {stale}: run `make run` and commit dvc.lock"

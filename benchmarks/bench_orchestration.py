"""Orchestration overhead: `dvc repro` and `fer pipeline` vs the stage commands run directly.

All three build the same pipeline from scratch in throw-away copies of the project, in one run:
  1. direct:   each stage's `fer ...` command, one after another (the bound);
  2. dvc:      `dvc repro` (hashing, lock, cache);
  3. pipeline: `fer pipeline` (a Prefect flow run whose tasks call `dvc repro` per stage).
Every `fer` process logs its own wall time (process start to exit; `FER_TIMINGS`), so each run
is also compared with the stage commands inside it: that ratio is free of the run-to-run spread
of the stages themselves (the K-fold pass in validate varies by several seconds between runs).
Goal: ≤ 1.15.

    python benchmarks/bench_orchestration.py                 # default sandbox, 5 epochs
    python benchmarks/bench_orchestration.py --set train.epochs=50   # the full defaults
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kit import BIN, ROOT, sh

STAGE_COMMANDS = [
    ["fer", "sample"], ["fer", "ingest"], ["fer", "detect"], ["fer", "validate"], ["fer", "split"],
]  # fmt: skip


def make(dest: Path, overrides: list[str]) -> Path:
    from fer.params_edit import apply_overrides
    from tests.kit import copy_ignore

    shutil.copytree(ROOT, dest, ignore=copy_ignore)
    if overrides:
        apply_overrides(dest / "params.yaml", overrides)
    sh(dest, "git", "init", "-q", "-b", "main")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "bench")
    return dest


def timed(project: Path, *cmd: str) -> tuple[float, float]:
    """Wall seconds of ``cmd``, and the summed wall seconds of the stage commands it ran."""
    log = project.parent / f"{project.name}-timings.jsonl"  # outside the DVC workspace
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    sh(project, *cmd, timeout=7200, extra_env={"FER_TIMINGS": str(log)})
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    inner = sum(r["end"] - r["start"] for r in rows if "pipeline" not in r["argv"])
    return wall, inner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=["train.epochs=5"], metavar="KEY=VALUE")
    ap.add_argument("--skip-dvc", action="store_true", help="time direct and `fer pipeline` only")
    args = ap.parse_args()
    from fer.config import load_config

    with tempfile.TemporaryDirectory(prefix="fer-bench-orch-") as tmp:
        direct = make(Path(tmp) / "direct", args.set)
        models = load_config(direct / "params.yaml").train.models
        commands = STAGE_COMMANDS + [
            c
            for m in models
            for c in (["fer", "train", "--model", m], ["fer", "evaluate", "--model", m])
        ]
        per_stage = {" ".join(c[1:]): timed(direct, *[str(BIN / c[0]), *c[1:]]) for c in commands}
        t_direct = sum(wall for wall, _ in per_stage.values())
        runs = {"stage commands, direct": (t_direct, sum(i for _, i in per_stage.values()))}
        if not args.skip_dvc:
            dvc = make(Path(tmp) / "dvc", args.set)
            runs["`dvc repro`"] = timed(dvc, str(BIN / "dvc"), "repro")
        flow = make(Path(tmp) / "flow", args.set)
        runs["`fer pipeline` (Prefect → dvc)"] = timed(flow, str(BIN / "fer"), "pipeline")

    print("| stage | seconds |\n|---|---|")
    for name, (wall, _) in per_stage.items():
        print(f"| {name} | {wall:.1f} |")
    print()
    print(
        "| run | wall s | its stage commands, s | overhead s | wall / its stages | wall / direct |"
    )
    print("|---|---|---|---|---|---|")
    for name, (wall, inner) in runs.items():
        print(
            f"| {name} | {wall:.1f} | {inner:.1f} | {wall - inner:.1f} | {wall / inner:.2f} "
            f"| {wall / t_direct:.2f} |"
        )
    sets = " ".join(f"--set {s}" for s in args.set) + (" --skip-dvc" if args.skip_dvc else "")
    print(f"\ncommand: python benchmarks/bench_orchestration.py {sets}")


if __name__ == "__main__":
    main()

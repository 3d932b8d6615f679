"""`fer check`: hold this run's metrics to the committed ones, within the stated tolerances.

Two runs on one machine give the same bytes; on another machine the figures move a little (see
fer/tolerance.py). After ``make run`` on a fresh clone, ``git status`` then shows rewritten
metrics; ``fer check`` says whether they are the committed result within tolerance (exit 0) or
a real change (exit 1, one line per figure out of bounds). It compares ``evaluate.metrics_dir``
in the work tree with the same folder at a git revision (default ``HEAD``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from fer.errors import GateError, InputError
from fer.tolerance import compare, parse_rules

if TYPE_CHECKING:
    from fer.config import Config

TOLERANCES = "tolerances.yaml"


def run(cfg: Config, *, against: str = "HEAD", tolerances: Path | None = None) -> dict[str, Any]:
    """Compare; print the verdict. Returns ``{"compared", "deviations", "against"}``.

    Raises:
        InputError: not a git work tree, no metrics at ``against`` or here, bad tolerances.
        GateError: figures outside their tolerance (exit 1).
    """
    folder = Path(cfg.evaluate.metrics_dir)
    rules_path = tolerances or folder / TOLERANCES
    rules = _read_rules(rules_path)
    committed = _committed_metrics(folder, against)
    fresh = {name: _read_json(folder / name) for name in sorted(committed)}
    missing = [name for name, doc in fresh.items() if doc is None]
    if missing:
        raise InputError(f"{folder}: no {', '.join(missing)} here: run `dvc repro` first")
    deviations, n = compare(committed, fresh, rules)
    for d in deviations:
        print(f"  {d.line()}")
    verdict = f"{n} figures in {len(committed)} files vs {against}"
    if deviations:
        raise GateError(
            f"{len(deviations)} of {verdict} outside their tolerance ({rules_path}): a real "
            "change, not machine noise"
        )
    print(f"check: {verdict}: all within tolerance ({rules_path})")
    return {"compared": n, "deviations": [], "against": against}


def _read_rules(path: Path) -> list:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        return parse_rules(doc if isinstance(doc, dict) else {})
    except OSError as exc:
        raise InputError(f"{path}: cannot read tolerances ({exc.strerror})") from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: {str(exc).splitlines()[0]}") from None


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise InputError("git not found: `fer check` compares with a git revision") from None
    if proc.returncode != 0:
        raise InputError(f"git {' '.join(args)}: {proc.stderr.strip().splitlines()[0]}")
    return proc.stdout


def _committed_metrics(folder: Path, rev: str) -> dict[str, dict[str, Any]]:
    """``{file name: metrics}`` of every JSON file in ``folder`` at ``rev``."""
    prefix = _git("rev-parse", "--show-prefix").strip()
    tree = PurePosixPath(prefix or ".") / folder.as_posix()
    names = [
        PurePosixPath(p).name
        for p in _git("ls-tree", "--name-only", f"{rev}:{tree.as_posix()}").splitlines()
        if p.endswith(".json")
    ]
    if not names:
        raise InputError(f"no metrics JSON in {folder} at {rev}")
    return {n: json.loads(_git("show", f"{rev}:{(tree / n).as_posix()}")) for n in names}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable metrics ({exc})") from None

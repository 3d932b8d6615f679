"""The layering rules of DESIGN.md §2, checked by import-linter on every run of the suite."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "--no-cache", "--config", str(ROOT / ".importlinter")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and proc.stdout.count("KEPT") >= 5


def test_every_room_is_under_the_mlflow_rule() -> None:
    """A new module of fer is covered by 'mlflow only in fer.tracking' without anyone
    remembering to add it."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    listed = set(parser["importlinter:contract:mlflow-only-in-tracking"]["source_modules"].split())
    rooms = {
        f"fer.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "fer").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert rooms - {"fer.tracking"} == listed, sorted(rooms ^ (listed | {"fer.tracking"}))

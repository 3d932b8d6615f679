"""Shared fixtures: a shrunk params file in tmp_path (keep this file small)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_params(tmp_path: Path) -> Callable[..., Path]:
    """Write ``tmp_path/params.yaml``: the repo taxonomy plus the given sections.

    Example: ``make_params(ingest={"raw_dir": str(raw), "workers": 1})``.
    """

    def _make(**sections: Any) -> Path:
        repo = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        params: dict[str, Any] = {"taxonomy": repo["taxonomy"], **sections}
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return path

    return _make

"""Shared by the detection benchmarks: a config rooted in a scratch folder, quiet calls."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
_PARAMS: dict[str, Any] = {}


def detect_config(root: Path, run: str | None = None, **detect: Any) -> Any:
    """The project's params with sample/ingest under ``root`` and detect outputs under
    ``root/run`` (or ``root``); ``detect`` overrides detect settings; tracking off."""
    from fer.config import config_from_dict

    # Read once: a params.yaml edited while the benchmark runs must not change it midway.
    if not _PARAMS:
        _PARAMS.update(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw = copy.deepcopy(_PARAMS)
    out = root / run if run else root
    raw["sample"] = {**raw["sample"], "width": 640, "height": 480, "out": str(root / "raw")}
    raw["sample"]["truth"] = str(root / "truth.csv")
    raw["ingest"] = {**raw["ingest"], "raw_dir": str(root / "raw"), "manifest": str(root / "m.pq")}
    raw["detect"] = {
        **raw["detect"],
        "faces": str(out / "faces.parquet"),
        "images": str(out / "detections.parquet"),
        "crops_dir": str(out / "crops"),
        "cache_dir": str(out / "cache"),
        "metrics": str(out / "detect.json"),
        "details": str(out / "detect_details.json"),
        **detect,
    }
    raw["tracking"] = {**raw["tracking"], "enabled": False}
    return config_from_dict(raw)


def quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with its stdout swallowed (stage summaries would drown the tables)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)

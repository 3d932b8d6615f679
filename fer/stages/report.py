"""`fer report`: the models side by side → stdout, ``reports/report.md``, ``reports/report.html``.

Reads what the pipeline wrote (docs/data-contracts.md): ``metrics/<model>.json`` and
``metrics/details/<model>.json`` for every model of ``train.models``, the detect and validate
metrics and details, and the PNG figures under ``plots/``. It computes nothing new: every
number in the report is one of those files' numbers, and the wall times are the last run's
(``.fer_runs/``, fer.tracking.RUN_FACTS_DIR). Not a DVC stage: a report with times would
differ on every run, and the pipeline's outputs are the same bytes each time; ``make run`` runs
it after ``dvc repro``. Run by hand it says which files are missing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from fer.config import Config
from fer.errors import InputError
from fer.io import write_text

HEADING = "fer: model comparison"
KNOWN_FIGURES = {
    "confusion.png": "confusion matrix (test split)",
    "curves.png": "training curves",
    "mistakes.png": "most confident mistakes",
}
"""The figures `fer evaluate` draws, shown first and with these captions; any other PNG in a
``plots/`` folder follows under its file name."""


def run(cfg: Config) -> dict[str, Any]:
    """Write the Markdown and HTML reports, print the comparison; returns what was written.

    Raises:
        InputError: no model of ``train.models`` has metrics yet, or a metrics file is broken.
    """
    from fer.reporting import Results, render_html, render_markdown, summary_text

    models = _read_models(cfg)
    out = Path(cfg.report.out_dir)
    results = Results(
        models=models,
        detect=_read_stage(cfg.detect.metrics, cfg.detect.details, "detect", "seconds"),
        validate=_read_stage(cfg.validate_.metrics, cfg.validate_.details, "validate", "seconds"),
        figures=_figures(Path(cfg.evaluate.plots_dir), list(models), cfg.train.models, out),
    )
    markdown, page = out / "report.md", out / "report.html"
    write_text(markdown, render_markdown(results, heading=HEADING))
    write_text(page, render_html(results, heading=HEADING))
    print(summary_text(results))
    print(f"report: {len(models)} models → {markdown}, {page}")
    return {"models": list(models), "markdown": str(markdown), "html": str(page)}


def _read_models(cfg: Config) -> dict[str, Any]:
    """Each model's metrics and details, in ``train.models`` order; models not evaluated yet
    are named on stderr, and none at all is an error."""
    metrics_dir, details_dir = Path(cfg.evaluate.metrics_dir), Path(cfg.evaluate.details_dir)
    models, missing = {}, []
    for name in cfg.train.models:
        path = metrics_dir / f"{name}.json"
        if not path.is_file():
            missing.append(name)
            continue
        models[name] = _read_stage(path, details_dir / f"{name}.json", name, "train_seconds")
    if not models:
        raise InputError(
            f"{metrics_dir}: no metrics for any model of train.models "
            f"({', '.join(cfg.train.models)}): run `dvc repro` first"
        )
    if missing:
        print(
            f"report: warning: no {metrics_dir}/<model>.json for {', '.join(missing)} "
            "(not evaluated yet: run `dvc repro`); left out",
            file=sys.stderr,
        )
    return models


def _read_stage(metrics: Path, details: Path, facts: str, time_key: str) -> Any:
    """A stage's metrics and details (details optional), with its last wall time under
    ``time_key`` (from the run facts: no output holds a time); None when it has not run."""
    from fer.reporting import StageFigures
    from fer.tracking import read_run_facts

    if not Path(metrics).is_file():
        return None
    seconds = read_run_facts(facts).get("seconds")
    timing = {time_key: seconds} if isinstance(seconds, int | float) else {}
    return StageFigures(
        {**_read_json(metrics), **timing}, _read_json(details) if Path(details).is_file() else {}
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable metrics ({exc}): run `dvc repro` again") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    return data


def _figures(
    plots_dir: Path, models: list[str], all_models: list[str], out_dir: Path
) -> list[Any]:
    """The PNGs under ``plots_dir``: the reported models' folders first (in order), then any
    folder that belongs to no model; in each, evaluate's figures first, then the rest by name."""
    from fer.reporting import Figure

    if not plots_dir.is_dir():
        return []
    others = sorted(p.name for p in plots_dir.iterdir() if p.is_dir() and p.name not in all_models)
    figures = []
    for owner in [*models, *others]:
        folder = plots_dir / owner
        pngs = sorted(folder.glob("*.png"), key=lambda p: (_known_rank(p.name), p.name))
        for png in pngs:
            link = Path(os.path.relpath(png, out_dir)).as_posix()
            title = KNOWN_FIGURES.get(png.name, png.stem.replace("_", " "))
            figures.append(Figure(owner, f"{owner}: {title}", link, png.read_bytes()))
    return figures


def _known_rank(name: str) -> int:
    known = list(KNOWN_FIGURES)
    return known.index(name) if name in known else len(known)

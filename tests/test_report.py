"""`fer report` shows the files' own numbers for every model, as text, Markdown and one
self-contained HTML page; and the metrics files `dvc metrics show` reads stay narrow."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fer.cli import main
from fer.reporting import StageFigures, model_table
from fer.stages import detect, evaluate, validate
from tests.kit import MAX_METRIC_KEYS, ROOT, TAXONOMY, env, metric_columns

CLASSES = ("positive", "negative", "neutral")
EXPRESSIONS = [e for names in TAXONOMY.values() for e in names]


def model_details(name: str, accuracy: float, recalls: tuple[float, float, float]) -> dict:
    """What `fer evaluate` writes to metrics/details/<name>.json (made-up numbers)."""
    per_class = {
        c: {"precision": 0.5, "recall": r, "f1": 0.5, "support": 10}
        for c, r in zip(CLASSES, recalls, strict=True)
    }
    return {
        "model": name, "n_test": 30, "accuracy": accuracy, "macro_f1": accuracy - 0.01,
        "per_class": per_class, "skipped": 0, "true_label_accuracy": accuracy + 0.02,
        "true_label_macro_f1": accuracy + 0.01, "true_label_n": 30, "test_label_agreement": 0.9,
        "per_expression": {e: {"n": 10, "accuracy": accuracy} for e in EXPRESSIONS},
        "without": ["angry"], "n_without": 20, "accuracy_without": 0.5, "macro_f1_without": 0.4,
        "classes": list(CLASSES), "confusion": [[8, 1, 1], [1, 8, 1], [1, 1, 8]],
    }  # fmt: skip


DETECT = {
    "images": 40, "with_face": 36, "no_face": 4, "multi_face": 3, "faces": 41, "crops": 41,
    "errors": 0, "cache_hits": 0, "detected": 40, "crops_written": 41, "crops_removed": 0,
    "settings_hash": "0123456789abcdef",
    "localization": {
        "scored_images": 40, "iou_threshold": 0.5,
        "image": {"precision": 1.0, "recall": 0.9722, "f1": 0.9859, "tp": 35, "fp": 0, "fn": 1,
                  "tn": 4},
        "box": {"precision": 0.95, "recall": 0.9048, "f1": 0.9268, "tp": 38, "fp": 2, "fn": 4},
    },
}  # fmt: skip
VALIDATE = {
    "gate_passed": 1, "expectations": 20, "failed_blocking": 0, "failed_warning": 1,
    "rejected_rate": 0.0, "no_face_rate": 0.1, "multi_face_rate": 0.075,
    "fraction_positive": 0.3, "fraction_negative": 0.4, "fraction_neutral": 0.3,
    "images": 40, "faces": 41, "quarantined": 4, "label_issues": 5, "duplicate_groups": 0,
    "duplicate_images": 0,
    "auditor": {"n": 41, "accuracy": 0.8123, "majority": 0.4, "ece": 0.0712, "trusted": True,
                "action": "exclude", "flagged": 5, "flagged_fraction": 0.122, "acted_on": 5,
                "capped": 0},
    "mislabel": {"precision": 0.8, "recall": 0.6667, "f1": 0.7273, "tp": 4, "fp": 1, "fn": 2,
                 "support": 6},
    "no_face": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 4, "fp": 0, "fn": 0,
                "support": 4},
    "no_face_images_reaching_training": 0,
}  # fmt: skip
SECONDS = {"detect": 3.2, "validate": 12.5, "alexnet": 42.4, "baseline": 17.0}
MODELS = {
    "alexnet": model_details("alexnet", 0.8333, (0.9, 0.8, 0.7)),
    "baseline": model_details("baseline", 0.6667, (0.6, 0.55, 0.85)),
}


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _png(path: Path, value: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.full((8, 12, 3), value, dtype=np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


@pytest.fixture
def pipeline_outputs(tmp_path: Path, make_params, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as `dvc repro` leaves it: metrics, details and figures of two models."""
    make_params(train={"models": list(MODELS)})
    for name, details in MODELS.items():
        _write(tmp_path / f"metrics/details/{name}.json", details)
        _write(tmp_path / f"metrics/{name}.json", evaluate.headline(details))
        _png(tmp_path / f"plots/{name}/confusion.png", 40)
        _png(tmp_path / f"plots/{name}/curves.png", 80)
    _png(tmp_path / "plots/alexnet/pr_curve.png", 120)  # a figure the report does not know
    _write(tmp_path / "metrics/details/detect.json", DETECT)
    _write(tmp_path / "metrics/detect.json", detect.headline(DETECT))
    _write(tmp_path / "metrics/details/validate.json", VALIDATE)
    _write(tmp_path / "metrics/validate.json", validate.headline(VALIDATE))
    for name, seconds in SECONDS.items():  # wall times: run facts, never in an output
        _write(tmp_path / f".fer_runs/{name}.json", {"seconds": seconds})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _model_row(name: str) -> list[str]:
    """The cells the report must show for a model, formatted from the files' numbers."""
    headline = json.loads(Path(f"metrics/{name}.json").read_text())
    details = json.loads(Path(f"metrics/details/{name}.json").read_text())
    cells = [name, str(headline["n_test"])]
    cells += [f"{headline[k]:.3f}" for k in ("accuracy", "macro_f1", "true_label_accuracy")]
    cells += [f"{details['per_class'][c]['recall']:.3f}" for c in CLASSES]
    return [*cells, f"{SECONDS[name]:.0f}"]


def test_report_lists_every_model_with_the_numbers_of_its_files(
    pipeline_outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # the terminal lines are wrapped
    markdown = (pipeline_outputs / "reports/report.md").read_text()
    page = (pipeline_outputs / "reports/report.html").read_text()
    for name in MODELS:
        cells = _model_row(name)
        assert re.search(r"^" + r"\s+".join(map(re.escape, cells)) + r"$", out, re.M), out
        assert "| " + " | ".join(cells) + " |" in markdown
        assert "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" in page
        assert f"![{name}: confusion matrix (test split)](../plots/{name}/confusion.png)" in (
            markdown
        )
    assert "best test macro-F1: alexnet" in out
    assert "auditor accuracy 0.812 (majority 0.400), ECE 0.071, action exclude" in flat
    assert "box precision/recall/F1 0.950/0.905/0.927" in flat
    assert "| mislabels found vs truth: precision, recall, F1 | 0.800 / 0.667 / 0.727 |" in (
        markdown
    )
    assert "| angry | 10 | 0.833 | 0.667 |" in markdown  # accuracy per expression folder
    assert "| alexnet | angry | 20 | 0.500 | 0.400 |" in markdown  # evaluate.without
    # Known figures first, in evaluate's order; then any other PNG of the folder.
    links = re.findall(r"\]\(\.\./plots/alexnet/(\w+\.png)\)", markdown)
    assert links == ["confusion.png", "curves.png", "pr_curve.png"]


def test_html_report_is_self_contained(pipeline_outputs: Path) -> None:
    assert main(["report"]) == 0
    page = (pipeline_outputs / "reports/report.html").read_text()
    pngs = sorted(pipeline_outputs.glob("plots/*/*.png"))
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(pngs) == 5
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    for png in pngs:
        assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in page
    assert not re.search(r"<link|<script|href=|url\(", page)  # nothing fetched from elsewhere
    assert not list(pipeline_outputs.glob("reports/.*"))  # atomic writes left no temp files


def test_a_model_not_evaluated_yet_is_named_and_left_out(
    pipeline_outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pipeline_outputs / "metrics/baseline.json").unlink()
    assert main(["report"]) == 0
    captured = capsys.readouterr()
    assert "no metrics/<model>.json for baseline" in captured.err
    assert "baseline" not in (pipeline_outputs / "reports/report.md").read_text()


def test_report_through_the_real_cli(pipeline_outputs: Path) -> None:
    """The installed command line: exit 0 and both files; with no metrics, exit 2 and one line
    saying what to run."""
    cmd = [sys.executable, "-m", "fer.cli", "report"]
    run_env = {**env(pipeline_outputs), "PYTHONPATH": str(ROOT)}  # this checkout's fer
    proc = subprocess.run(cmd, cwd=pipeline_outputs, capture_output=True, text=True, env=run_env)
    assert proc.returncode == 0, proc.stderr
    assert "report: 2 models → reports/report.md, reports/report.html" in proc.stdout
    assert (pipeline_outputs / "reports/report.html").stat().st_size > 1000
    for path in pipeline_outputs.glob("metrics/*.json"):
        path.unlink()
    proc = subprocess.run(cmd, cwd=pipeline_outputs, capture_output=True, text=True, env=run_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "fer report: error: metrics: no metrics for any model of train.models "
        "(alexnet, baseline): run `dvc repro` first"
    ]


def test_a_broken_metrics_file_is_a_one_line_error(
    pipeline_outputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pipeline_outputs / "metrics/alexnet.json").write_text("{not json")
    assert main(["report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fer report: error: metrics/alexnet.json:")


def _all_columns(files: dict[str, dict[str, Any]]) -> set[str]:
    return set().union(*(metric_columns(doc) for doc in files.values()))


def test_metrics_files_stay_narrow() -> None:
    """What `dvc metrics show` prints for a full sandbox run: the headline numbers only.

    Fails when per-class, per-expression or other detail goes back into a metrics file
    (it belongs in metrics/details/)."""
    files = {
        "detect": detect.headline(DETECT),
        "validate": validate.headline(VALIDATE),
        **{name: evaluate.headline(d) for name, d in MODELS.items()},
    }
    for name, doc in files.items():
        assert len(metric_columns(doc)) <= MAX_METRIC_KEYS, name
        assert all(isinstance(v, int | float) for v in doc.values()), name
    columns = _all_columns(files)
    assert len(columns) <= 25, sorted(columns)
    detail = [c for c in columns if any(w in c for w in (*CLASSES, *EXPRESSIONS, "without"))]
    assert not detail, detail
    # DESIGN's contract: per model at least accuracy and macro-F1; localization; validation.
    assert {"accuracy", "macro_f1"} <= set(files["alexnet"])
    assert {"box_precision", "box_recall", "box_f1"} <= set(files["detect"])
    assert {"gate_passed", "auditor_accuracy", "mislabel_f1"} <= set(files["validate"])


def test_real_data_headlines_leave_out_what_needs_truth() -> None:
    """Without the sandbox's truth there are no truth scores, and no empty columns for them."""
    real_detect = {k: v for k, v in DETECT.items() if k != "localization"}
    real_validate = {k: v for k, v in VALIDATE.items() if k not in ("mislabel", "no_face")}
    real_model = {
        k: v
        for k, v in MODELS["alexnet"].items()
        if not k.startswith(("true_label", "test_label"))
    }
    assert set(detect.headline(real_detect)) == {"images", "faces"}
    assert "mislabel_f1" not in validate.headline(real_validate)
    assert set(evaluate.headline(real_model)) == {"accuracy", "macro_f1", "n_test"}
    table = model_table({"alexnet": StageFigures(evaluate.headline(real_model), real_model)})
    assert "true acc." not in table.headers and "true" not in table.note  # no empty column
    assert table.headers[:4] == ("model", "faces", "accuracy", "macro-F1")

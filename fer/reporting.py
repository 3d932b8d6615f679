"""The pipeline's results as tables a person reads: dicts from the metrics files in, text out.

`fer report` (fer/stages/report.py) reads ``metrics/*.json`` (the headline numbers),
``metrics/details/*.json`` (per class, per expression, the auditor) and the figures under
``plots/``, and hands them here. This module builds the tables once and renders them three
ways: a short comparison for the terminal, Markdown and a self-contained HTML page (figures
embedded as base64 PNG). No file system, no tracking: everything arrives as arguments.
"""

from __future__ import annotations

import base64
import html
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MISSING = "-"
TEXT_WIDTH = 100
"""Terminal lines are wrapped to this many characters (the model table is not)."""


@dataclass(frozen=True)
class StageFigures:
    """One stage's headline numbers (``metrics/<x>.json``) and every figure (the details)."""

    metrics: Mapping[str, Any]
    details: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """A headline number, else the same key in the details, else None."""
        return self.metrics.get(key, self.details.get(key))


@dataclass(frozen=True)
class Figure:
    """A PNG the pipeline drew: whose, what, where Markdown links it, and its bytes for HTML."""

    owner: str
    title: str
    link: str
    png: bytes


@dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Results:
    """Everything the report shows; ``detect``/``validate`` are None when not run."""

    models: Mapping[str, StageFigures]
    detect: StageFigures | None = None
    validate: StageFigures | None = None
    figures: Sequence[Figure] = ()


def fmt(value: Any, digits: int = 3) -> str:
    """A cell: floats to ``digits`` decimals, booleans as yes/no, None as ``-``."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _seconds(value: Any) -> str:
    return MISSING if value is None else f"{float(value):.0f}"


def class_names(models: Mapping[str, StageFigures]) -> list[str]:
    """The classes of the per-class details, in the order the first model lists them."""
    for figures in models.values():
        per_class = figures.details.get("per_class")
        if per_class:
            return list(per_class)
    return []


def model_table(models: Mapping[str, StageFigures]) -> Table:
    """One row per model: test accuracy, macro-F1, accuracy against the truth, recall per
    class and training time."""
    classes = class_names(models)
    headers = ("model", "faces", "accuracy", "macro-F1", "true acc.", *classes, "train s")
    rows = []
    for name, m in models.items():
        per_class = m.details.get("per_class", {})
        recall = tuple(fmt(per_class.get(c, {}).get("recall")) for c in classes)
        scores = (fmt(m.get(k)) for k in ("n_test", "accuracy", "macro_f1", "true_label_accuracy"))
        rows.append((name, *scores, *recall, _seconds(m.get("train_seconds"))))
    table = _without_empty_columns(Table("Models (test split)", headers, tuple(rows)))
    notes = [  # (column, what it means), said only for the columns shown
        ("faces", "faces: test faces"),
        ("accuracy", "accuracy and macro-F1 against the test split's labels"),
        ("true acc.", "true acc.: accuracy against the sandbox's true labels (the test labels "
         "are noisy too)"),
        (classes[0] if classes else None, f"{', '.join(classes)}: recall of each class"),
        ("train s", "train s: wall time of `fer train`"),
    ]  # fmt: skip
    note = "; ".join(text for column, text in notes if column in table.headers)
    return Table(table.title, table.headers, table.rows, note + ".")


def _without_empty_columns(table: Table) -> Table:
    """Drop the columns no row has a value in (e.g. true labels on real data)."""
    keep = [i for i in range(len(table.headers)) if any(r[i] != MISSING for r in table.rows)]
    keep = keep if table.rows else list(range(len(table.headers)))
    return Table(
        table.title,
        tuple(table.headers[i] for i in keep),
        tuple(tuple(r[i] for i in keep) for r in table.rows),
        table.note,
    )


def best_model(models: Mapping[str, StageFigures]) -> str | None:
    """The model with the highest test macro-F1 (first in order on a tie); None when unscored."""
    scored = [(m.get("macro_f1"), name) for name, m in models.items()]
    scored = [(f, name) for f, name in scored if isinstance(f, int | float)]
    if not scored:
        return None
    top = max(f for f, _ in scored)
    return next(name for f, name in scored if f == top)


def expression_table(models: Mapping[str, StageFigures]) -> Table | None:
    """Accuracy per source expression folder (rows) and model (columns); None without data."""
    names = sorted({e for m in models.values() for e in m.details.get("per_expression", {})})
    if not names:
        return None
    rows = []
    for expression in names:
        cells = [m.details.get("per_expression", {}).get(expression, {}) for m in models.values()]
        n = next((c["n"] for c in cells if "n" in c), None)
        rows.append((expression, fmt(n), *(fmt(c.get("accuracy")) for c in cells)))
    return Table(
        "Accuracy per expression folder (test split)",
        ("expression", "faces", *models),
        tuple(rows),
    )


def without_table(models: Mapping[str, StageFigures]) -> Table | None:
    """Accuracy and macro-F1 without the folders of ``evaluate.without``; None when unused."""
    rows = [
        (name, ", ".join(m.details["without"]), fmt(m.details.get("n_without")),
         fmt(m.details.get("accuracy_without")), fmt(m.details.get("macro_f1_without")))
        for name, m in models.items()
        if m.details.get("without")
    ]  # fmt: skip
    if not rows:
        return None
    headers = ("model", "left out", "test faces", "accuracy", "macro-F1")
    return Table("Without some expression folders (evaluate.without)", headers, tuple(rows))


def detect_table(detect: StageFigures) -> Table:
    """Detection counts and, with truth, the localization scores."""
    loc = detect.details.get("localization") or {}
    image, box = loc.get("image", {}), loc.get("box", {})
    rows = [
        ("images", fmt(detect.get("images"))),
        ("faces found", fmt(detect.get("faces"))),
        ("images without a face", fmt(detect.details.get("no_face"))),
        ("images with several faces", fmt(detect.details.get("multi_face"))),
    ]
    if loc:
        iou = loc.get("iou_threshold")
        rows += [
            ("face / no face per image: precision, recall, F1",
             " / ".join(fmt(image.get(k)) for k in ("precision", "recall", "f1"))),
            (f"boxes at IoU {fmt(iou, 2)}: precision, recall, F1",
             " / ".join(fmt(box.get(k)) for k in ("precision", "recall", "f1"))),
        ]  # fmt: skip
    rows.append(("seconds", _seconds(detect.get("seconds"))))
    return Table("Face detection", ("figure", "value"), tuple(rows))


def validate_table(validate: StageFigures) -> Table:
    """The data gate, what was kept out, the label auditor and (sandbox) its truth scores."""
    d = validate.details
    auditor = d.get("auditor") or {}
    rows = [
        ("gate passed", fmt(bool(validate.get("gate_passed")))),
        ("expectations failed (blocking / warning)",
         f"{fmt(d.get('failed_blocking'))} / {fmt(d.get('failed_warning'))}"),
        ("images quarantined (no face, unreadable, ...)", fmt(validate.get("quarantined"))),
        ("label issues", fmt(validate.get("label_issues"))),
        ("duplicate images", fmt(d.get("duplicate_images"))),
    ]  # fmt: skip
    if auditor:
        rows += [
            ("auditor: out-of-fold accuracy (majority class)",
             f"{fmt(auditor.get('accuracy'))} ({fmt(auditor.get('majority'))})"),
            ("auditor: calibration error (ECE)", fmt(auditor.get("ece"))),
            ("auditor: trusted, action", f"{fmt(auditor.get('trusted'))}, "
             f"{fmt(auditor.get('action'))}"),
            ("auditor: flagged (share of faces), acted on",
             f"{fmt(auditor.get('flagged'))} ({fmt(auditor.get('flagged_fraction'))}), "
             f"{fmt(auditor.get('acted_on'))}"),
        ]  # fmt: skip
    for key, what in (("mislabel", "mislabels found"), ("no_face", "no-face images found")):
        if key in d:
            scores = " / ".join(fmt(d[key].get(k)) for k in ("precision", "recall", "f1"))
            rows.append((f"{what} vs truth: precision, recall, F1", scores))
    rows.append(("seconds", _seconds(validate.get("seconds"))))
    return Table("Data validation", ("figure", "value"), tuple(rows))


def tables(results: Results) -> list[Table]:
    """Every table of the report, in reading order."""
    out = [model_table(results.models)]
    out += [t for t in (expression_table(results.models), without_table(results.models)) if t]
    if results.detect is not None:
        out.append(detect_table(results.detect))
    if results.validate is not None:
        out.append(validate_table(results.validate))
    return out


def text_table(table: Table) -> str:
    """Columns aligned with spaces: the first left, numbers right."""
    widths = [
        max(len(r[i]) for r in (table.headers, *table.rows)) for i in range(len(table.headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(table.headers), *(line(r) for r in table.rows)])


def summary_text(results: Results) -> str:
    """The terminal view: the model comparison, then detection and validation in a line each."""
    table = model_table(results.models)
    lines = [text_table(table), f"({table.note})"]
    best = best_model(results.models)
    if best:
        lines.append(f"best test macro-F1: {best}")
    if results.detect is not None:
        d = results.detect
        line = f"detect: {fmt(d.get('images'))} images, {fmt(d.get('faces'))} faces"
        if d.get("box_f1") is not None:
            line += (f"; box precision/recall/F1 {fmt(d.get('box_precision'))}/"
                     f"{fmt(d.get('box_recall'))}/{fmt(d.get('box_f1'))}")  # fmt: skip
        lines.append(line)
    if results.validate is not None:
        lines.append(_validate_line(results.validate))
    wrapped = [lines[0]] + [
        textwrap.fill(x, TEXT_WIDTH, subsequent_indent="  ") for x in lines[1:]
    ]
    return "\n".join(wrapped)


def _validate_line(v: StageFigures) -> str:
    gate = "passed" if v.get("gate_passed") else "FAILED"
    line = (f"validate: gate {gate}, {fmt(v.get('quarantined'))} quarantined, "
            f"{fmt(v.get('label_issues'))} label issues")  # fmt: skip
    auditor = v.details.get("auditor") or {}
    if auditor:
        line += (f"; auditor accuracy {fmt(auditor.get('accuracy'))} (majority "
                 f"{fmt(auditor.get('majority'))}), ECE {fmt(auditor.get('ece'))}, "
                 f"action {fmt(auditor.get('action'))}")  # fmt: skip
    if v.get("mislabel_f1") is not None:
        line += f"; mislabel F1 vs truth {fmt(v.get('mislabel_f1'))}"
    return line


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table under a level-2 heading."""
    head = "| " + " | ".join(_md_cell(h) for h in table.headers) + " |"
    align = "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(table.headers))) + "|"
    rows = ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in table.rows]
    note = f"\n{table.note}\n" if table.note else ""
    return f"## {table.title}\n\n" + "\n".join([head, align, *rows]) + "\n" + note


def render_markdown(results: Results, *, heading: str) -> str:
    """The report as Markdown; figures are linked (relative paths), not embedded."""
    parts = [f"# {heading}\n"]
    best = best_model(results.models)
    if best:
        parts.append(f"Best test macro-F1: **{best}**.\n")
    parts += [markdown_table(t) for t in tables(results)]
    if results.figures:
        parts.append("## Figures\n")
        for owner in _owners(results.figures):
            parts.append(f"### {owner}\n")
            parts += [f"![{f.title}]({f.link})\n" for f in results.figures if f.owner == owner]
    return "\n".join(parts)


def _owners(figures: Sequence[Figure]) -> list[str]:
    return list(dict.fromkeys(f.owner for f in figures))


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}"
    ".note{color:#555;font-size:.9em}figure{display:inline-block;margin:.5em}"
    "img{max-width:100%}figcaption{font-size:.9em;color:#555}"
)


def html_table(table: Table) -> str:
    """A titled HTML table, every cell escaped."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in table.rows)
    note = f'<p class="note">{esc(table.note)}</p>' if table.note else ""
    return f"<h2>{esc(table.title)}</h2><table><tr>{head}</tr>{rows}</table>{note}"


def render_html(results: Results, *, heading: str) -> str:
    """The report as one self-contained HTML page: figures inlined as base64 PNG."""
    esc = html.escape
    body = [f"<h1>{esc(heading)}</h1>"]
    best = best_model(results.models)
    if best:
        body.append(f"<p>Best test macro-F1: <b>{esc(best)}</b>.</p>")
    body += [html_table(t) for t in tables(results)]
    if results.figures:
        body.append("<h2>Figures</h2>")
        for owner in _owners(results.figures):
            body.append(f"<h3>{esc(owner)}</h3>")
            for f in (f for f in results.figures if f.owner == owner):
                data = base64.b64encode(f.png).decode("ascii")
                body.append(
                    f'<figure><img alt="{esc(f.title)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(f.title)}</figcaption></figure>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(heading)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )

"""The validation report: a one-screen text summary and a self-contained HTML page.

Pure: results and small tables in, strings out; the stage writes them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fer.mappings import flatten

if TYPE_CHECKING:
    import pandas as pd

    from fer.validation.expectations import ExpectationResult

MAX_LINES = 15  # failed expectations listed on screen before "... and N more"
REVIEW_URL = "http://127.0.0.1:8765/"  # `fer review`'s default address (review.host/port)
REVIEW_HINT = (
    f"review them: `fer review` opens {REVIEW_URL} (keep / relabel / drop / not a face / "
    "restore, one key each); decisions go to review.decisions (review_decisions.csv) and "
    "`dvc repro` re-runs split and what follows"
)


def summary_text(
    results: Sequence[ExpectationResult], facts: Mapping[str, Any], report_path: str
) -> str:
    """One screen: gate verdict, each failed expectation with observed value and bound, counts.

    Args:
        results: every evaluated expectation.
        facts: counts to show (``quarantined``, ``quarantine_reasons``, ``label_issues``,
            ``label_action``, ``duplicate_groups``, ``duplicate_images``, ``notes``).
        report_path: where the full HTML report is.
    """
    failed = [r for r in results if not r.success]
    blocking = [r for r in failed if r.level == "blocking"]
    passed = len(results) - len(failed)
    if blocking:
        head = f"GATE FAILED: {len(blocking)} blocking expectation(s) failed"
    else:
        head = "gate passed"
    lines = [f"validate: {head} ({passed}/{len(results)} expectations passed)"]
    ordered = sorted(failed, key=lambda r: r.level != "blocking")
    width = max((len(r.name) for r in ordered), default=0)
    for r in ordered[:MAX_LINES]:
        tag = "BLOCKING" if r.level == "blocking" else "warning "
        lines.append(f"  {tag}  {r.name:<{width}}  observed {r.observed}  (expected {r.bound})")
    if len(ordered) > MAX_LINES:
        lines.append(f"  ... and {len(ordered) - MAX_LINES} more (see the report)")
    if "quarantined" in facts:
        reasons = facts.get("quarantine_reasons") or {}
        detail = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        lines.append(
            f"quarantined images: {facts['quarantined']}" + (f" ({detail})" if detail else "")
        )
    if "label_issues" in facts:
        lines.append(
            f"suspected label issues: {facts['label_issues']} faces"
            f" (action: {facts.get('label_action', '?')})"
        )
    if "duplicate_groups" in facts:
        lines.append(
            f"duplicate groups: {facts['duplicate_groups']}"
            f" ({facts.get('duplicate_images', 0)} images)"
        )
    lines.extend(f"note: {n}" for n in facts.get("notes", []))
    if facts.get("quarantined") or facts.get("label_issues") or facts.get("duplicate_groups"):
        lines.append(REVIEW_HINT)
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.ok{color:#176b2c}.warn{color:#9a6700}.fail{color:#b42318;font-weight:bold}
.verdict{font-size:1.3em;padding:.5em 1em;border-radius:6px;display:inline-block}
.pass{background:#e7f6ec}.stop{background:#fdecea}
.review{background:#eef4ff;border:1px solid #b6ccf5;padding:.6em 1em;margin:1em 0}
"""


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = row.get("_class", "")
        cells = "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f'<table class="{css}"><tr>{head}</tr>{"".join(body)}</table>'


def _review_box() -> str:
    """How to put the flagged samples in front of a person."""
    return (
        '<div class="review"><b>Review the flagged samples:</b> run <code>fer review</code> in '
        f'the project and open <a href="{REVIEW_URL}">{REVIEW_URL}</a>: thumbnails grouped by '
        "reason, one key per decision (keep, relabel 1/2/3, drop, not a face, restore, undo). "
        "Decisions are saved to <code>review_decisions.csv</code>, a dependency of the split "
        "stage: <code>dvc repro</code> then re-runs split, train and evaluate only.</div>"
    )


def _frame_rows(df: pd.DataFrame | None, limit: int) -> list[dict[str, Any]]:
    if df is None or df.empty:
        return []
    return df.head(limit).to_dict("records")


def render_html(
    results: Sequence[ExpectationResult],
    metrics: Mapping[str, Any],
    *,
    quarantine: pd.DataFrame | None = None,
    label_issues: pd.DataFrame | None = None,
    duplicates: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    limit: int = 200,
) -> str:
    """A self-contained HTML page: verdict, every expectation, metrics, and the three lists."""
    blocking = [r for r in results if not r.success and r.level == "blocking"]
    verdict = (
        f'<div class="verdict stop">Gate failed: {len(blocking)} blocking expectation(s)</div>'
        if blocking
        else '<div class="verdict pass">Gate passed</div>'
    )
    exp_rows = []
    for r in sorted(results, key=lambda r: (r.success, r.level != "blocking", r.name)):
        status = "pass" if r.success else ("FAIL" if r.level == "blocking" else "warn")
        css = "ok" if r.success else ("fail" if r.level == "blocking" else "warn")
        exp_rows.append({**r.as_dict(), "status": status, "_class": css})
    metric_rows = [
        {"metric": k, "value": f"{v:.4f}" if isinstance(v, float) else v}
        for k, v in flatten(metrics).items()
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fer validation report</title>",
        f"<style>{_CSS}</style></head><body><h1>fer validation report</h1>",
        verdict,
        "".join(f"<p>{html.escape(n)}</p>" for n in notes),
        _review_box(),
        "<h2>Expectations</h2>",
        _table(exp_rows, ["status", "name", "check", "level", "observed", "bound"]),
        "<h2>Metrics</h2>",
        _table(metric_rows, ["metric", "value"]),
    ]
    for title, df, help_text in (
        (
            "Quarantine",
            quarantine,
            "Images that never reach training, with the reason. To let one back in, press r "
            "on its card in `fer review` (a restore row in review_decisions.csv) and re-run.",
        ),
        ("Suspected label issues", label_issues, "Highest score first."),
        ("Duplicate groups", duplicates, "Each group is kept inside one split."),
    ):
        n = 0 if df is None else len(df)
        parts.append(f"<h2>{title} ({n})</h2><p>{html.escape(help_text)}</p>")
        if n:
            parts.append(_table(_frame_rows(df, limit), list(df.columns)))  # type: ignore[union-attr]
            if n > limit:
                parts.append(f"<p>First {limit} of {n} rows; the CSV has them all.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)

"""Great Expectations suites: clean tables pass; each purpose-built bad table fails its check."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from fer.config import ExpectationLevels, ValidateConfig
from fer.validation import expectations as ex
from fer.validation import report

EXPRESSIONS = ["happy", "joyful", "angry", "mad", "calm", "neutral"]
CLASS_OF = {"happy": "positive", "angry": "negative", "calm": "neutral"}


def tables(n: int = 30) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[bool]]:
    """Contract-shaped manifest, detections and faces: n ok images, one face each."""
    exprs = [list(CLASS_OF)[i % 3] for i in range(n)]
    paths = [f"{e}/{i:04d}.jpg" for i, e in enumerate(exprs)]
    ids = [f"{i:064x}" for i in range(n)]
    labels = [CLASS_OF[e] for e in exprs]
    manifest = pd.DataFrame(
        {
            "id": ids,
            "path": paths,
            "expression": exprs,
            "label": labels,
            "bytes": [5000] * n,
            "width": [320] * n,
            "height": [240] * n,
            "format": ["JPEG"] * n,
            "status": ["ok"] * n,
            "reason": [""] * n,
            "duplicate_of": [""] * n,
        }
    )
    detections = pd.DataFrame(
        {
            "image_id": ids,
            "path": paths,
            "expression": exprs,
            "label": labels,
            "n_faces": [1] * n,
            "n_crops": [1] * n,
            "status": ["ok"] * n,
            "reason": [""] * n,
        }
    )
    faces = pd.DataFrame(
        {
            "face_id": [f"f{i:04d}_0" for i in range(n)],
            "image_id": ids,
            "path": paths,
            "expression": exprs,
            "label": labels,
            "face_index": [0] * n,
            "x": [10] * n,
            "y": [10] * n,
            "w": [80] * n,
            "h": [80] * n,
            "score": [0.9] * n,
            "crop_path": [f"data/faces/{i:02x}/{i:016x}_0.png" for i in range(n)],
            "n_faces": [1] * n,
        }
    )
    return manifest, detections, faces, [True] * n


def run(mutate: Callable[..., None] | None = None, cfg: ValidateConfig | None = None):
    manifest, detections, faces, crops = tables()
    if mutate is not None:
        manifest, detections, faces, crops = mutate(manifest, detections, faces, crops)
    return ex.check_data(manifest, detections, faces, crops, cfg or ValidateConfig(), EXPRESSIONS)


def test_clean_tables_pass_everything() -> None:
    results = run()
    assert [r for r in results if not r.success] == []
    assert len(results) > 40
    assert len({r.name for r in results}) == len(results)
    by_name = {r.name: r for r in results}
    assert by_name["rates.rejected_rate"].observed == "0"
    assert by_name["rates.fraction_positive"].observed == "0.3333"


def _drop_column(m, d, f, c):
    return m.drop(columns=["width"]), d, f, c


def _wrong_type(m, d, f, c):
    return m, d.assign(n_faces=["one"] * len(d)), f, c


def _bad_label(m, d, f, c):
    f = f.copy()
    f.loc[0, "label"] = "happyish"
    return m, d, f, c


def _unknown_expression(m, d, f, c):
    m = m.copy()
    m.loc[3, "expression"] = "grumpy"
    return m, d, f, c


def _tiny_image(m, d, f, c):
    m = m.copy()
    m.loc[[1, 2], "width"] = 16
    return m, d, f, c


def _many_rejected(m, d, f, c):
    m = m.copy()
    m.loc[:4, ["status", "reason", "width", "height"]] = ["rejected", "truncated", 0, 0]
    keep = m["status"] == "ok"
    return (
        m,
        d[keep.to_numpy()],
        f[keep.to_numpy()],
        [x for x, k in zip(c, keep, strict=True) if k],
    )


def _many_without_face(m, d, f, c):
    d = d.copy()
    d.loc[:9, ["n_faces", "n_crops"]] = 0
    keep = (d["n_faces"] > 0).to_numpy()
    return m, d, f[keep], [x for x, k in zip(c, keep, strict=True) if k]


def _many_multi_face(m, d, f, c):
    d = d.copy()
    d.loc[:19, "n_faces"] = 2
    return m, d, f, c


def _unbalanced(m, d, f, c):
    f = f.copy()
    f["label"] = "positive"
    return m, d, f, c


def _missing_crop(m, d, f, c):
    c = list(c)
    c[5] = False
    return m, d, f, c


@pytest.mark.parametrize(
    ("mutate", "check", "name"),
    [
        (_drop_column, "columns", "manifest.width.exists"),
        (_wrong_type, "columns", "detections.n_faces.type"),
        (_bad_label, "labels", "faces.label.in_classes"),
        (_unknown_expression, "labels", "manifest.expression.in_taxonomy"),
        (_tiny_image, "dimensions", "manifest.width.in_bounds"),
        (_many_rejected, "rejected_rate", "rates.rejected_rate"),
        (_many_without_face, "no_face_rate", "rates.no_face_rate"),
        (_many_multi_face, "multi_face_rate", "rates.multi_face_rate"),
        (_unbalanced, "class_balance", "rates.fraction_positive"),
        (_missing_crop, "crops_exist", "faces.crop_exists"),
    ],
)
def test_each_expectation_fails_on_bad_data(mutate, check: str, name: str) -> None:
    results = run(mutate)
    failed = {r.name: r for r in results if not r.success}
    assert name in failed, sorted(failed)
    assert {r.check for r in failed.values()} == {check}
    r = failed[name]
    assert r.level == getattr(ExpectationLevels(), check)
    assert r.observed and r.bound


def test_observed_values_are_readable() -> None:
    by_name = {r.name: r for r in run(_many_rejected)}
    assert by_name["rates.rejected_rate"].observed == "0.1667"
    assert by_name["rates.rejected_rate"].bound == "≤ 0.05"
    by_name = {r.name: r for r in run(_tiny_image)}
    assert by_name["manifest.width.in_bounds"].observed.startswith("2 of 30 rows fail")
    assert by_name["manifest.width.exists"].observed == "present"


def test_levels_decide_what_blocks() -> None:
    results = run(_missing_crop)
    assert [r.name for r in ex.blocking_failures(results)] == ["faces.crop_exists"]
    relaxed = ValidateConfig(levels=ExpectationLevels(crops_exist="warning"))
    assert ex.blocking_failures(run(_missing_crop, relaxed)) == []
    strict = ValidateConfig(levels=ExpectationLevels(dimensions="blocking"))
    assert [r.name for r in ex.blocking_failures(run(_tiny_image, strict))] == [
        "manifest.width.in_bounds"
    ]


def test_summary_names_each_failure_with_observed_value() -> None:
    results = run(_missing_crop)
    text = report.summary_text(results, {"quarantined": 2}, "data/validation/report.html")
    assert "GATE FAILED: 1 blocking" in text
    assert "faces.crop_exists" in text and "1 of 30 rows fail" in text
    assert len(text.splitlines()) <= 25
    html = report.render_html(results, {"gate_passed": 0})
    assert "Gate failed" in html and "faces.crop_exists" in html

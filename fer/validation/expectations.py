"""Great Expectations suites for the manifest, detections and faces tables, and the gate.

Suites are built in code on an ephemeral context (no project folder, no network). Every
expectation belongs to one *check* of ``validate.levels`` (columns, labels, dimensions,
rejected_rate, no_face_rate, multi_face_rate, class_balance, crops_exist), which says whether
its failure blocks the pipeline or only warns. Rates are computed into a one-row frame and
checked there, so each reported expectation carries one observed value.

Great Expectations is imported here only, lazily (it costs seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import ValidateConfig

# Contract columns (docs/data-contracts.md) and the kind of value each must hold.
REQUIRED: dict[str, dict[str, str]] = {
    "manifest": {
        "id": "str",
        "path": "str",
        "expression": "str",
        "label": "str",
        "bytes": "int",
        "width": "int",
        "height": "int",
        "format": "str",
        "status": "str",
        "reason": "str",
    },
    "detections": {
        "image_id": "str",
        "path": "str",
        "expression": "str",
        "label": "str",
        "n_faces": "int",
        "n_crops": "int",
        "status": "str",
        "reason": "str",
    },
    "faces": {
        "face_id": "str",
        "image_id": "str",
        "path": "str",
        "expression": "str",
        "label": "str",
        "face_index": "int",
        "x": "int",
        "y": "int",
        "w": "int",
        "h": "int",
        "score": "float",
        "crop_path": "str",
        "n_faces": "int",
    },
}

_INTS = [f"{p}{b}" for p in ("int", "uint", "Int", "UInt") for b in (8, 16, 32, 64)]
_TYPE_LISTS: dict[str, list[str]] = {
    "str": ["str"],  # checked value by value on object columns (see _gx_frame)
    "int": _INTS,
    "float": ["float16", "float32", "float64", "Float32", "Float64", *_INTS],
    "bool": ["bool", "boolean"],
}


@dataclass(frozen=True)
class ExpectationResult:
    """One evaluated expectation, as reported in the summary, report and metrics."""

    name: str
    check: str
    level: str
    success: bool
    observed: str
    bound: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class _Spec:
    table: str
    name: str
    check: str
    bound: str
    kind: str  # GX expectation class name
    kwargs: dict[str, Any]


def compute_rates(
    manifest: pd.DataFrame, detections: pd.DataFrame, faces: pd.DataFrame
) -> dict[str, float]:
    """Rejected-file rate (of all files), no-face and multi-face rates (of detected images) and
    class fractions (of faces). A rate over an empty table is 0."""
    import pandas as pd

    def frac(mask: Any, total: int) -> float:
        return float(np.sum(mask)) / total if total else 0.0

    out: dict[str, float] = {}
    if "status" in manifest:
        out["rejected_rate"] = frac(manifest["status"] == "rejected", len(manifest))
    if {"status", "n_faces"} <= set(detections.columns):
        ok = detections[detections["status"] == "ok"]
        # Coerced: a wrongly typed column is reported by the type check, not a crash here.
        n_faces = pd.to_numeric(ok["n_faces"], errors="coerce")
        out["no_face_rate"] = frac(n_faces == 0, len(ok))
        out["multi_face_rate"] = frac(n_faces >= 2, len(ok))
    if "label" in faces:
        for cls in CLASSES:
            out[f"fraction_{cls}"] = frac(faces["label"] == cls, len(faces))
    return out


def check_data(
    manifest: pd.DataFrame,
    detections: pd.DataFrame,
    faces: pd.DataFrame,
    crop_exists: Sequence[bool],
    cfg: ValidateConfig,
    expressions: Sequence[str],
) -> list[ExpectationResult]:
    """Run every suite and return one result per expectation, in a stable order.

    Args:
        manifest, detections, faces: the tables of docs/data-contracts.md.
        crop_exists: per faces row, whether its crop file exists (the stage checks the disk).
        cfg: bounds, limits and levels.
        expressions: the taxonomy's expression names (lower-case).
    """
    import pandas as pd

    if len(crop_exists) != len(faces):
        raise ValueError(f"crop_exists has {len(crop_exists)} entries for {len(faces)} faces")
    frames = {
        "manifest": manifest,
        "detections": detections,
        "faces": faces.assign(crop_exists=np.asarray(crop_exists, dtype=bool)),
    }
    if "status" in manifest:
        frames["images"] = manifest[manifest["status"] == "ok"]
    rates = compute_rates(manifest, detections, faces)
    frames["rates"] = pd.DataFrame([rates]) if rates else pd.DataFrame({"_": [0]})
    specs = _specs(frames, rates, cfg, expressions)
    return run_specs(frames, specs, cfg)


def _specs(
    frames: dict[str, pd.DataFrame],
    rates: dict[str, float],
    cfg: ValidateConfig,
    expressions: Sequence[str],
) -> list[_Spec]:
    return [
        *_column_specs(frames),
        *_value_specs(frames, cfg, expressions),
        *_rate_specs(rates, cfg),
    ]


def _column_specs(frames: dict[str, pd.DataFrame]) -> list[_Spec]:
    """Every table has rows and its required columns, of the right types."""
    specs: list[_Spec] = []
    for table, columns in REQUIRED.items():
        present = set(frames[table].columns)
        specs.append(_Spec(table, f"{table}.rows", "columns", "≥ 1 row",
                           "ExpectTableRowCountToBeBetween", {"min_value": 1}))  # fmt: skip
        for column, kind in columns.items():
            specs.append(_Spec(table, f"{table}.{column}.exists", "columns", "exists",
                               "ExpectColumnToExist", {"column": column}))  # fmt: skip
            if column in present:
                specs.append(
                    _Spec(table, f"{table}.{column}.type", "columns", f"type {kind}",
                          "ExpectColumnValuesToBeInTypeList",
                          {"column": column, "type_list": _TYPE_LISTS[kind]})
                )  # fmt: skip
    return specs


def _value_specs(
    frames: dict[str, pd.DataFrame], cfg: ValidateConfig, expressions: Sequence[str]
) -> list[_Spec]:
    """Labels within the classes and taxonomy, image sizes within bounds, crops present."""
    classes = list(CLASSES)
    in_classes = f"in {{{', '.join(classes)}}}"
    images = set(frames["images"].columns) if "images" in frames else set()
    specs: list[_Spec] = []
    if "label" in images:
        specs.append(_Spec("images", "manifest.label.in_classes", "labels", in_classes,
                           "ExpectColumnValuesToBeInSet",
                           {"column": "label", "value_set": classes}))  # fmt: skip
    if "expression" in images:
        taxonomy = {"column": "expression", "value_set": sorted(expressions)}
        specs.append(_Spec("images", "manifest.expression.in_taxonomy", "labels",
                           "in the taxonomy", "ExpectColumnValuesToBeInSet",
                           taxonomy))  # fmt: skip
    bounds = (("width", cfg.min_width, cfg.max_width), ("height", cfg.min_height, cfg.max_height))
    for column, lo, hi in bounds:
        if column in images:
            specs.append(_Spec("images", f"manifest.{column}.in_bounds", "dimensions",
                               f"[{lo}, {hi}] px", "ExpectColumnValuesToBeBetween",
                               {"column": column, "min_value": lo, "max_value": hi}))  # fmt: skip
    if "label" in frames["faces"].columns:
        specs.append(_Spec("faces", "faces.label.in_classes", "labels", in_classes,
                           "ExpectColumnValuesToBeInSet",
                           {"column": "label", "value_set": classes}))  # fmt: skip
    specs.append(_Spec("faces", "faces.crop_exists", "crops_exist", "all crop files exist",
                       "ExpectColumnValuesToBeInSet",
                       {"column": "crop_exists", "value_set": [True]}))  # fmt: skip
    return specs


def _rate_specs(rates: dict[str, float], cfg: ValidateConfig) -> list[_Spec]:
    """Rejected, no-face and multi-face rates, and class fractions, within their limits."""
    limits = [
        ("rejected_rate", "rejected_rate", None, cfg.max_rejected_rate),
        ("no_face_rate", "no_face_rate", None, cfg.max_no_face_rate),
        ("multi_face_rate", "multi_face_rate", None, cfg.max_multi_face_rate),
    ] + [
        (f"fraction_{c}", "class_balance", cfg.min_class_fraction, cfg.max_class_fraction)
        for c in CLASSES
    ]
    specs: list[_Spec] = []
    for column, check, lo, hi in limits:
        if column not in rates:
            continue  # its inputs lack a column; that failure is reported under "columns"
        bound = f"≤ {hi:g}" if lo is None else f"[{lo:g}, {hi:g}]"
        specs.append(_Spec("rates", f"rates.{column}", check, bound,
                           "ExpectColumnMaxToBeBetween",
                           {"column": column, "min_value": lo, "max_value": hi}))  # fmt: skip
    return specs


def _gx_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Copy with string columns as ``object``: GX's type checks misread pandas' ``str`` dtype."""
    import pandas as pd

    out = df.copy()
    for column in out.columns:
        if pd.api.types.is_string_dtype(out[column].dtype) and out[column].dtype != object:
            out[column] = out[column].astype(object)
    return out.reset_index(drop=True)


def run_specs(
    frames: dict[str, pd.DataFrame], specs: Sequence[_Spec], cfg: ValidateConfig
) -> list[ExpectationResult]:
    """Evaluate specs with Great Expectations: one suite and validation per table."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = ctx.data_sources.add_pandas("fer")
    found: dict[str, Any] = {}
    for table in dict.fromkeys(s.table for s in specs):
        batch = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe("all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=table))
        for spec in (s for s in specs if s.table == table):
            expectation_cls = getattr(gx.expectations, spec.kind)
            suite.add_expectation(expectation_cls(**spec.kwargs, meta={"name": spec.name}))
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch, suite=suite)
        )
        result = vd.run(batch_parameters={"dataframe": _gx_frame(frames[table])})
        for r in result.results:
            found[r.expectation_config.meta["name"]] = r

    results = []
    for spec in specs:
        r = found.get(spec.name)
        success = bool(r is not None and r.success)
        results.append(
            ExpectationResult(
                name=spec.name,
                check=spec.check,
                level=getattr(cfg.levels, spec.check),
                success=success,
                observed=_observed(spec, r),
                bound=spec.bound,
            )
        )
    return results


def _observed(spec: _Spec, r: Any) -> str:
    """A short human-readable observed value for one GX result."""
    if r is None:
        return "not evaluated"
    info = r.exception_info or {}
    if info.get("raised_exception"):
        return f"error: {str(info.get('exception_message', ''))[:120]}"
    res = dict(r.result or {})
    if spec.kind == "ExpectColumnToExist":
        return "present" if r.success else "missing"
    if "observed_value" in res:
        value = res["observed_value"]
        return f"{float(value):.4g}" if isinstance(value, int | float | np.number) else str(value)
    if "unexpected_count" in res:
        n_bad, n = int(res["unexpected_count"]), int(res.get("element_count", 0))
        text = f"{n_bad} of {n} rows fail"
        examples = [repr(_plain(v)) for v in res.get("partial_unexpected_list", [])[:3]]
        if spec.kind == "ExpectColumnValuesToBeInTypeList" and examples:
            kinds = sorted({type(v).__name__ for v in res["partial_unexpected_list"]})
            return f"{text} (value types {', '.join(kinds)})"
        return f"{text}, e.g. {', '.join(examples)}" if n_bad and examples else text
    return "ok" if r.success else "failed"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def blocking_failures(results: Sequence[ExpectationResult]) -> list[ExpectationResult]:
    """Failed expectations whose level is ``blocking``: any of them stops the pipeline."""
    return [r for r in results if not r.success and r.level == "blocking"]

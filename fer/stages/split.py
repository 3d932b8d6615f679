"""`fer split`: faces → ``data/splits.parquet`` (group-aware, stratified, seeded; or given).

``split.strategy: random`` draws a group-aware stratified split; ``given`` follows the dataset's
own (the ``usage`` column, mapped by ``split.given``), e.g. FER2013's Training / PublicTest /
PrivateTest, so results compare with the literature; duplicates it puts on both sides are
reported, not moved.

Inputs: ``data/faces.parquet`` and validation's ``quarantine.csv``, ``label_issues.csv`` and
``duplicates.csv``. Quarantined images and ``exclude``d faces never appear in the output;
``relabel``led faces carry the suggested label in ``label`` (``given_label`` keeps the original).
A person's decisions (``review.decisions``, written by ``fer review``) are applied last; see
:mod:`fer.validation.decisions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer import CLASSES
from fer import io as fio
from fer.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import Config

OUT_COLUMNS = [
    "face_id",
    "image_id",
    "path",
    "crop_path",
    "expression",
    "given_label",
    "label",
    "split",
    "group",
]
_NEEDS = {
    "quarantine.csv": ["path", "image_id", "reason"],
    "label_issues.csv": ["face_id", "suggested_label", "action"],
    "duplicates.csv": ["group", "path"],
}


def run(cfg: Config) -> dict[str, Any]:
    """Write the split table; returns per-split counts and exclusion counts."""
    from fer.validation import decisions as dec

    s = cfg.split
    faces_path = Path(cfg.detect.faces)
    faces = fio.read_table(faces_path, producer="fer detect", columns=[*OUT_COLUMNS[:5], "label"])
    val_dir = Path(cfg.validate_.out_dir)
    quarantine, issues, dups = (_read_csv(val_dir / name) for name in _NEEDS)
    review = dec.resolve(dec.read_decisions(cfg.review.decisions), faces, quarantine)
    dup_of = dict(zip(dups["path"], dups["group"], strict=False))
    crossing: list[str] = []
    if s.strategy == "given":  # label-issue verdicts only where split.given_clean says
        issues = _in_given_splits(issues, faces, s.given, s.given_clean)
        _, _, crossing = _given_splits(faces.assign(group=_groups(faces, dup_of)), s.given)
    faces, excluded, report = _kept_faces(faces, quarantine, issues, review)
    if faces.empty:
        raise InputError(f"{faces_path}: no face left to split after quarantine and exclusions")
    faces["group"] = _groups(faces, dup_of)
    if s.strategy == "given":
        faces, excluded["no_given_split"], _ = _given_splits(faces, s.given)
    else:
        faces["split"] = _random_splits(faces, s)
    out = faces[OUT_COLUMNS].astype({c: str for c in OUT_COLUMNS})
    fio.write_parquet(out, s.out)
    return _report(out, excluded, report, crossing, cfg)


def _kept_faces(
    faces: pd.DataFrame, quarantine: pd.DataFrame, issues: pd.DataFrame, review: Any
) -> tuple[pd.DataFrame, dict[str, int], dict[str, Any]]:
    """Faces left after quarantine, label-issue actions and a person's review decisions."""
    from fer.data.splitting import apply_label_actions
    from fer.validation import decisions as dec

    quarantine, restored, no_crops = dec.apply_restores(quarantine, faces, review)
    excluded: dict[str, int] = {}
    in_quarantine = faces["path"].isin(set(quarantine["path"]))
    excluded["quarantined"] = int(in_quarantine.sum())
    faces = faces[~in_quarantine]
    faces, issue_drop = apply_label_actions(faces, issues)
    faces, drop, reviewed = dec.apply_to_faces(faces, issue_drop, review)
    excluded["label_issue"] = int((issue_drop & ~reviewed).sum())
    excluded["review"] = int((drop & reviewed).sum())
    faces = faces[~drop]
    unknown = ~faces["label"].isin(CLASSES)
    excluded["unknown_label"] = int(unknown.sum())
    faces = faces[~unknown].sort_values("face_id").reset_index(drop=True)
    report = {**review.report(), "restored": restored, "restored_without_faces": no_crops}
    return faces, excluded, report


def _groups(faces: pd.DataFrame, dup_of: dict[str, str]) -> list[str]:
    from fer.data.splitting import leakage_groups

    return leakage_groups(list(faces["path"]), list(faces["image_id"]), dup_of)


def _random_splits(faces: pd.DataFrame, s: Any) -> list[str]:
    from fer.data.splitting import assign_splits

    fractions = {"train": s.train, "val": s.val, "test": s.test}
    return assign_splits(list(faces["group"]), list(faces["label"]), fractions, s.seed)


def _in_given_splits(
    issues: pd.DataFrame, faces: pd.DataFrame, given: dict[str, str], clean: list[str]
) -> pd.DataFrame:
    """The label issues of faces whose given split is in ``clean`` (others keep their labels,
    so a benchmark's test split stays as published)."""
    if "usage" not in faces:
        return issues
    split_of = dict(zip(faces["face_id"], faces["usage"].astype(str).str.lower().map(given),
                        strict=True))  # fmt: skip
    return issues[issues["face_id"].map(split_of).isin(clean)]


def _given_splits(
    faces: pd.DataFrame, given: dict[str, str]
) -> tuple[pd.DataFrame, int, list[str]]:
    """The dataset's own split (``usage`` mapped by ``split.given``), groups left where they are.

    Returns the faces with a mapped usage (``split`` set), how many had none, and the leakage
    groups (duplicates) that the given split puts on both sides: reported, never moved, so
    results stay comparable with the literature.
    """
    usage = faces["usage"].astype(str).str.lower() if "usage" in faces else None
    if usage is None or not usage.ne("").any():
        raise InputError(
            "split.strategy is given, but the faces carry no usage: set ingest.usage_pattern "
            "(e.g. FER2013's) and re-run ingest and detect"
        )
    mapped = usage.map(given)
    kept = faces[mapped.notna()].assign(split=mapped[mapped.notna()])
    spans = kept.groupby("group")["split"].nunique()
    return kept.reset_index(drop=True), int(mapped.isna().sum()), sorted(spans[spans > 1].index)


def _report(
    out: pd.DataFrame,
    excluded: dict[str, int],
    review: dict[str, Any],
    crossing: list[str],
    cfg: Config,
) -> dict[str, Any]:
    """Print the per-split table and what was kept out; the stage's return value."""
    import pandas as pd

    from fer.data.splitting import SPLITS

    table = pd.crosstab(out["split"], out["label"]).reindex(
        index=list(SPLITS), columns=list(CLASSES), fill_value=0
    )
    relabelled = int((out["label"] != out["given_label"]).sum())
    print(_summary(table, excluded, relabelled, cfg.split.out))
    if crossing:
        shown = ", ".join(crossing[:5]) + (" ..." if len(crossing) > 5 else "")
        print(
            f"warning: {len(crossing)} duplicate group(s) lie in more than one given split "
            f"(kept as given, not moved): {shown}; see data/validation/duplicates.csv"
        )
    print(_review_summary(cfg.review.decisions, review))
    return {
        "review": review,
        "strategy": cfg.split.strategy,
        "faces": len(out),
        "groups": int(out["group"].nunique()),
        "groups_across_given_splits": len(crossing),
        "relabelled": relabelled,
        "excluded": excluded,
        "counts": {sp: {c: int(table.loc[sp, c]) for c in CLASSES} for sp in SPLITS},
    }


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path}: not found (run `fer validate` first)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _NEEDS[path.name] if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return df


def _review_summary(path: Path, report: dict[str, Any]) -> str:
    """What the reviewed decisions did, and the rows that apply to nothing (kept in the file)."""
    acts = ", ".join(f"{k} {v}" for k, v in report["actions"].items()) or "none"
    lines = [
        f"review decisions ({path}): {report['rows']} row(s); faces decided: {report['faces']}"
        f" ({acts}); images restored: {len(report['restored'])}"
    ]
    if report["restored_without_faces"]:
        shown = ", ".join(report["restored_without_faces"][:5])
        lines.append(f"  restored but without face crops (nothing to train on): {shown}")
    for kind, what in (("vanished", "image no longer in the data"), ("unmatched", "no such face")):
        rows = report[kind]
        if rows:
            shown = "; ".join(
                f"line {r['line']} {r['action']} {r['path'] or r['image_id'][:12]}"
                for r in rows[:5]
            )
            more = f" (+{len(rows) - 5} more)" if len(rows) > 5 else ""
            lines.append(f"  {len(rows)} decision(s) kept but unused ({what}): {shown}{more}")
    return "\n".join(lines)


def _summary(table: pd.DataFrame, excluded: dict[str, int], relabelled: int, out: Path) -> str:
    width = max(len(c) for c in CLASSES) + 2
    header = "".join(f"{c:>{width}}" for c in (*CLASSES, "total"))
    lines = [f"split: wrote {out}", f"{'split':<7}{header}"]
    for split, row in table.iterrows():
        cells = "".join(f"{int(row[c]):>{width}}" for c in CLASSES)
        lines.append(f"{split:<7}{cells}{int(row.sum()):>{width}}")
    dropped = ", ".join(f"{k} {v}" for k, v in excluded.items())
    lines.append(f"excluded faces: {dropped}; relabelled: {relabelled}")
    return "\n".join(lines)

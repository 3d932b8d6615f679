"""`fer validate`: the data gate, no-face quarantine, label issues and duplicates.

Reads the manifest, detections and faces tables (docs/data-contracts.md) and writes, atomically,
``data/validation/{report.html, summary.json, quarantine.csv, label_issues.csv,
duplicates.csv}``, ``validate.details`` (every figure) and ``validate.metrics`` (the headline
numbers), then logs a run to MLflow. When a blocking expectation fails the outputs are still
written (the report says why), the one-screen summary is printed, and
:class:`fer.errors.GateError` stops the pipeline (exit code 1). The expensive parts
(duplicates, K-fold) are skipped when the gate has already failed.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer import CLASSES
from fer import io as fio
from fer.errors import GateError
from fer.progress import bar
from fer.tracking import write_run_facts
from fer.validation import auditing

if TYPE_CHECKING:
    import pandas as pd

    from fer.config import Config
    from fer.validation.duplicates import Fingerprint

DUPLICATE_COLUMNS = ["group", "path", "image_id", "kind"]


@dataclass
class Inputs:
    """The three tables validated, and whether each face's crop file exists."""

    manifest: pd.DataFrame
    detections: pd.DataFrame
    faces: pd.DataFrame
    crop_exists: list[bool]


@dataclass
class Audit:
    """What validation found beyond the expectations: quarantine, duplicates, label issues."""

    quarantine: pd.DataFrame
    duplicates: pd.DataFrame
    issues: pd.DataFrame
    truth_metrics: dict[str, Any] = field(default_factory=dict)
    auditor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def facts(self, label_action: str) -> dict[str, Any]:
        """The counts the summary and report show."""
        from fer.validation import quarantine

        return {
            "quarantined": len(self.quarantine),
            "quarantine_reasons": quarantine.reason_counts(self.quarantine),
            "label_issues": len(self.issues),
            "label_action": label_action,
            "duplicate_groups": int(self.duplicates["group"].nunique()),
            "duplicate_images": len(self.duplicates),
        }


def run(cfg: Config) -> dict[str, Any]:
    """Validate the data; returns every figure (``validate.details``).

    Raises:
        InputError: an input table is missing or unreadable.
        GateError: a blocking expectation failed (outputs are written first).
    """
    from fer.labels import Taxonomy
    from fer.validation import expectations

    t0 = time.perf_counter()
    data = _read_inputs(cfg)
    results = expectations.check_data(
        data.manifest, data.detections, data.faces, data.crop_exists, cfg.validate_,
        Taxonomy(cfg.taxonomy).expressions,
    )  # fmt: skip
    blocking = expectations.blocking_failures(results)
    columns_ok = not any(r.check == "columns" and not r.success for r in results)
    if columns_ok:
        audit = _audit(cfg, data, gate_failed=bool(blocking))
        facts = audit.facts(audit.auditor.get("action", cfg.validate_.label_action))
    else:
        audit = _empty_audit(data)
        audit.notes.append(
            "input tables break the contract: quarantine, duplicates and label issues skipped"
        )
        facts = {}
    facts["notes"] = audit.notes
    metrics = _metrics(results, data, audit)
    report_path = _write_outputs(cfg, results, metrics, audit, facts)
    out = Path(cfg.validate_.out_dir)
    timed = {**metrics, "seconds": round(time.perf_counter() - t0, 2)}  # wall time: MLflow
    _log(cfg, timed, [report_path, out / "summary.json", out / "label_issues.csv",
                      Path(cfg.validate_.details)])  # fmt: skip
    write_run_facts("validate", {"seconds": timed["seconds"]})
    _finish(results, blocking, facts, report_path)
    return metrics


def _read_inputs(cfg: Config) -> Inputs:
    manifest = fio.read_table(cfg.ingest.manifest, producer="fer ingest")
    detections = fio.read_table(cfg.detect.images, producer="fer detect")
    faces = fio.read_table(cfg.detect.faces, producer="fer detect")
    if "crop_path" in faces.columns:
        crops_dir = Path(cfg.detect.crops_dir)
        crop_exists = [_crop_file(crops_dir, p) is not None for p in faces["crop_path"]]
    else:
        crop_exists = [False] * len(faces)
    return Inputs(manifest, detections, faces, crop_exists)


def _crop_file(crops_dir: Path, crop_path: str) -> Path | None:
    """The crop file of a faces-table row when it exists inside ``crops_dir``, else None."""
    path = fio.contained(crops_dir, Path.cwd() / crop_path)
    return path if path is not None and path.is_file() else None


def _empty_audit(data: Inputs) -> Audit:
    from fer.validation import quarantine

    empty_q = quarantine.build_quarantine(data.manifest.head(0), data.detections.head(0))
    return Audit(empty_q, _empty(DUPLICATE_COLUMNS), auditing.empty_issues())


def _audit(cfg: Config, data: Inputs, *, gate_failed: bool) -> Audit:
    """Quarantine always; duplicates and label issues only when the gate passed."""
    from fer.validation import quarantine

    v = cfg.validate_
    faces = data.faces
    bad_crops = {p for p, ok in zip(faces["path"], data.crop_exists, strict=True) if not ok}
    if not gate_failed:
        crop_files = [_crop_file(Path(cfg.detect.crops_dir), p) for p in faces["crop_path"]]
        crops, crop_prints, readable = _decode_crops(crop_files, v.cv_input_size)
        bad_crops |= set(faces["path"][~readable])
    q = quarantine.build_quarantine(
        data.manifest, data.detections, sorted(bad_crops), min_width=v.min_width,
        min_height=v.min_height, max_width=v.max_width, max_height=v.max_height,
    )  # fmt: skip
    audit = _empty_audit(data)
    audit.quarantine = q
    if gate_failed:
        audit.notes.append("duplicates and label issues were skipped because the gate failed")
        audit.quarantine = _quarantine_not_face(data.manifest, q, audit.notes)
        return audit
    audit.duplicates = _duplicates(cfg, data.manifest, faces, crop_prints, audit.notes)
    teacher = functools.partial(_teacher_probs, cfg) if cfg.validate_.teacher != "none" else None
    audit.issues, scored, audit.auditor = auditing.find_issues(
        cfg, faces, crops, readable, q, audit.duplicates, audit.notes, teacher
    )
    audit.truth_metrics = _score_truth(cfg.truth, data.detections, faces, q, audit.issues, scored)
    # After the audit, never before: the auditor's faces and scores owe nothing to FER+.
    audit.quarantine = _quarantine_not_face(data.manifest, q, audit.notes)
    return audit


def _quarantine_not_face(
    manifest: pd.DataFrame, q: pd.DataFrame, notes: list[str]
) -> pd.DataFrame:
    """Add the images FER+'s crowd called "not a face" (``ferplus_not_face``), when the
    manifest carries votes (`fer import --votes`); images already quarantined keep their reason."""
    import pandas as pd

    from fer.data import ferplus

    if not ferplus.has_votes(manifest):
        return q
    nf = manifest[ferplus.not_face(ferplus.votes_matrix(manifest)) & (manifest["status"] == "ok")]
    new = nf[~nf["path"].isin(set(q["path"]))]
    if len(new):
        notes.append(f"{len(new)} image(s) quarantined as ferplus_not_face (FER+ votes: NF)")
    rows = pd.DataFrame(
        {"path": new["path"].astype(str), "image_id": new["id"].astype(str),
         "reason": "ferplus_not_face"}
    )  # fmt: skip
    both = pd.concat([q, rows], ignore_index=True) if len(rows) else q
    return both.sort_values("path", kind="stable").reset_index(drop=True).astype(str)


def _metrics(results: list, data: Inputs, audit: Audit) -> dict[str, Any]:
    """``validate.details``: gate outcome, rates, counts, auditor and (sandbox) truth scores."""
    from fer.validation import expectations

    blocking = expectations.blocking_failures(results)
    rates = expectations.compute_rates(data.manifest, data.detections, data.faces)
    return {
        "gate_passed": int(not blocking),
        "expectations": len(results),
        "failed_blocking": len(blocking),
        "failed_warning": sum(1 for r in results if not r.success and r.level == "warning"),
        **{k: round(val, 6) for k, val in rates.items()},
        "images": len(data.manifest),
        "faces": len(data.faces),
        "quarantined": len(audit.quarantine),
        "label_issues": len(audit.issues),
        "duplicate_groups": int(audit.duplicates["group"].nunique()),
        "duplicate_images": len(audit.duplicates),
        "auditor": audit.auditor,
        **audit.truth_metrics,
    }


def _write_outputs(
    cfg: Config, results: list, metrics: dict[str, Any], audit: Audit, facts: dict[str, Any]
) -> Path:
    """The tables, summary, HTML report and metrics, each written atomically."""
    from fer.validation import expectations, report

    out = Path(cfg.validate_.out_dir)
    report_path = out / "report.html"
    html = report.render_html(
        results, metrics, quarantine=audit.quarantine, label_issues=audit.issues,
        duplicates=audit.duplicates, notes=audit.notes,
    )  # fmt: skip
    summary = {
        "gate_passed": not expectations.blocking_failures(results),
        "expectations": [r.as_dict() for r in results],
        "facts": facts,
    }
    fio.write_csv(audit.quarantine, out / "quarantine.csv")
    fio.write_csv(audit.issues, out / "label_issues.csv")
    fio.write_csv(audit.duplicates, out / "duplicates.csv")
    fio.write_json(out / "summary.json", summary)
    fio.write_text(report_path, html)
    fio.write_json(cfg.validate_.details, metrics)
    fio.write_json(cfg.validate_.metrics, headline(metrics))
    return report_path


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """``validate.metrics``: the few numbers `dvc metrics show` lists for this stage.

    The gate, what was kept out, the auditor's out-of-fold accuracy and, on the sandbox, how
    well the mislabel and no-face flags match the truth; the rest stays in ``validate.details``.
    """
    keys = ("gate_passed", "images", "faces", "quarantined", "label_issues")
    out = {k: details[k] for k in keys}
    if "accuracy" in details.get("auditor", {}):
        out["auditor_accuracy"] = details["auditor"]["accuracy"]
    if "mislabel" in details:
        out.update(
            {f"mislabel_{k}": details["mislabel"][k] for k in ("precision", "recall", "f1")}
        )
    if "no_face" in details:
        out["no_face_f1"] = details["no_face"]["f1"]
    return out


def _finish(results: list, blocking: list, facts: dict[str, Any], report_path: Path) -> None:
    """Print the one-screen summary; a failed blocking expectation stops the pipeline."""
    from fer.validation import report

    text = report.summary_text(results, facts, str(report_path))
    print(text, file=sys.stderr if blocking else sys.stdout)
    if blocking:
        names = ", ".join(r.name for r in blocking[:5]) + (" ..." if len(blocking) > 5 else "")
        raise GateError(f"{len(blocking)} blocking expectation(s) failed: {names}")


def _empty(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _decode_crops(
    paths: list[Path | None], size: int
) -> tuple[np.ndarray, list[Fingerprint | None], np.ndarray]:
    """Every crop once (exact duplicates share a file): downsampled array, fingerprint (None
    when unreadable or too flat to compare) and readable flag per face (None: no file)."""
    import cv2

    from fer.validation.duplicates import fingerprint

    images = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    hashes: list[Fingerprint | None] = []
    readable = np.zeros(len(paths), dtype=bool)
    cache: dict[Path | None, tuple[np.ndarray, Fingerprint | None] | None] = {None: None}
    for i, p in enumerate(bar(paths, desc="decode crops", unit="crop")):
        if p not in cache:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                cache[p] = None
            else:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
                cache[p] = (small, fingerprint(rgb))
        hit = cache[p]
        if hit is None:
            hashes.append(None)
        else:
            images[i] = hit[0]
            readable[i] = True
            hashes.append(hit[1])
    return images, hashes, readable


def _image_print(path: Path | None, max_pixels: int) -> Fingerprint | None:
    """Fingerprint of a raw image, decoded at half size when cv2 can (ingest vetted the file);
    None for a path outside the raw dir (``path`` None) or an image too small to compare."""
    import cv2

    from fer.data.images import DecodeError, load_rgb
    from fer.validation.duplicates import fingerprint

    if path is None:
        return None
    bgr = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2)
    if bgr is not None and bgr.size:
        return fingerprint(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    try:  # formats cv2 cannot read (GIF, some TIFF): the project's safe decoder
        return fingerprint(load_rgb(path, max_pixels=max_pixels))
    except DecodeError:
        return None


def _duplicates(
    cfg: Config,
    manifest: pd.DataFrame,
    faces: pd.DataFrame,
    crop_prints: list[Fingerprint | None],
    notes: list[str],
) -> pd.DataFrame:
    import pandas as pd

    from fer.validation import duplicates as d

    ok = manifest[manifest["status"] == "ok"].sort_values("path")
    paths = list(ok["path"])
    raw = Path(cfg.ingest.raw_dir)
    prints = [
        _image_print(fio.contained(raw, p), cfg.ingest.max_pixels)
        for p in bar(paths, desc="hash images", unit="img")
    ]
    if any(fp is None for fp in prints):
        n_flat = sum(fp is None for fp in prints)
        notes.append(f"{n_flat} image(s) unreadable or too flat for near-duplicate matching")
    index = {p: i for i, p in enumerate(paths)}
    owners = [index.get(p, -1) for p in faces["path"]]
    usable = [k for k, o in enumerate(owners) if o >= 0]
    v = cfg.validate_
    links = d.crop_links(
        [owners[k] for k in usable],
        [crop_prints[k] for k in usable],
        max_distance=v.near_duplicate_distance,
        max_rms=v.near_duplicate_rms,
    )
    rows = d.duplicate_groups(
        paths,
        list(ok["id"]),
        prints,
        links,
        max_distance=v.near_duplicate_distance,
        max_rms=v.near_duplicate_rms,
    )
    return pd.DataFrame(rows, columns=DUPLICATE_COLUMNS) if rows else _empty(DUPLICATE_COLUMNS)


def _teacher_probs(cfg: Config, crop_paths: list[str]) -> np.ndarray:
    """Zero-shot class probabilities of the packaged model ``validate.teacher`` on the crops."""
    import torch

    from fer.learning.datasets import cpu_threads, load_crops
    from fer.prediction.inference import FaceClassifier
    from fer.prediction.model_resolution import pretrained_model

    torch.set_num_threads(cpu_threads(cfg.train.threads))
    crops = load_crops(
        crop_paths, root=Path.cwd(), size=cfg.detect.crop.size,
        cache_dir=Path(cfg.train.cache_dir), inside=Path(cfg.detect.crops_dir),
    )  # fmt: skip
    clf = FaceClassifier.load(pretrained_model(cfg, cfg.validate_.teacher), batch_size=256)
    probs = np.zeros((len(crop_paths), len(CLASSES)), dtype=np.float64)
    with bar(total=len(crop_paths), desc=f"teacher {cfg.validate_.teacher}", unit="face") as bar_:
        for start in range(0, len(crop_paths), 1024):
            probs[start : start + 1024] = clf.predict_proba(
                np.asarray(crops.images[start : start + 1024])
            )
            bar_.update(min(1024, len(crop_paths) - start))
    return probs


def _score_truth(
    truth_path: Path | None,
    detections: pd.DataFrame,
    faces: pd.DataFrame,
    q: pd.DataFrame,
    issues: pd.DataFrame,
    scored: pd.DataFrame,
) -> dict[str, Any]:
    """Sandbox only: P/R/F1 of mislabel and no-face detection against ``sample_truth.csv``."""
    import pandas as pd

    from fer.validation.label_issues import precision_recall_f1

    if truth_path is None or not Path(truth_path).is_file():
        return {}
    truth = pd.read_csv(truth_path).drop_duplicates("path").set_index("path")
    out: dict[str, Any] = {}
    # Mislabels, image level: an image is flagged when any of its faces is.
    per_image = scored.groupby("path")["flagged"].any()
    known = per_image.index.intersection(truth.index)
    if len(known):
        m = precision_recall_f1(
            per_image.loc[known].to_numpy(), truth.loc[known, "mislabeled"].astype(bool)
        )
        out["mislabel"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
    ok = detections[detections["status"] == "ok"]
    ok = ok[ok["path"].isin(truth.index)]
    if len(ok):
        no_face_truth = truth.loc[ok["path"], "n_faces"].to_numpy() == 0
        m = precision_recall_f1((ok["n_faces"] == 0).to_numpy(), no_face_truth)
        out["no_face"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
        # Faces from truly face-less images that are not quarantined would reach training.
        empty_paths = set(ok["path"][no_face_truth])
        leaked = faces["path"].isin(empty_paths) & ~faces["path"].isin(set(q["path"]))
        if "action" in issues and len(issues):
            excluded = set(issues.loc[issues["action"] == "exclude", "face_id"])
            leaked &= ~faces["face_id"].isin(excluded)
        out["no_face_images_reaching_training"] = int(faces.loc[leaked, "path"].nunique())
    return out


def _log(cfg: Config, metrics: dict[str, Any], artifacts: list[Path]) -> None:
    """One MLflow run for this stage, through fer.tracking (never mlflow directly)."""
    if not cfg.tracking.enabled:
        return
    from fer import tracking

    tracking.log_stage_run(
        cfg.tracking, "validate", cfg.validate_.model_dump(mode="json"), metrics, artifacts
    )

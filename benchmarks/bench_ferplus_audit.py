"""Benchmark: the label auditor scored against REAL label errors (FER+ votes on FER2013).

FER+ gave every FER2013 image 10 crowd votes. Where their majority class (taxonomy and
``import`` mapping as in the project's params) differs from FER2013's own label, the label is
taken as wrong in valence: the truth the auditor never saw. On the Training split (the faces
``validate`` audits), this scores ``data/validation/label_issues.csv``:

- precision (flags on real errors), recall (errors flagged), the share of faces flagged, and
  the base rate (errors among all scored faces: the precision of flagging at random);
- a precision-recall curve over the auditor's ``score`` (flags sorted by score), as a PNG;
- the no-face quarantine (``no_face`` and other non-FER+ reasons) against FER+'s "not a face"
  votes, on all splits;
- with ``--rank-by MODEL`` (repeatable: ``pretrained:faceexpr``, a model folder...): that model
  as an auditor on its own, zero-shot. Every audited face is ranked by how little the model
  believes its given label (1 − p(label), the face and its mirror averaged, the whole crop as
  the model's recipe resizes it), drawn on the same plot. Neither it nor the auditor sees FER+;
- with ``--crowd K`` (repeatable): a human reference, not an auditor. K of each face's FER+
  votes, drawn at random, audit the label (ranked by their share against it), scored against
  the majority of the face's OTHER votes. It tells how many crowd workers' reading a precision
  at recall 0.5 asks for. The same K votes also read the test split (PrivateTest, without
  ``evaluate.without``'s faces, as ``evaluate`` scores a model against FER+): their accuracy
  against the other votes' majority, a person's score beside a model's.

For each ranking it reports the best precision at recall ≥ 0.5 (the issue's operating point) and
the share of faces flagged there.

Faces whose FER+ votes tie between classes, or have no class vote, or that were quarantined
before the audit, are left out of the auditor's score. Needs a FER2013 project imported with
``fer import fer2013 SOURCE --out DIR --votes fer2013new.csv`` and run through ``fer validate``.
Nothing is written there.

    python benchmarks/bench_ferplus_audit.py --project PROJECT [--plot PR.png] [--out R.json] \
        [--rank-by pretrained:faceexpr --rank-by pretrained:minixception]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer import CLASSES

FERPLUS_REASON = "ferplus_not_face"


def score_flags(
    given: np.ndarray, truth: np.ndarray, flagged: np.ndarray, score: np.ndarray
) -> dict[str, Any]:
    """Score label-issue flags against a truth; pure.

    Args:
        given: class index per face (the dataset's label).
        truth: class index per face (FER+ majority), -1 where there is none (tie, no votes):
            those faces are left out.
        flagged: whether the auditor flagged the face.
        score: the auditor's score per face (only flagged faces' scores are used).

    Returns:
        ``n`` (faces scored), ``errors`` (given != truth), ``base_rate``, ``flagged``,
        ``flagged_share``, ``true_flags``, ``precision``, ``recall``, and ``curve``:
        ``{"precision": [...], "recall": [...], "score": [...]}`` as the score threshold falls
        through the flagged faces (highest first).
    """
    given, truth = np.asarray(given), np.asarray(truth)
    flagged, score = np.asarray(flagged, dtype=bool), np.asarray(score, dtype=np.float64)
    if not (len(given) == len(truth) == len(flagged) == len(score)):
        raise ValueError("given, truth, flagged and score must have one entry per face")
    known = truth >= 0
    error = known & (given != truth)
    hits = flagged & known
    n, n_err, n_flag = int(known.sum()), int(error.sum()), int(hits.sum())
    true_flags = int((hits & error).sum())
    order = np.flatnonzero(hits)[np.argsort(-score[hits], kind="stable")]
    tp = np.cumsum(error[order])
    rank = np.arange(1, len(order) + 1)
    return {
        "n": n,
        "errors": n_err,
        "base_rate": n_err / n if n else 0.0,
        "flagged": n_flag,
        "flagged_share": n_flag / n if n else 0.0,
        "true_flags": true_flags,
        "precision": true_flags / n_flag if n_flag else 0.0,
        "recall": true_flags / n_err if n_err else 0.0,
        "curve": {
            "precision": (tp / rank).tolist(),
            "recall": (tp / n_err if n_err else tp * 0.0).tolist(),
            "score": score[order].tolist(),
        },
    }


def precision_at_recall(result: dict[str, Any], target: float) -> dict[str, float] | None:
    """The best precision among the curve's points with recall ≥ ``target``, with that point's
    recall and its share of the scored faces flagged; None if the flags never reach it. Pure."""
    curve = result["curve"]
    precision, recall = np.asarray(curve["precision"]), np.asarray(curve["recall"])
    reached = np.flatnonzero(recall >= target - 1e-12)
    if len(reached) == 0:
        return None
    best = reached[np.argmax(precision[reached])]
    return {
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "flagged_share": (int(best) + 1) / result["n"] if result["n"] else 0.0,
    }


def crowd_split(
    class_votes: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each face's class votes split at random into ``k`` votes and the rest (drawn without
    replacement, as K of its crowd workers and the others); pure but for ``rng``.

    Returns ``(drawn, rest)``, both shaped like ``class_votes``. A face with ``k`` votes or
    fewer gives them all to ``drawn``.
    """
    counts = np.asarray(class_votes).astype(np.int64)
    if k < 1:
        raise ValueError(f"k must be at least 1 vote, got {k}")
    drawn = np.zeros_like(counts)
    for i, row in enumerate(counts):
        pool = np.repeat(np.arange(len(row)), row)
        take = rng.permutation(pool)[:k]
        drawn[i] = np.bincount(take, minlength=len(row))
    return drawn, counts - drawn


def crowd_reference(
    given: np.ndarray, class_votes: np.ndarray, audited: np.ndarray, k: int, seed: int = 0
) -> dict[str, Any]:
    """``k`` crowd votes as an auditor: every audited face ranked by the share of its ``k``
    drawn votes against its given label (ties in random order), scored (:func:`score_flags`)
    against the majority of its other votes; faces whose other votes tie are left out."""
    from fer.data import ferplus

    rng = np.random.default_rng(seed)
    drawn, rest = crowd_split(class_votes, k, rng)
    given = np.asarray(given)
    rows = np.arange(len(given))
    against = 1.0 - drawn[rows, np.clip(given, 0, None)] / np.maximum(drawn.sum(axis=1), 1)
    score = against + rng.random(len(given)) * 1e-6  # below one vote's step of 1 / k
    truth = np.where(np.asarray(audited, bool), ferplus.majority(rest), -1)
    return score_flags(given, truth, truth >= 0, score)


def crowd_accuracy(
    class_votes: np.ndarray, scored: np.ndarray, k: int, seed: int = 0
) -> dict[str, Any]:
    """How often ``k`` of a face's votes (their majority; a tie broken at random) name the
    majority class of its other votes, over the ``scored`` faces whose other votes do not tie."""
    from fer.data import ferplus

    rng = np.random.default_rng(seed)
    drawn, rest = crowd_split(np.asarray(class_votes)[np.asarray(scored, bool)], k, rng)
    read = (drawn + rng.random(drawn.shape) * 1e-3).argmax(axis=1)
    truth = ferplus.majority(rest)
    known = truth >= 0
    n = int(known.sum())
    return {"n": n, "accuracy": float((read[known] == truth[known]).mean()) if n else 0.0}


def score_quarantine(quarantined: np.ndarray, not_face: np.ndarray) -> dict[str, Any]:
    """A quarantine (e.g. ``no_face``) against FER+'s "not a face" votes: precision, recall."""
    quarantined, not_face = np.asarray(quarantined, bool), np.asarray(not_face, bool)
    both = int((quarantined & not_face).sum())
    return {
        "n": len(quarantined),
        "quarantined": int(quarantined.sum()),
        "not_face_votes": int(not_face.sum()),
        "both": both,
        "precision": both / int(quarantined.sum()) if quarantined.any() else 0.0,
        "recall": both / int(not_face.sum()) if not_face.any() else 0.0,
    }


def pr_figure(
    result: dict[str, Any], title: str, others: dict[str, dict[str, Any]] | None = None
) -> Any:
    """The precision-recall curve with the base rate (random flagging) and the operating point;
    ``others``: further rankings' results, by legend label, drawn beside it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=120)
    ax = fig.add_subplot()
    curve = result["curve"]
    ax.plot(curve["recall"], curve["precision"], label="auditor (flags by score)")
    for name, other in (others or {}).items():
        ax.plot(other["curve"]["recall"], other["curve"]["precision"], lw=1, label=name)
    ax.axhline(result["base_rate"], color="grey", ls="--", label="random flags (base rate)")
    ax.plot([result["recall"]], [result["precision"]], "o", color="C3", label="all flags")
    ax.set_xlabel("recall of FER+ valence disagreements")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _load(project: Path) -> dict[str, Any]:
    """The project's manifest (with votes), label issues and quarantine, as arrays per image."""
    import pandas as pd

    from fer.config import load_config
    from fer.data import ferplus
    from fer.labels import Taxonomy

    os.chdir(project)
    cfg = load_config(project / "params.yaml")
    manifest = pd.read_parquet(cfg.ingest.manifest)
    if not ferplus.has_votes(manifest):
        sys.exit(f"{cfg.ingest.manifest}: no FER+ votes (fer import fer2013 ... --votes)")
    out = Path(cfg.validate_.out_dir)
    issues = pd.read_csv(out / "label_issues.csv")
    quarantine = pd.read_csv(out / "quarantine.csv")
    manifest = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    taxonomy = Taxonomy(cfg.taxonomy)
    folders = ferplus.emotion_folders(cfg.import_.fer2013, cfg.import_.ferplus_contempt, taxonomy)
    votes = ferplus.votes_matrix(manifest)
    truth = ferplus.majority(ferplus.class_votes(votes, folders, taxonomy))
    has_votes = votes.sum(axis=1) > 0  # ferplus_row is -1 for votes of no one row (no_png)
    truth[~has_votes] = -1
    reason = dict(
        zip(quarantine["path"].astype(str), quarantine["reason"].astype(str), strict=True)
    )
    scores = issues.groupby("path")["score"].max()
    paths = manifest["path"].astype(str)
    return {
        "usage": manifest["usage"].astype(str).str.lower().to_numpy(),
        "given": np.array([CLASSES.index(c) if c in CLASSES else -1 for c in manifest["label"]]),
        "truth": truth,
        "flagged": paths.isin(set(scores.index)).to_numpy(),
        "score": paths.map(scores).fillna(-np.inf).to_numpy(dtype=np.float64),
        "reason": paths.map(reason).fillna("").to_numpy(),
        "votes": votes,
        "folders": folders,
        "class_votes": ferplus.class_votes(votes, folders, taxonomy),
        "not_face": ferplus.not_face(votes) & has_votes,
        "has_votes": has_votes,
        "path": paths.to_numpy(),
        "raw_dir": project / cfg.ingest.raw_dir,
        "cfg": cfg,
    }


def _image(root: Path, rel: str) -> Path:
    from fer.io import contained

    path = contained(root, rel)
    if path is None:
        sys.exit(f"manifest path {rel!r} lies outside {root}")
    return path


def zero_shot_scores(cfg: Any, model: str, images: list[Path], given: np.ndarray) -> np.ndarray:
    """1 − p(given label) per image from ``model`` as it is (the image and its mirror averaged;
    the whole image, cut by the model's recipe as ``--precropped`` does). Packaged models are
    built in a temporary folder: nothing is written to the project.
    """
    import tempfile

    from fer.data.images import load_rgb
    from fer.faces.recipes import WholeImage
    from fer.prediction.ensemble import load_for_inference
    from fer.prediction.model_resolution import resolve_model
    from fer.progress import bar

    with tempfile.TemporaryDirectory() as tmp:
        scratch = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cache_dir": tmp})})
        clf = load_for_inference(resolve_model(scratch, model).path, batch_size=256)
        cutter, whole = clf.face_cutter(default=cfg.detect.crop).whole_image(), WholeImage()
        believed = np.empty(len(images))
        chunk = 1024
        for start in bar(range(0, len(images), chunk), desc=f"rank by {model}", unit="chunk"):
            crops = []
            for path in images[start : start + chunk]:
                rgb = load_rgb(path, max_pixels=cfg.ingest.max_pixels)
                crops.extend(cutter.cut(rgb, whole.detect(rgb)))
            batch = np.stack(crops)
            probs = (clf.predict_proba(batch) + clf.predict_proba(batch[:, :, ::-1].copy())) / 2
            rows = np.arange(len(batch))
            believed[start : start + len(batch)] = probs[rows, given[start : start + len(batch)]]
    return 1.0 - believed


def _tested(d: dict[str, Any]) -> np.ndarray:
    """The faces ``evaluate`` scores a model on against FER+: the test split with a FER+
    majority, less those whose top folder is in ``evaluate.without``."""
    from fer.data import ferplus

    cfg = d["cfg"]
    test = [usage.lower() for usage, split in cfg.split.given.items() if split == "test"]
    without = ferplus.top_folder_in(d["votes"], d["folders"], cfg.evaluate.without)
    return np.isin(d["usage"], test) & (d["truth"] >= 0) & ~without


def _at_half(result: dict[str, Any]) -> str:
    point = precision_at_recall(result, 0.5)
    if point is None:
        return "not reached"
    return (f"precision {point['precision']:.3f} (recall {point['recall']:.3f}, "
            f"{point['flagged_share']:.1%} flagged)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=Path("ferplus_audit_pr.png"))
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument(
        "--rank-by", action="append", default=[], metavar="MODEL",
        help="also score MODEL alone, zero-shot, as an auditor (repeatable)",
    )  # fmt: skip
    ap.add_argument(
        "--crowd", action="append", default=[], type=int, metavar="K",
        help="also score K of each face's FER+ votes against its other votes (repeatable)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    plot, out = args.plot.resolve(), args.out.resolve() if args.out else None
    d = _load(args.project.resolve())
    # The auditor's faces: Training, not quarantined before the audit (FER+'s own quarantine
    # comes after it), with a known given label.
    pre_audit = (d["reason"] != "") & (d["reason"] != FERPLUS_REASON)
    audited = (d["usage"] == "training") & ~pre_audit & (d["given"] >= 0)
    truth = np.where(audited, d["truth"], -1)
    result = score_flags(d["given"], truth, d["flagged"], d["score"])
    others = {}
    scored = np.flatnonzero(truth >= 0)
    images = [_image(d["raw_dir"], d["path"][i]) for i in scored] if args.rank_by else []
    for model in args.rank_by:
        score = np.full(len(truth), -np.inf)
        score[scored] = zero_shot_scores(d["cfg"], model, images, d["given"][scored])
        others[model] = score_flags(d["given"], truth, truth >= 0, score)
    crowds = {k: crowd_reference(d["given"], d["class_votes"], audited, k) for k in args.crowd}
    tested = _tested(d)
    for k in args.crowd:
        crowds[k]["test"] = crowd_accuracy(d["class_votes"], tested, k)
    ambiguous = int((audited & d["has_votes"] & (d["truth"] < 0)).sum())
    no_face = (d["reason"] != "") & (d["reason"] != FERPLUS_REASON)
    quarantine = score_quarantine(no_face[d["has_votes"]], d["not_face"][d["has_votes"]])
    from fer.learning.evaluation import save_figure

    title = (f"{args.project.name}: {result['n']} Training faces,\n{result['errors']} FER+ "
             f"valence disagreements (FER2013 label ≠ FER+ majority)")  # fmt: skip
    curves = {f"{m} alone, zero-shot": r for m, r in others.items()}
    curves.update({f"{k} FER+ vote(s) vs the others": r for k, r in crowds.items()})
    save_figure(pr_figure(result, title, curves), plot)
    print(
        f"auditor vs FER+ (Training, {result['n']} faces; {ambiguous} with tied/no class votes "
        f"left out): {result['errors']} disagreements (base rate {result['base_rate']:.3f})\n"
        f"  flagged {result['flagged']} ({result['flagged_share']:.1%}): precision "
        f"{result['precision']:.3f}, recall {result['recall']:.3f}\n"
        f"  quarantine (non-FER+ reasons) vs FER+ not-a-face: {quarantine}\n"
        f"  at recall ≥ 0.5: {_at_half(result)}"
    )
    for model, other in others.items():
        print(f"  {model} alone, zero-shot, at recall ≥ 0.5: {_at_half(other)}")
    for k, crowd in crowds.items():
        test = crowd["test"]
        print(f"  {k} FER+ vote(s) per face vs its other votes ({crowd['n']} faces, base rate "
              f"{crowd['base_rate']:.3f}), at recall ≥ 0.5: {_at_half(crowd)}; on the test "
              f"split ({test['n']} faces) accuracy {test['accuracy']:.3f}")  # fmt: skip
    print(f"  precision-recall curve → {plot}")
    if out:

        def summary(r: dict[str, Any]) -> dict[str, Any]:
            return {**{k: v for k, v in r.items() if k != "curve"},
                    "at_recall_0.5": precision_at_recall(r, 0.5)}  # fmt: skip

        out.write_text(json.dumps({"auditor": summary(result), "ambiguous": ambiguous,
                                   "quarantine": quarantine,
                                   "zero_shot": {m: summary(r) for m, r in others.items()},
                                   "crowd": {str(k): summary(r) for k, r in crowds.items()}},
                                  indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: one model, one budget, five label sources; scored against FER2013 and FER+.

The same model and the same training budget, trained on (``--model``: mini-Xception from its
packaged FER2013 weights by default; ``--from-scratch`` starts it, or the baseline CNN, from
random weights, so that it has not already learned FER2013's labels):

- (a) FER2013's labels;
- (b) FER2013 minus the faces the auditor excludes;
- (c) FER2013 with the auditor's relabels (unsure suspects excluded, as ``relabel`` does);
- (d) the FER+ crowd's majority class (``train.labels: ferplus_majority``);
- (e) the FER+ vote distribution (``train.labels: ferplus_soft``).

Each variant is fer's own ``split`` -> ``train`` -> ``evaluate`` (``python -m fer.cli``) in its
own scratch folder with its own params.yaml; the project is only read. (b) and (c) reuse ONE
auditor run: validate decides ``label_issues.csv``'s ``action`` column, split applies it, so
the benchmark re-decides the actions of the project's existing ``label_issues.csv`` with fer's
own rules (``decide_actions``, ``cap_actions``: ``relabel_threshold``,
``max_exclude_fraction``) instead of re-running the K-fold auditor. It does so even where
validate distrusted the auditor and only flagged: the table then measures what acting on its
verdicts would have done. Split applies them to the train split only (``given_clean``).

Test: PrivateTest (``split.strategy: given``), valence (3 classes), surprise aside
(``evaluate.without: [awe]``), against FER2013's labels and the FER+ majority.

Writes ``results.json``, ``results.md`` (the table) and ``accuracy.png`` under ``--out``.

    python benchmarks/bench_ferplus_table.py --project PROJECT --out BENCH_OUT \
        [--epochs 1] [--every 4] [--variants a,b,c,d,e] [--model baseline --from-scratch]
        [--unfreeze]   # the packaged weights with no layer frozen
        [--set train.class_balance=none ...]   # further params edits, for every variant
    python benchmarks/bench_ferplus_table.py --project PROJECT --out BENCH_OUT/mix \
        --variants d --mix BENCH_OUT/minixception BENCH_OUT/faceexpr   # read them together
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "minixception"
ENSEMBLE = "ensemble"  # --mix: the folder (and --model) of the ensemble in each variant
PRETRAINED = ("minixception", "faceexpr")  # architectures with packaged real-face weights
VARIANTS: dict[str, dict[str, str]] = {
    "a": {"source": "FER2013 labels", "labels": "given", "action": "flag"},
    "b": {"source": "FER2013 minus auditor excludes", "labels": "given", "action": "exclude"},
    "c": {"source": "FER2013 relabelled by auditor", "labels": "given", "action": "relabel"},
    "d": {"source": "FER+ majority", "labels": "ferplus_majority", "action": "flag"},
    "e": {"source": "FER+ soft labels", "labels": "ferplus_soft", "action": "flag"},
}
INPUTS = ("manifest.parquet", "detections.parquet")
VALIDATION = ("quarantine.csv", "duplicates.csv")


def redecide_actions(
    issues: Any, action: str, relabel_threshold: float, max_count: int
) -> tuple[Any, int]:
    """``label_issues.csv`` with ``action`` re-decided by fer's rules; pure.

    Every row is a flagged face; its confidence is its suggested class's probability
    (``p_<class>``). At most ``max_count`` faces (the highest ``score``) are acted on.

    Returns:
        (the table with a new ``action`` column, how many were capped back to ``flag``).
    """
    from fer.validation import label_issues as li

    probs = issues[[f"p_{c}" for c in _classes()]].to_numpy(dtype=np.float64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    actions = li.decide_actions(np.ones(len(issues), bool), confidence, action, relabel_threshold)
    actions, capped = li.cap_actions(
        actions, issues["score"].to_numpy(dtype=np.float64), max_count
    )
    return issues.assign(action=actions), capped


def every_kth_training(faces: Any, every: int) -> Any:
    """Every ``every``-th Training face (by ``face_id``) and all other faces; pure."""
    training = faces["usage"].astype(str).str.lower() == "training"
    order = faces.loc[training, "face_id"].sort_values(kind="stable").index
    keep = set(order[::every])
    return faces[~training | faces.index.isin(keep)].reset_index(drop=True)


def summarize(details: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers from evaluate's details (``metrics/details/<model>.json``); pure."""
    fp = details.get("ferplus", {})
    return {
        "n_fer2013": details["n_without"],
        "acc_fer2013": details["accuracy_without"],
        "f1_fer2013": details["macro_f1_without"],
        "n_ferplus": fp.get("n_without"),
        "acc_ferplus": fp.get("accuracy_without"),
        "f1_ferplus": fp.get("macro_f1_without"),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table (one row per variant) as Markdown; pure."""
    head = (
        "| variant | label source | train faces | acc vs FER2013 | acc vs FER+ | "
        "macro-F1 vs FER2013 | macro-F1 vs FER+ | train min | peak RSS (MB) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['source']} | {r['train_faces']} | {_f(r['acc_fer2013'])} | "
            f"{_f(r['acc_ferplus'])} | {_f(r['f1_fer2013'])} | {_f(r['f1_ferplus'])} | "
            f"{r['train_minutes']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _classes() -> tuple[str, ...]:
    from fer import CLASSES

    return tuple(CLASSES)


def params_entry(model: str) -> dict[str, Any]:
    """The ``models.<model>`` entry of the repository's params.yaml (``{}`` if it has none)."""
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    return dict(raw.get("models", {}).get(model) or {})


def overrides(
    variant: str,
    epochs: int,
    lr: float,
    batch: int,
    cache: Path,
    model: str = MODEL,
    from_scratch: bool = False,
    seed: int = 0,
    unfreeze: bool = False,
) -> list[str]:
    """The params edits of one variant (same model and budget for all; one crop cache)."""
    v = VARIANTS[variant]
    entry: dict[str, Any] = {"epochs": epochs, "lr": lr}
    if not from_scratch:
        entry = {**params_entry(model), **entry, "pretrained": True}
        if unfreeze:  # the packaged weights, every layer trained
            entry["freeze"] = []
    elif model in PRETRAINED:  # random weights: nothing shipped to keep frozen
        entry = {**params_entry(model), **entry, "pretrained": False, "freeze": []}
    # else an entry of architecture defaults (e.g. baseline's width) plus the budget
    budget = [f"models.{model}={json.dumps(entry)}"]  # JSON is YAML: the whole entry at once
    return [
        *budget,
        "detect.mode=precropped", "split.strategy=given", "split.given_clean=[train]",
        "validate.folds=2", "validate.cv_epochs=1", f"validate.label_action={v['action']}",
        f"train.labels={v['labels']}", f"train.model={model}", f"train.models=[{model}]",
        "train.threads=2", "train.flip=true", f"train.cache_dir={cache}",
        f"train.batch_size={batch}", f"train.seed={seed}", "evaluate.without=[awe]",
        "tracking.enabled=false",
    ]  # fmt: skip


def prepare(project: Path, work: Path, faces: Any, issues: Any, params: list[str]) -> None:
    """A scratch project: links to the read-only inputs, its own tables and params.yaml."""
    from fer.params_edit import apply_overrides

    (work / "data" / "validation").mkdir(parents=True, exist_ok=True)
    (work / "data" / "faces").unlink(missing_ok=True)
    (work / "data" / "faces").symlink_to((project / "data" / "faces").resolve())
    for name in INPUTS:
        shutil.copyfile(project / "data" / name, work / "data" / name)
    for name in VALIDATION:
        shutil.copyfile(project / "data/validation" / name, work / "data/validation" / name)
    faces.to_parquet(work / "data" / "faces.parquet", index=False)
    issues.to_csv(work / "data/validation/label_issues.csv", index=False)
    shutil.copyfile(Path(__file__).resolve().parents[1] / "params.yaml", work / "params.yaml")
    apply_overrides(work / "params.yaml", params)


def run_stage(args: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """Run ``python -m fer.cli ARGS`` in ``cwd``; returns (seconds, peak RSS in MB)."""
    t0 = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ fer {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "fer.cli", *args], cwd=cwd, stdout=out, stderr=out,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"fer {args[0]} failed in {cwd} (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def run_variant(variant: str, project: Path, out: Path, faces: Any, issues: Any, a: Any) -> dict:
    """One variant's split -> train -> evaluate; its row of the table."""
    v = VARIANTS[variant]
    work = out / f"variant_{variant}"
    n_train = int((faces["usage"].astype(str).str.lower() == "training").sum())
    limit = int(a.max_exclude_fraction * n_train)  # as validate: a share of the faces audited
    acted, capped = redecide_actions(issues, v["action"], a.relabel_threshold, limit)
    edits = overrides(
        variant, a.epochs, a.lr, a.batch, (out / "cache").resolve(), a.model, a.from_scratch,
        a.seed, a.unfreeze,
    )  # fmt: skip
    # an ensemble's members recut the project's images
    prepare(project, work, faces, acted, [*edits, f"ingest.raw_dir={raw_dir(project)}", *a.set])
    log = work / "stages.log"
    times, rss = {}, []
    if a.mix:  # the earlier runs' models, read together: their training runs are theirs
        name, models = ENSEMBLE, [Path(m) for m in mix_members(a.mix, variant)]
        fit = ["ensemble", *map(str, models), "--flip", "--shift", str(a.mix_shift),
               "--out", f"models/{ENSEMBLE}"]  # fmt: skip
    else:
        name, models = a.model, [work / "models" / a.model]
        fit = ["train", "--model", a.model, "--fresh"]
    for stage in (["split"], fit, ["evaluate", "--model", name]):
        sec, mb = run_stage(stage, work, log)
        times[stage[0]], rss = round(sec, 1), [*rss, mb]
    import pandas as pd

    split = pd.read_parquet(work / "data" / "splits.parquet")
    train = split[split["split"] == "train"]
    details = json.loads((work / "metrics" / "details" / f"{name}.json").read_text())
    n_train = max(json.loads((m / "run.json").read_text())["n_train"] for m in models)
    train_sec = times[fit[0]]
    return {
        "variant": variant, **v, **summarize(details),
        "train_faces": n_train,  # what train used (FER+ ties, no votes: skipped)
        "split_train_faces": len(train),
        "relabelled": int((train["label"] != train["given_label"]).sum()),
        "excluded_train": int((acted["action"] == "exclude").sum()),
        "capped": capped, "seconds": times,
        "train_minutes": train_sec / 60, "peak_rss_mb": max(rss),
    }  # fmt: skip


def raw_dir(project: Path) -> str:
    """The project's image folder (its params' ``ingest.raw_dir``), as an absolute path."""
    from fer.config import load_config

    return (project / load_config(project / "params.yaml").ingest.raw_dir).resolve().as_posix()


def mix_members(runs: list[Path], variant: str) -> list[str]:
    """The model folders one variant trained in each earlier run of this benchmark (``--out``).

    Raises:
        SystemExit: a run without this variant's trained model.
    """
    members = []
    for run in runs:
        model = json.loads((run / "results.json").read_text())["budget"]["model"]
        folder = (run / f"variant_{variant}" / "models" / model).resolve()
        if not (folder / "model.pt").is_file():
            raise SystemExit(f"--mix {run}: no trained model for variant {variant} ({folder})")
        members.append(str(folder))
    return members


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Bars: accuracy vs FER2013 and vs FER+ per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (key, name) in enumerate([("acc_fer2013", "vs FER2013"), ("acc_ferplus", "vs FER+")]):
        vals = [r[key] or 0.0 for r in rows]
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, [f"({r['variant']}) {r['source']}" for r in rows], rotation=20, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_title("PrivateTest, valence (3 classes), surprise aside; dotted: the 0.90 goal")
    ax.set_ylim(0, 1)
    ax.axhline(0.9, ls=":", c="grey")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", default="a,b,c,d,e")
    p.add_argument("--model", default=MODEL, help="minixception (default) or baseline")
    p.add_argument("--from-scratch", action="store_true", help="random start, nothing frozen")
    p.add_argument("--unfreeze", action="store_true", help="packaged weights, every layer trained")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further params edit for every variant (repeatable), e.g. train.class_balance=none",
    )
    p.add_argument(
        "--mix", nargs="+", type=Path, default=[], metavar="OUT",
        help="instead of training: each variant's models from these earlier runs (their --out), "
        "read together with equal weights, each face and its mirror (fer ensemble --flip)",
    )  # fmt: skip
    p.add_argument(
        "--mix-shift", type=float, default=0.0, metavar="F",
        help="with --mix: each face also read moved by F of its side (fer ensemble --shift)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="train.seed (init, order, augmentation)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--every", type=int, default=1, help="train on every k-th Training face")
    p.add_argument("--relabel-threshold", type=float, default=0.9)
    p.add_argument("--max-exclude-fraction", type=float, default=0.15)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    faces = every_kth_training(pd.read_parquet(a.project / "data" / "faces.parquet"), a.every)
    issues = pd.read_csv(a.project / "data/validation/label_issues.csv")
    training = faces[faces["usage"].astype(str).str.lower() == "training"]
    issues = issues[issues["face_id"].isin(set(training["face_id"]))]  # split acts there only
    rows = []
    for variant in a.variants.split(","):
        rows.append(run_variant(variant, a.project, a.out, faces, issues, a))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": shlex.join(["python", *sys.argv]),
        "load_before": load,
        "load_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "budget": {"model": a.model, "pretrained": not a.from_scratch and a.model in PRETRAINED,
                   "unfreeze": a.unfreeze, "set": a.set,
                   "mix": [str(m) for m in a.mix], "mix_shift": a.mix_shift,
                   "epochs": a.epochs, "lr": a.lr, "seed": a.seed,
                   "batch": a.batch, "every_kth_training_face": a.every, "flip": True},
        "rows": rows,
    }  # fmt: skip
    (a.out / "results.json").write_text(json.dumps(result, indent=2))
    md = markdown_table(rows) + f"\nLoad: {load}\n\nCommand: `{result['command']}`\n"
    (a.out / "results.md").write_text(md)
    plot(rows, a.out / "accuracy.png")
    print(md)


if __name__ == "__main__":
    main()

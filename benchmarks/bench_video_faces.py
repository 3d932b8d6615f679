"""Real single-person videos through `fer predict`: one face on every frame, one track a clip.

Runs the ``fer`` command line, as a user would, on every clip of a folder (the clips of
``python benchmarks/real_faces.py videos --keep-clips``: one person in each), detecting on every
frame, and reads its ``--json`` records. Reports, per clip and in all: frames, the share of
frames with exactly one face, the tracks (one person should be one track) and frames per
second of the whole run (decode, detect, cut, classify, annotated video written; model load
included). Each ``--case LABEL=PARAMS`` runs the clips with that params file (default: one case,
this repository's ``params.yaml``); ``video_faces.png`` shows every frame of every clip, one
strip a clip, coloured by the number of faces found, one panel a case. Usage::

    python benchmarks/bench_video_faces.py --clips DATA_DIR/videoframes/clips \\
        --model pretrained:faceexpr --out BENCH_OUT/video \\
        --case "rules off=PARAMS_WITHOUT_RULES" --case "default=params.yaml"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
SUFFIXES = (".mp4", ".mpg", ".avi", ".mov", ".mkv")


def summarize(records: list[dict]) -> dict:
    """Per clip and overall: frames, exact-one share, over / under counts, tracks, and the
    number of faces on each frame (``counts``)."""
    clips = []
    for rec in records:
        per_frame = [len(frame["faces"]) for frame in rec["frames"]]
        counts = Counter(per_frame)
        n = len(per_frame)
        clips.append({
            "clip": Path(rec["path"]).name,
            "frames": n,
            "exactly_one": counts.get(1, 0) / n if n else 0.0,
            "over": sum(v for k, v in counts.items() if k > 1),
            "under": counts.get(0, 0),
            "tracks": len(rec["tracks"]),
            "labels": [t["label"] for t in rec["tracks"]],
            "counts": per_frame,
        })  # fmt: skip
    frames = sum(c["frames"] for c in clips)
    exact = sum(c["counts"].count(1) for c in clips)
    return {
        "clips": clips,
        "frames": frames,
        "exactly_one": exact / frames if frames else 0.0,
        "one_track_clips": sum(c["tracks"] == 1 for c in clips),
    }


def run_case(clips: list[Path], model: str, params: Path, out: Path) -> dict:
    """`fer predict CLIPS --model M --json` with ``params``; its summary, timed."""
    cmd = [str(BIN / "fer"), "--params", str(params), "predict", *map(str, clips),
           "--model", model, "--out", str(out), "--json"]  # fmt: skip
    env = dict(os.environ, FER_PROGRESS="0")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"fer predict failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = summarize(json.loads(proc.stdout))
    result.update(wall_s=round(wall, 1), fps=result["frames"] / wall,
                  load_end=os.getloadavg()[0], command=shlex.join(cmd))  # fmt: skip
    return result


def table(result: dict) -> str:
    """One markdown row per clip, then the totals line."""
    lines = ["| clip | frames | exactly one face | extra | missed | tracks |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c in result["clips"]:
        lines.append(f"| {c['clip']} | {c['frames']} | {c['exactly_one']:.3f} | {c['over']} | "
                     f"{c['under']} | {c['tracks']} |")  # fmt: skip
    lines.append(
        f"\n{len(result['clips'])} clips, {result['frames']} frames: exactly one face on "
        f"{result['exactly_one']:.4f}; one track in {result['one_track_clips']} clips; "
        f"{result['fps']:.1f} frames/s over {result['wall_s']:.0f} s (model load and annotated "
        f"videos included); load avg at end {result['load_end']:.2f}"
    )
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    """Every frame of every clip, coloured by its face count; one panel a case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    colours = ListedColormap(["#bbbbbb", "#4c9a2a", "#d62728", "#7b1fa2"])  # 0, 1, 2, 3+ faces
    first = next(iter(results.values()))
    names = [c["clip"] for c in first["clips"]]
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 0.28 * len(names) + 1.6),
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, (label, res) in zip(axes[0], results.items(), strict=True):
        width = max(c["frames"] for c in res["clips"])
        grid = np.full((len(names), width), np.nan)
        for row, c in enumerate(res["clips"]):
            grid[row, : c["frames"]] = np.minimum(c["counts"], 3)
        ax.imshow(grid, aspect="auto", cmap=colours, vmin=-0.5, vmax=3.5, interpolation="nearest")
        ax.set_title(f"{label}: exactly one face on {res['exactly_one']:.4f} of "
                     f"{res['frames']} frames", fontsize=10)  # fmt: skip
        ax.set_xlabel("frame")
    axes[0][0].set_yticks(range(len(names)), names, fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(i)) for i in range(4)]
    fig.legend(handles, ["no face", "one face", "two", "three or more"], loc="lower center",
               ncol=4, fontsize=8)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cases(given: list[str] | None) -> dict[str, Path]:
    if not given:
        return {"params.yaml": REPO / "params.yaml"}
    cases = {}
    for item in given:
        label, sep, params = item.partition("=")
        if not sep or not label or not Path(params).is_file():
            raise SystemExit(f"--case {item!r}: expected LABEL=PARAMS_FILE (an existing file)")
        cases[label] = Path(params).resolve()
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, required=True, help="folder of single-person clips")
    ap.add_argument("--model", default="pretrained:faceexpr", help="fer predict --model")
    ap.add_argument("--out", type=Path, required=True, help="annotated videos and results")
    ap.add_argument("--case", action="append", help="LABEL=PARAMS_FILE (repeatable)")
    args = ap.parse_args(argv)
    cases = _cases(args.case)
    clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in SUFFIXES)
    if not clips:
        raise SystemExit(f"{args.clips}: no video clip ({', '.join(SUFFIXES)})")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"cores: {os.cpu_count()}; load avg at start: {os.getloadavg()[0]:.2f}")
    results = {}
    for k, (label, params) in enumerate(cases.items()):
        results[label] = run_case(clips, args.model, params, args.out / f"predictions-{k}")
        print(f"\n## {label} ({params.name}, --model {args.model})\n{table(results[label])}")
    (args.out / "video_faces.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "video_faces.png")
    print(f"\n{args.out / 'video_faces.json'}, {args.out / 'video_faces.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real single-person videos through `fer predict`: one face on every frame, one track a clip.

Runs the ``fer`` command line, as a user would, on every clip of a folder (the clips of
``python benchmarks/real_faces.py videos --keep-clips``: one person in each), detecting on every
frame, and reads its ``--json`` records. Reports, per clip and in all: frames, the share of
frames with exactly one face, the tracks (one person should be one track) and frames per
second of the whole run (decode, detect, cut, classify, annotated video written; model load
included). Usage::

    python benchmarks/bench_video_faces.py --clips DATA_DIR/videoframes/clips \\
        --model pretrained:faceexpr --out BENCH_OUT/video
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
SUFFIXES = (".mp4", ".mpg", ".avi", ".mov", ".mkv")


def summarize(records: list[dict]) -> dict:
    """Per clip and overall: frames, exact-one share, over / under counts and tracks."""
    clips = []
    for rec in records:
        counts = Counter(len(frame["faces"]) for frame in rec["frames"])
        n = sum(counts.values())
        clips.append({
            "clip": Path(rec["path"]).name,
            "frames": n,
            "exactly_one": counts.get(1, 0) / n if n else 0.0,
            "over": sum(v for k, v in counts.items() if k > 1),
            "under": counts.get(0, 0),
            "tracks": len(rec["tracks"]),
            "labels": [t["label"] for t in rec["tracks"]],
        })  # fmt: skip
    frames = sum(c["frames"] for c in clips)
    exact = sum(round(c["exactly_one"] * c["frames"]) for c in clips)
    return {
        "clips": clips,
        "frames": frames,
        "exactly_one": exact / frames if frames else 0.0,
        "one_track_clips": sum(c["tracks"] == 1 for c in clips),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, required=True, help="folder of single-person clips")
    ap.add_argument("--model", default="pretrained:faceexpr", help="fer predict --model")
    ap.add_argument("--out", type=Path, required=True, help="annotated videos and results")
    ap.add_argument("--params", type=Path, default=None, help="fer --params (default: ours)")
    args = ap.parse_args(argv)
    clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in SUFFIXES)
    if not clips:
        raise SystemExit(f"{args.clips}: no video clip ({', '.join(SUFFIXES)})")
    args.out.mkdir(parents=True, exist_ok=True)
    params = args.params or Path(__file__).resolve().parents[1] / "params.yaml"
    cmd = [str(BIN / "fer"), "--params", str(params), "predict", *map(str, clips),
           "--model", args.model, "--out", str(args.out / "predictions"), "--json"]  # fmt: skip
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"cores: {os.cpu_count()}; load avg at start: {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ, FER_PROGRESS="0")
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"fer predict failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = summarize(json.loads(proc.stdout))
    result.update(model=args.model, wall_s=round(wall, 1), fps=result["frames"] / wall,
                  load_end=os.getloadavg()[0], command=shlex.join(cmd))  # fmt: skip
    print(
        "| clip | frames | exactly one face | extra | missed | tracks |\n|---|---|---|---|---|---|"
    )
    for c in result["clips"]:
        print(f"| {c['clip']} | {c['frames']} | {c['exactly_one']:.3f} | {c['over']} | "
              f"{c['under']} | {c['tracks']} |")  # fmt: skip
    print(f"\n{len(clips)} clips, {result['frames']} frames: exactly one face on "
          f"{result['exactly_one']:.4f}; one track in {result['one_track_clips']} clips; "
          f"{result['fps']:.1f} frames/s over {wall:.0f} s (model load and annotated videos "
          f"included); load avg at end {result['load_end']:.2f}")  # fmt: skip
    (args.out / "video_faces.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

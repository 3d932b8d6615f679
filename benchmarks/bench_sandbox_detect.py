"""Sandbox check for detection settings: `fer sample`, `fer ingest`, `fer detect` in a scratch
project, image- and box-level F1 against the sample truth for each given setting.

The real-photo benchmark (``bench_real_detect.py``) calibrates the detector; this makes sure
the drawn faces of the synthetic sandbox are still found (goal: image F1 >= 0.99). Each
``--case`` is a comma-separated list of ``detect:`` overrides (``key=value``); an empty case
is ``params.yaml`` as it is. The sample and the manifest are made once and shared.

    python benchmarks/bench_sandbox_detect.py --n 400 \\
        --case "min_inside=0,pad=0" --case ""
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def project_params(root: Path, detect: dict[str, Any]) -> dict[str, Any]:
    """The repo's params with every path under ``root`` and ``detect`` overrides applied."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw["sample"] = {**raw["sample"], "out": str(root / "raw"), "truth": str(root / "truth.csv")}
    raw["ingest"] = {**raw["ingest"], "raw_dir": str(root / "raw"), "manifest": str(root / "m.pq")}
    raw["detect"] = {
        **raw["detect"],
        "faces": str(root / "out" / "faces.parquet"),
        "images": str(root / "out" / "detections.parquet"),
        "crops_dir": str(root / "out" / "crops"),
        "cache_dir": str(root / "out" / "cache"),
        "metrics": str(root / "out" / "detect.json"),
        "details": str(root / "out" / "detect_details.json"),
        **detect,
    }
    raw["tracking"] = {**raw["tracking"], "enabled": False}
    return raw


def parse_case(text: str) -> dict[str, Any]:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in (t for t in text.split(",") if t.strip()):
        key, _, value = item.partition("=")
        out[key.strip()] = yaml.safe_load(value)
    return out


def fer(cmd: str, params: Path, *extra: str) -> None:
    """Run one `fer` command (this checkout's code) with its output swallowed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FER_PROGRESS": "0"}
    subprocess.run(
        [sys.executable, "-m", "fer.cli", cmd, "--params", str(params), *extra],
        cwd=params.parent, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--case", action="append", default=None, help="detect overrides")
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: temp)")
    args = parser.parse_args(argv)
    cases = args.case if args.case is not None else [""]
    root = args.dir or Path(tempfile.mkdtemp(prefix="sandbox_detect_"))
    root.mkdir(parents=True, exist_ok=True)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    cmd = "python benchmarks/bench_sandbox_detect.py " + " ".join(shlex.quote(a) for a in argv)
    print(f"# {cmd}\n# n={args.n}, dir={root}, cpus={os.cpu_count()}, load average {load}")
    base = root / "params.yaml"
    base.write_text(yaml.safe_dump(project_params(root, {})))
    fer("sample", base, "--n", str(args.n))
    fer("ingest", base)
    print("\n| case | image P / R / F1 | box P / R / F1 | s |\n|---|---|---|---|")
    for case in cases:
        shutil.rmtree(root / "out", ignore_errors=True)
        params = root / "params.yaml"
        params.write_text(yaml.safe_dump(project_params(root, parse_case(case))))
        start = time.perf_counter()
        fer("detect", params)
        secs = time.perf_counter() - start
        loc = json.loads((root / "out" / "detect_details.json").read_text())["localization"]
        im, bx = loc["image"], loc["box"]
        prf = ("precision", "recall", "f1")
        print(
            f"| {case or '(params.yaml)'} | "
            + " / ".join(f"{im[k]:.3f}" for k in prf)
            + " | "
            + " / ".join(f"{bx[k]:.3f}" for k in prf)
            + f" | {secs:.0f} |",
            flush=True,
        )
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

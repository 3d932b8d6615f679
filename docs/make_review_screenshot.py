"""Regenerate docs/review.png: `fer review` on a sandbox project, a few decisions typed in
headless Chromium, the key help open.

The project must have been built up to validate (`dvc repro validate` on the sandbox); its own
decisions file is not touched (the server writes to a temporary one).

    .venv/bin/python docs/make_review_screenshot.py --project /path/to/sandbox
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer.ui import free_port, stop_processes, wait_healthy  # noqa: E402
from tests.cdp import Browser, find_chromium  # noqa: E402

BIN = Path(sys.executable).parent
KEYS = ["3", "a", "d", "j", "2", "n"]  # relabel neutral, keep, drop, skip one, relabel, not a face


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/review.png")
    args = ap.parse_args()
    exe = find_chromium()
    if exe is None:
        sys.exit("headless Chromium not installed (apt-get install chromium)")
    project = args.project.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
        params.setdefault("review", {})["decisions"] = str(Path(tmp) / "review_decisions.csv")
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        port = free_port()
        cmd = [str(BIN / "fer"), "--params", str(Path(tmp) / "params.yaml"), "review",
               "--port", str(port), "--reviewer", "demo"]  # fmt: skip
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        server = subprocess.Popen(cmd, cwd=project, env=env)
        try:
            if not wait_healthy(f"http://127.0.0.1:{port}/healthz", 60):
                sys.exit("fer review did not start")
            with Browser(exe, free_port()) as page:
                page.navigate(f"http://127.0.0.1:{port}/?group=label_issue")
                page.wait_for(
                    "Array.from(document.images).slice(0, 20)"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
                for key in KEYS:
                    page.key(key)
                page.eval("window.ferReview.idle()")
                page.key("?")
                page.screenshot(args.out)
        finally:
            stop_processes([server])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Run face-api's ORIGINAL landmark path on real photos; write the landmark test fixture.

Writes ``tests/fixtures/landmarks_reference.json``: for each image of
``tests.photos.landmark_cases()`` (public-domain photos shipped in packages, rotated copies,
seeded noise) and each given face box, what face-api 1.7.15 on TensorFlow.js computes: the 68
landmarks in image pixels, the aligned box (``FaceLandmarks.align()``) and the expressions of
FaceExpressionNet on that box; plus the same for every face face-api's own SSD detector finds
(its whole pipeline). ``tests/test_landmarks.py`` holds the torch port and the alignment code
to it. Not run by CI: it needs Node, which the project itself never uses.

Environment (outside the repo; the one ``make_pretrained_reference.py`` describes):

    mkdir -p TFJS_ENV && cd TFJS_ENV && npm init -y
    npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 \\
        @tensorflow/tfjs-backend-wasm@4.22.0

Run from the repo root with the project's Python:

    python benchmarks/make_landmarks_reference.py --node-modules TFJS_ENV/node_modules
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.photos import digest, landmark_cases  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "landmarks_reference.json"
HELPER = Path(__file__).with_name("landmarks_reference_faceapi.cjs")


def run_faceapi(cases: list, node_modules: Path) -> dict:
    """face-api on each case (images as raw RGB bytes) via the Node helper."""
    model_dir = node_modules / "@vladmandic" / "face-api" / "model"
    with tempfile.TemporaryDirectory() as tmp:
        spec = []
        for i, (_, image, boxes) in enumerate(cases):
            pixels = Path(tmp) / f"{i}.u8"
            pixels.write_bytes(np.ascontiguousarray(image).tobytes())
            height, width = image.shape[:2]
            spec.append({"pixels": str(pixels), "height": height, "width": width,
                         "boxes": [list(map(int, b)) for b in boxes]})  # fmt: skip
        spec_path, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        cmd = ["node", str(HELPER), str(model_dir), str(spec_path), str(out)]
        subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main() -> int:
    """Build the inputs, run face-api, write the fixture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    cases = landmark_cases()
    result = run_faceapi(cases, args.node_modules)
    fixture = {
        "versions": result["versions"],
        "cases": [
            {
                "name": name,
                "shape": list(image.shape),
                "sha256": digest(image),
                "boxes": [list(map(int, b)) for b in boxes],
                **faces,
            }
            for (name, image, boxes), faces in zip(cases, result["images"], strict=True)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture) + "\n")
    n_given = sum(len(c["given"]) for c in fixture["cases"])
    n_ssd = sum(len(c["ssd"]) for c in fixture["cases"])
    print(f"wrote {args.out}: {len(cases)} images, {n_given} given boxes, {n_ssd} SSD faces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

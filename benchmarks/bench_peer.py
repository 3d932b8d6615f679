"""Benchmark `fer` against the PyPI ``fer`` package (the peer) and a bare detector+classifier loop.

One command measures, in interleaved rounds on the same images (a 640×480 JPEG of the
scikit-image astronaut, letterboxed, and matplotlib's grace_hopper.jpg, a 512×600 photo):

- **peer**: ``fer.fer.FER(mtcnn=False)`` of the PyPI package, run by its own interpreter
  (``--peer-python``, a separate venv: its import name ``fer`` is ours). As shipped it finds
  faces with OpenCV's **Haar cascade** (not the res10 SSD) and classifies with
  ``emotion_model_quantized.tflite`` (TFLite, ``use_tflite=True``). Two variants:
  ``peer`` (as shipped: imread + ``detect_emotions``) and ``peer+ssd`` (imread + the same res10
  SSD files through the peer's OpenCV + ``detect_emotions(img, face_rectangles=boxes)``: the
  peer with our detector);
- **fer**: our warm single-image path, decode + detect + crop + classify + records:
  ``fer predict``'s ``predict_images`` and the pyfunc/``fer api`` path ``analyze_image``, with
  ``--model M`` (default ``pretrained:minixception``, the small real-face classifier; or
  ``pretrained:faceexpr``, whose face-api recipe adds the 68 landmarks and the aligned cut) and
  the face recipe that model carries, as ``fer predict IMG --model M`` runs. The detector is
  params' res10 SSD (``--detect-with params``, the default here, which the bare loop and the
  ``peer+ssd`` run share) or the model's own (``--detect-with model``, what ``fer predict``
  uses by default: PyPI fer's Haar cascade for mini-Xception);
- **bare**: ``cv2.imread`` + the same cv2.dnn res10 SSD + a square crop + our torch
  mini-Xception, minimal glue (the classifier runs with ``--bare-threads`` torch threads).

Each call is timed where it runs (the peer inside its process) and the calls of one round
run back to back, so load from other processes hits them alike; ratios are medians of the
per-round ratios. Cold start (process start to exit after the first image) is measured for
``fer predict IMG --model M --detect-with D`` and for the peer's smallest script.
Usage::

    python benchmarks/bench_peer.py --peer-python PEER_VENV/bin/python --repeats 20
    python benchmarks/bench_peer.py --peer-python PEER_VENV/bin/python --repeats 20 \
        --model pretrained:faceexpr --detect-with model

The peer worker is this file run by the peer's interpreter (``--worker``); nothing of the
peer package is kept in this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ.setdefault("FER_PROGRESS", "0")
MODEL = "pretrained:minixception"
GAP_S = 0.005  # pause between two timed calls: thread pools of the previous one go idle


# --------------------------------------------------------------------------- peer worker


def worker_main(proto: str, caffemodel: str, min_confidence: float) -> None:
    """Serve timing requests on stdin/stdout (runs under the PEER's interpreter).

    Requests are JSON lines ``{"op": "info"}`` or ``{"op": "time", "variant", "path"}``;
    answers are JSON lines.
    """
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.disable(logging.WARNING)
    import cv2
    import numpy as np
    from fer.fer import FER  # the PyPI package: this runs in the peer's venv

    model = FER(mtcnn=False)
    net = cv2.dnn.readNetFromCaffe(proto, caffemodel)

    def ssd_boxes(img: Any) -> Any:
        height, width = img.shape[:2]
        blob = cv2.dnn.blobFromImage(
            cv2.resize(img, (300, 300)), 1.0, (300, 300), (104.0, 177.0, 123.0)
        )
        net.setInput(blob)
        rows = net.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= min_confidence]
        boxes = [
            [int(x1 * width), int(y1 * height), int((x2 - x1) * width), int((y2 - y1) * height)]
            for _, _, _, x1, y1, x2, y2 in rows
        ]
        return np.array(boxes, dtype=np.int32).reshape(-1, 4)

    def run(variant: str, path: str) -> list:
        img = cv2.imread(path)
        if variant == "ssd":
            return model.detect_emotions(img, face_rectangles=ssd_boxes(img))
        return model.detect_emotions(img)

    detector = getattr(model, "_FER__face_detector", None)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "info":
            import fer

            out: dict[str, Any] = {
                "version": getattr(fer, "__version__", "?"),
                "opencv": cv2.__version__,
                "detector": type(detector).__name__ if detector is not None else "?",
                "classifier": "emotion_model_quantized.tflite (TFLite)"
                if model.use_tflite
                else "emotion_model.hdf5 (Keras)",
            }
        else:
            t = time.perf_counter()
            faces = run(req["variant"], req["path"])
            out = {"ms": (time.perf_counter() - t) * 1000, "faces": len(faces)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class Peer:
    """The peer worker process; ``time`` returns one warm call's milliseconds."""

    def __init__(self, python: str, proto: Path, caffemodel: Path, min_confidence: float):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        cmd = [python, str(Path(__file__).resolve()), "--worker", str(proto), str(caffemodel),
               str(min_confidence)]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, cwd=tempfile.gettempdir(),
        )  # fmt: skip

    def ask(self, **req: Any) -> dict[str, Any]:
        """One request, one answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("peer worker died (run it by hand with --worker to see why)")
        return json.loads(line)

    def close(self) -> None:
        """End the worker."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------- our side


def _images(tmp: Path) -> dict[str, Path]:
    import matplotlib.cbook as cbook

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_predict import _photo_640x480, _write_jpeg

    astronaut = tmp / "astronaut_640x480.jpg"
    _write_jpeg(astronaut, _photo_640x480())
    hopper = tmp / "grace_hopper.jpg"
    shutil.copyfile(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), hopper)
    return {"astronaut 640x480": astronaut, "grace_hopper 512x600": hopper}


def _cfg() -> Any:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_predict import _cfg as cfg

    return cfg()


def _model_dir(model: str) -> Path:
    """The folder of ``--model`` (a dir, an MLflow URI or ``pretrained:NAME``)."""
    from fer.prediction.model_resolution import resolve_model

    return resolve_model(_cfg(), model).path


class Ours:
    """`fer predict`'s objects for ``--model M --detect-with D``, built as it builds them."""

    def __init__(self, model: str, detect_with: str) -> None:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from bench_predict import _objects

        self.model_dir = _model_dir(model)
        # "params": the res10 SSD that the bare loop and the "given our boxes" peer run share;
        # "model": the model's own (PyPI fer's Haar cascade for mini-Xception)
        self.cfg, self.detector, self.classifier, self.crop = _objects(self.model_dir, detect_with)

    def predict_path(self, path: Path) -> dict[str, Any]:
        """`fer predict`: decode, detect, crop, classify, record (no annotated JPEG)."""
        from fer.data.images import load_rgb
        from fer.prediction.predict import InputItem, predict_images

        item = InputItem(path, "image", Path(path.stem))
        (res,) = predict_images(
            [item], load=load_rgb, detector=self.detector, classifier=self.classifier,
            crop=self.crop, batch_size=self.cfg.predict.batch_size,
        )  # fmt: skip
        return res.record

    def api_path(self, data: bytes) -> list[dict[str, Any]]:
        """The pyfunc / `fer api` path: bytes in, face records out."""
        from fer.data.images import load_rgb
        from fer.prediction.inference import analyze_image

        return analyze_image(load_rgb(data), self.detector, self.classifier, self.crop)


class Bare:
    """cv2.imread + cv2.dnn res10 SSD + square crop + torch mini-Xception, minimal glue."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import cv2

        from fer.config import DetectorSettings
        from fer.faces.backends.ssd import model_files
        from fer.prediction.inference import load_model_file

        self.settings = DetectorSettings()
        proto, caffemodel = model_files(self.settings)
        self.net = cv2.dnn.readNetFromCaffe(str(proto), str(caffemodel))
        self.model, _ = load_model_file(model_dir)
        self.threads = threads

    def __call__(self, path: Path) -> Any:
        import cv2
        import numpy as np
        import torch

        img = cv2.imread(str(path))
        height, width = img.shape[:2]
        blob = cv2.dnn.blobFromImage(
            cv2.resize(img, (300, 300)), 1.0, (300, 300), (104.0, 177.0, 123.0)
        )
        self.net.setInput(blob)
        rows = self.net.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= self.settings.min_confidence]
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        crops = []
        for _, _, _, x1, y1, x2, y2 in rows:
            cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
            side = int(max((x2 - x1) * width, (y2 - y1) * height) * 1.4)
            x0, y0 = int(cx - side / 2), int(cy - side / 2)
            win = gray[max(0, y0) : y0 + side, max(0, x0) : x0 + side]
            crops.append(cv2.resize(win, (64, 64), interpolation=cv2.INTER_AREA))
        if not crops:
            return np.zeros((0, 3), np.float32)
        x = torch.from_numpy(np.stack(crops)).unsqueeze(1).float().div_(127.5).sub_(1.0)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return torch.softmax(self.model(x), dim=1).numpy()
        finally:
            torch.set_num_threads(previous)


def _timed(fn: Any, *args: Any) -> float:
    time.sleep(GAP_S)
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def warm(
    images: dict[str, Path], peer: Peer | None, ours: Ours, bare: Bare, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Per image and variant, the warm per-call milliseconds of ``repeats`` rounds."""
    variants: dict[str, Any] = {
        "fer predict": lambda p, b: ours.predict_path(p),
        "fer api": lambda p, b: ours.api_path(b),
        "bare": lambda p, b: bare(p),
    }
    if peer is not None:
        variants["peer"] = lambda p, b: peer.ask(op="time", variant="shipped", path=str(p))["ms"]
        variants["peer+ssd"] = lambda p, b: peer.ask(op="time", variant="ssd", path=str(p))["ms"]
    out: dict[str, dict[str, list[float]]] = {}
    for name, path in images.items():
        data = path.read_bytes()
        for fn in variants.values():  # warm-up
            fn(path, data)
            fn(path, data)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(repeats):
            keys = list(variants)
            keys = keys[r % len(keys) :] + keys[: r % len(keys)]  # rotate the order per round
            for key in keys:
                if key.startswith("peer"):
                    times[key].append(variants[key](path, data))
                else:
                    times[key].append(_timed(variants[key], path, data))
        out[name] = times
    return out


def _ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def cold(
    image: Path, peer_python: str | None, out: Path, rounds: int, args: argparse.Namespace
) -> dict[str, list[float]]:
    """Seconds from process start to exit after one image, interleaved, ``rounds`` times."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    fer_cmd = [str(BIN / "fer"), "--params", str(REPO / "params.yaml"), "predict", str(image),
               "--model", args.model, "--detect-with", args.detect_with,
               "--out", str(out)]  # fmt: skip
    cmds = {"fer predict": (fer_cmd, env, REPO)}
    if peer_python:
        code = (
            "import cv2\nfrom fer.fer import FER\n"
            f"print(FER(mtcnn=False).detect_emotions(cv2.imread({str(image)!r})))"
        )
        peer_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        peer_env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        cmds["peer"] = ([peer_python, "-c", code], peer_env, Path(tempfile.gettempdir()))
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for key, (cmd, e, cwd) in cmds.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=e, cwd=cwd)
            walls[key].append(time.perf_counter() - t)
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer-python", help="interpreter of a venv with the PyPI fer package")
    ap.add_argument("--repeats", type=int, default=20, help="warm rounds per image")
    ap.add_argument("--cold", type=int, default=3, help="cold-start rounds")
    ap.add_argument("--bare-threads", type=int, default=1, help="torch threads of the bare loop")
    ap.add_argument(
        "--model", default=MODEL, help="fer --model (the bare loop stays mini-Xception)"
    )
    ap.add_argument(
        "--detect-with", choices=["params", "model"], default="params",
        help="our detector: params' res10 SSD (shared with bare and peer+ssd) or the model's own",
    )  # fmt: skip
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker[0], args.worker[1], float(args.worker[2]))
        return
    import cv2
    import torch

    from fer.faces.backends.ssd import model_files

    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    load0 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"cores: {os.cpu_count()}; ours: OpenCV {cv2.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); load avg at start: {load0}")  # fmt: skip
    ours = Ours(args.model, args.detect_with)
    print(f"fer: {args.model} -> {ours.model_dir}; detector {ours.detector.name} "
          f"(--detect-with {args.detect_with})")  # fmt: skip
    proto, caffemodel = model_files(ours.cfg.detect.detector())
    peer = None
    if args.peer_python:
        peer = Peer(args.peer_python, proto, caffemodel, ours.cfg.detect.detector().min_confidence)
        info = peer.ask(op="info")
        print(
            f"peer: PyPI fer {info['version']} (OpenCV {info['opencv']}): FER(mtcnn=False) "
            f"detects with {info['detector']}, classifies with {info['classifier']}"
        )
    bare = Bare(ours.model_dir if args.model == MODEL else _model_dir(MODEL), args.bare_threads)
    with tempfile.TemporaryDirectory(prefix="bench_peer.") as tmp_name:
        tmp = Path(tmp_name)
        images = _images(tmp)
        results = warm(images, peer, ours, bare, args.repeats)
        load1 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"\nwarm, median ms of {args.repeats} interleaved rounds (load avg after: {load1})")
        for name, times in results.items():
            cells = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in times.items())
            pairs = [("fer predict", "bare"), ("fer api", "bare")]
            if peer is not None:
                pairs += [("fer predict", "peer"), ("fer predict", "peer+ssd")]
            ratios = [f"{a}/{b} {_ratio(times, a, b):.2f}x" for a, b in pairs]
            print(f"  {name}: {cells}\n    ratios: {', '.join(ratios)}")
        walls = cold(images["astronaut 640x480"], args.peer_python, tmp / "cold", args.cold, args)
        load2 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        cells = ", ".join(
            f"{k} {statistics.median(v):.2f} s (all: {', '.join(f'{x:.2f}' for x in v)})"
            for k, v in walls.items()
        )
        print(f"\ncold start, process start to exit after one image: {cells} (load avg: {load2})")
    if peer is not None:
        peer.close()


if __name__ == "__main__":
    main()

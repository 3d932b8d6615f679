"""Benchmark `fer predict`: single-image latency against its parts, cold start, folder
throughput with and without batching, and video frames/s with detection every 1 and 5 frames.

Measured in one run, on whatever cores the machine gives (the README table used 2):

- warm single image (640×480 JPEG, one face): decode + detect + cut + classify + annotate,
  median of ``--repeats``; ratio to detector alone + the face recipe's cut alone (landmarks and
  alignment, when the model's recipe has them) + classifier alone on the same input (goal
  ≤ 1.2×). Detector, recipe and classifier are built as ``fer predict`` builds them: the
  model's own detector, or params' with ``--detect-with params``;
- cold start: a fresh ``fer predict IMG --model DIR`` process, start to exit (median of 3),
  and the import cost of ``fer.stages.predict`` alone; heavy modules found in that process;
- a folder of ``--n`` sandbox images (640×480, one face each), ``fer.stages.predict.run``
  with ``predict.batch_size`` 64 vs 1 (annotated JPEGs written both times);
- a 640×480 video of ``--frames`` frames, ``detect_every`` 1 vs 5, annotated video written.

The classifier is ``--model DIR`` (or ``--model pretrained:minixception``, the small
real-face model) when given, else an untrained ``--arch`` (default alexnet, the project's
default model) saved as model.pt: timings do not depend on the weights. Usage::

    python benchmarks/bench_predict.py                      # n=1000, frames=150
    python benchmarks/bench_predict.py --n 100 --frames 30  # quick
    python benchmarks/bench_predict.py --model pretrained:minixception --detect-with params
    python benchmarks/bench_predict.py --model pretrained:faceexpr  # landmarks + alignment

The peer comparison (PyPI ``fer``, a bare loop) is benchmarks/bench_peer.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ.setdefault("FER_PROGRESS", "0")


def _cfg(**predict: Any) -> Any:
    from fer.config import config_from_dict

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["predict"] = {**raw["predict"], **predict}
    raw["tracking"] = {**raw["tracking"], "enabled": False}
    return config_from_dict(raw)


def _untrained_model(folder: Path, arch: str) -> Path:
    import torch

    from fer.config import ModelSpec
    from fer.learning.models import build_model
    from fer.learning.preprocess import InputSpec
    from fer.prediction.inference import model_payload

    cfg = _cfg()
    spec = cfg.model_spec(arch)
    size = cfg.detect.crop.size
    net = build_model(arch, spec, input_size=size)
    payload = model_payload(
        net,
        arch=arch,
        spec=ModelSpec(**spec.model_dump()).model_dump(mode="json"),
        input_spec=InputSpec(size=size),
        config={"crop": cfg.detect.crop.model_dump(mode="json")},
    )
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(payload, folder / "model.pt")
    return folder


def _model_dir(model: str | None, tmp: Path, arch: str) -> Path:
    """``--model``: a folder, ``pretrained:NAME`` (built as `fer predict` builds it), or None."""
    if model is None:
        return _untrained_model(tmp / "model", arch)
    if model.startswith("pretrained:"):
        from fer.prediction.model_resolution import pretrained_model

        return pretrained_model(_cfg(), model.removeprefix("pretrained:"))
    return Path(model)


def _photo_640x480() -> np.ndarray:
    """The astronaut (one face) letterboxed into 640×480, RGB."""
    import cv2
    import skimage.data

    img = cv2.resize(skimage.data.astronaut(), (480, 480), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 30, np.uint8)
    canvas[:, 80:560] = img
    return canvas


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _median_ms(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _objects(model_dir: Path, detect_with: str) -> tuple[Any, Any, Any, Any]:
    """``(cfg, detector, classifier, cutter)`` as `fer predict --model DIR --detect-with D`
    builds them: the model's face recipe (landmarks and alignment included when it has them)."""
    from fer.stages.predict import _detector, load_classifier

    cfg = _cfg()
    classifier, cutter = load_classifier(model_dir, cfg)
    return cfg, _detector(classifier, cfg, detect_with), classifier, cutter


def bench_single(model_dir: Path, tmp: Path, repeats: int, detect_with: str) -> dict[str, float]:
    from fer.data.images import load_rgb
    from fer.prediction.predict import annotate, face_record

    _, detector, clf, cutter = _objects(model_dir, detect_with)
    path = tmp / "one_face.jpg"
    _write_jpeg(path, _photo_640x480())
    rgb = load_rgb(path)
    faces = detector.detect(rgb)
    assert len(faces) == 1, f"expected one face, found {len(faces)}"
    crop = np.stack(cutter.cut(rgb, faces))

    def e2e() -> None:
        image = load_rgb(path)
        found = detector.detect(image)
        probs = clf.predict_proba(np.stack(cutter.cut(image, found)))
        recs = [face_record(f, p, clf.classes) for f, p in zip(found, probs, strict=True)]
        annotate(image, recs)

    parts = {
        "e2e": e2e,
        "det": lambda: detector.detect(rgb),
        "cut": lambda: cutter.cut(rgb, faces),  # the recipe: landmarks + aligned crop, if any
        "clf": lambda: clf.predict_proba(crop),
    }
    for fn in parts.values():
        fn()  # warm-up
    # The parts run back to back in every round, so load from other processes hits them alike;
    # the overhead is the median of the per-round ratios.
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(repeats):
        for key, fn in parts.items():
            t = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t) * 1000)
    ratios = [
        e / (d + c + k)
        for e, d, c, k in zip(times["e2e"], times["det"], times["cut"], times["clf"], strict=True)
    ]
    return {
        "e2e_ms": statistics.median(times["e2e"]),
        "detector_ms": statistics.median(times["det"]),
        "cut_ms": statistics.median(times["cut"]),
        "classifier_ms": statistics.median(times["clf"]),
        "overhead": statistics.median(ratios),
        "decode_ms": _median_ms(lambda: load_rgb(path), repeats),
        "detector": detector.name,
    }


def bench_cold(model_dir: Path, tmp: Path, detect_with: str) -> dict[str, Any]:
    img = tmp / "one_face.jpg"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(BIN / "fer"), "--params", str(REPO / "params.yaml"), "predict", str(img),
           "--model", str(model_dir), "--detect-with", detect_with,
           "--out", str(tmp / "cold")]  # fmt: skip
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - t)
    probe = (
        "import sys, time; t = time.perf_counter(); import fer.stages.predict; "
        "d = time.perf_counter() - t; "
        "h = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'prefect', 'dvc', 'great_expectations', 'mlflow', 'torch', 'cv2'}); print(d, h)"
    )
    imports = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env
        ).stdout.split(" ", 1)
        imports.append(float(out[0]))
    mlflow_import = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import mlflow.artifacts; "
         "print(time.perf_counter() - t)"], check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    return {
        "cold_start_s": statistics.median(walls),
        "import_predict_s": statistics.median(imports),
        "modules_at_import": out[1].strip(),
        "mlflow_import_s": float(mlflow_import),
    }


def _sandbox(folder: Path, n: int) -> None:
    import cv2

    from fer.data.synthetic import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = ["happy", "angry", "neutral", "calm", "mad", "joyful"]
    for i in range(n):
        bgr, _ = render_scene(rng, names[i % len(names)], 1, 640, 480)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])


def agreement(a: list[list[dict]], b: list[list[dict]]) -> str:
    """How two runs' faces (one list per image or frame) compare: same boxes, same labels,
    largest probability difference (a classifier batch of another size rounds differently)."""
    pairs = [(fa, fb) for xa, xb in zip(a, b, strict=True) for fa, fb in
             zip(xa, xb, strict=False)]  # fmt: skip
    boxes = all(len(xa) == len(xb) for xa, xb in zip(a, b, strict=True)) and all(
        fa["box"] == fb["box"] for fa, fb in pairs
    )
    labels = sum(fa["label"] == fb["label"] for fa, fb in pairs)
    diff = max((abs(fa["probs"][c] - fb["probs"][c]) for fa, fb in pairs for c in fa["probs"]),
               default=0.0)  # fmt: skip
    return f"same boxes {boxes}, same label {labels}/{len(pairs)}, max |dp| {diff:.4f}"


def bench_folder(model_dir: Path, tmp: Path, n: int, detect_with: str) -> dict[str, Any]:
    """Images/s on a folder: batch 64 with the detect-ahead workers (as `fer predict`), batch
    64 detecting in the main thread, batch 1; how the first two agree."""
    from fer.stages.predict import run

    folder = tmp / "folder"
    _sandbox(folder, n)
    out: dict[str, Any] = {}
    faces = {}
    for key, bs, workers in (("batch64", 64, "auto"), ("batch64_inline", 64, 0),
                             ("batch1", 1, "auto")):  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            t = time.perf_counter()
            res = run(_cfg(batch_size=bs, detect_workers=workers), paths=[folder],
                      model=str(model_dir), out=tmp / f"out_{key}", json=False,
                      detect_with=detect_with)  # fmt: skip
            wall = time.perf_counter() - t
        out[f"{key}_img_s"] = n / wall
        out[f"{key}_faces"] = res["faces"]
        faces[key] = [r.get("faces", []) for r in res["records"]]
    out["batching_speedup"] = out["batch64_img_s"] / out["batch1_img_s"]
    out["ahead_gain"] = out["batch64_img_s"] / out["batch64_inline_img_s"]
    out["agreement"] = agreement(faces["batch64"], faces["batch64_inline"])
    return out


def _ahead(cfg: Any, detector: Any, clf: Any, detect_with: str) -> list[Any]:
    """The detect-ahead workers' detectors, as `fer predict` builds them."""
    from fer.stages.predict import AheadDetectors, _detector

    make = lambda: _detector(clf, cfg, detect_with)  # noqa: E731
    return AheadDetectors(detector, make, cfg.predict.detect_workers)()


def bench_video(model_dir: Path, tmp: Path, frames: int, detect_with: str) -> dict[str, Any]:
    """Frames/s detecting every frame (ahead in workers as `fer predict` does, and in the main
    thread) and every 5th frame; how the first two agree."""
    import cv2

    from fer.prediction.video import process_video, video_codec

    face = cv2.cvtColor(_photo_640x480(), cv2.COLOR_RGB2BGR)
    path = tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    for i in range(frames):
        shift = int(60 * np.sin(i / 15))
        writer.write(np.roll(face, shift, axis=1))
    writer.release()
    cfg, detector, clf, cutter = _objects(model_dir, detect_with)
    ahead = _ahead(cfg, detector, clf, detect_with)
    out: dict[str, Any] = {"workers": len(ahead)}
    records = {}
    for key, every, workers in (("every1", 1, ahead), ("every1_inline", 1, ()),
                                ("every5", 5, ahead)):  # fmt: skip
        t = time.perf_counter()
        rec = process_video(path, tmp / f"{key}{video_codec()[1]}", detector=detector,
                            classifier=clf, crop=cutter, detect_every=every,
                            batch_size=cfg.predict.batch_size, ahead=workers)  # fmt: skip
        out[f"{key}_fps"] = rec["video"]["frames"] / (time.perf_counter() - t)
        records[key] = [frame["faces"] for frame in rec["frames"]]
    out["speedup"] = out["every5_fps"] / out["every1_fps"]
    out["ahead_gain"] = out["every1_fps"] / out["every1_inline_fps"]
    out["agreement"] = agreement(records["every1"], records["every1_inline"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", help="model dir with model.pt, or pretrained:NAME (default: untrained)"
    )
    ap.add_argument("--arch", default="alexnet", help="architecture of the untrained model")
    ap.add_argument("--n", type=int, default=1000, help="images in the folder benchmark")
    ap.add_argument("--frames", type=int, default=150, help="frames in the video benchmark")
    ap.add_argument("--repeats", type=int, default=30, help="single-image timing repeats")
    ap.add_argument(
        "--detect-with", choices=["model", "params"], default="model",
        help="the model's own detector (as fer predict) or params' (the res10 SSD)",
    )  # fmt: skip
    ap.add_argument(
        "--parts", default="single,cold,folder,video",
        help="comma-separated parts to run (default: all four)",
    )  # fmt: skip
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    import cv2
    import torch

    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()} (fer predict "
          f"classifies with 1), OpenCV {cv2.__version__}, load avg: {_load()}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_predict.") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = _model_dir(args.model, tmp, args.arch)
        label = str(args.model) if args.model else f"untrained {args.arch}"
        print(f"model: {label}")
        if "single" in parts:
            single = bench_single(model_dir, tmp, args.repeats, args.detect_with)
            print(
                f"single 640x480 image, warm: e2e {single['e2e_ms']:.1f} ms median "
                f"(decode {single['decode_ms']:.1f}); detector ({single['detector']}) "
                f"{single['detector_ms']:.1f} ms + face recipe {single['cut_ms']:.1f} ms + "
                f"classifier {single['classifier_ms']:.1f} ms -> overhead "
                f"{single['overhead']:.2f}x (goal <= 1.2x); load avg {_load()}"
            )
        if "cold" in parts:
            cold = bench_cold(model_dir, tmp, args.detect_with)
            print(
                f"cold start (fer predict IMG --model DIR, process start to exit): "
                f"{cold['cold_start_s']:.2f} s; import fer.stages.predict "
                f"{cold['import_predict_s']:.3f} s, heavy modules then loaded: "
                f"{cold['modules_at_import']}; an MLflow URI adds "
                f"import mlflow: {cold['mlflow_import_s']:.2f} s; load avg {_load()}"
            )
        if "folder" in parts:
            folder = bench_folder(model_dir, tmp, args.n, args.detect_with)
            print(
                f"folder of {args.n} images (640x480, 1 face): batch 64 "
                f"{folder['batch64_img_s']:.1f} img/s with detect-ahead workers, "
                f"{folder['batch64_inline_img_s']:.1f} img/s in the main thread "
                f"({folder['ahead_gain']:.2f}x; {folder['agreement']}); "
                f"batch 1 {folder['batch1_img_s']:.1f} img/s ({folder['batching_speedup']:.2f}x); "
                f"faces {folder['batch64_faces']}; load avg {_load()}"
            )
        if "video" in parts:
            video = bench_video(model_dir, tmp, args.frames, args.detect_with)
            print(
                f"video 640x480, {args.frames} frames: detect every frame "
                f"{video['every1_fps']:.1f} fps with {video['workers']} detect-ahead workers, "
                f"{video['every1_inline_fps']:.1f} fps in the main thread "
                f"({video['ahead_gain']:.2f}x; {video['agreement']}); "
                f"every 5th {video['every5_fps']:.1f} fps ({video['speedup']:.2f}x); "
                f"load avg {_load()}"
            )


if __name__ == "__main__":
    main()

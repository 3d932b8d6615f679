"""Test projects, built in one place (tests reach them through the fixtures in conftest.py).

- :func:`fake_project` fabricates the tables and files a stage reads, per
  docs/data-contracts.md, without running the stages before it. ``ready_for`` picks the scene:

  ``"validate"``  raw images, manifest, detections, faces + crops and sample truth, with the
                  awkward cases validate must catch (a mislabelled share, an exact and a near
                  duplicate, images without a face, a detector crash, a truncated file);
  ``"review"``    the same tables plus validate's CSVs (every face a label issue, the first two
                  images near duplicates, the last ``no_face`` images faceless);
  ``"train"``     crops and ``data/splits.parquet`` with a shrunk config (tests ``chdir`` in).

- :func:`copy_project` copies the real repository into its own git + DVC repository, with
  tiny params, so that ``dvc repro`` and ``dvc exp`` run for real; :func:`sh` runs commands in it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import yaml

from fer import CLASSES
from fer.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FOLDER = {"positive": "happy", "negative": "angry", "neutral": "calm"}
TAXONOMY = {cls: [folder] for cls, folder in FOLDER.items()}
TRAIN_FOLDER = {"positive": "happy", "negative": "angry", "neutral": "neutral"}
CROP_SIZE = 64
Scene = Literal["validate", "review", "train"]


# --- Pictures ---------------------------------------------------------------------------------


def color_crop(rng: np.random.Generator, cls: int, size: int = CROP_SIZE) -> np.ndarray:
    """An easily separable RGB crop: one dominant colour channel per class, plus noise."""
    img = rng.integers(0, 90, size=(size, size, 3)).astype(np.int16)
    img[:, :, cls] += 140
    return np.clip(img, 0, 255).astype(np.uint8)


def face_crop(rng: np.random.Generator, cls: int, size: int = CROP_SIZE) -> np.ndarray:
    """A real sandbox face of class ``cls`` (fer's renderer) as RGB, cropped by its truth box."""
    from fer.data.synthetic import render_scene

    scene, boxes = render_scene(rng, TRAIN_FOLDER[CLASSES[cls]], 1, 160, 160)
    x, y, w, h = boxes[0]
    side = int(max(w, h) * 1.4)
    cx, cy = x + w // 2, y + h // 2
    pad = cv2.copyMakeBorder(scene, side, side, side, side, cv2.BORDER_CONSTANT)
    crop = pad[
        cy + side - side // 2 : cy + side + side // 2,
        cx + side - side // 2 : cx + side + side // 2,
    ]
    return cv2.cvtColor(
        cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )


def shape_crop(rng: np.random.Generator, cls: int, size: int = CROP_SIZE) -> np.ndarray:
    """A toy face whose class is a shape: disc, triangle or bar."""
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    color = tuple(int(c) for c in rng.integers(120, 256, 3))
    c, r = size // 2 + int(rng.integers(-4, 5)), size // 4 + int(rng.integers(-3, 4))
    if cls == 0:
        cv2.circle(img, (c, c), r, color, -1)
    elif cls == 1:
        cv2.fillPoly(
            img, [np.array([[c, c - r], [c - r, c + r], [c + r, c + r]], np.int32)], color
        )
    else:
        cv2.rectangle(img, (c - r, c - r // 3), (c + r, c + r // 3), color, -1)
    return img


def cartoon_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat skin-coloured oval with two eyes on a plain background (class-free)."""
    img = np.full((size, size, 3), rng.integers(40, 200, 3), dtype=np.uint8)
    c = size // 2
    skin = tuple(int(v) for v in rng.integers(120, 240, 3))
    cv2.ellipse(img, (c, c), (size // 3, size * 2 // 5), 0, 0, 360, skin, -1)
    for dx in (-size // 8, size // 8):
        cv2.circle(img, (c + dx, c - size // 10), max(1, size // 20), (20, 20, 20), -1)
    return img


CROPS = {"color": color_crop, "face": face_crop, "shape": shape_crop}


MAX_METRIC_KEYS = 12
"""Most flattened keys one metrics file may have: the headline numbers only (per-class or
per-expression figures belong in metrics/details/)."""


def metric_columns(metrics: dict[str, Any], prefix: str = "") -> set[str]:
    """The columns `dvc metrics show` prints for one metrics file: its keys, nested dicts
    flattened with dots (as DVC does)."""
    out: set[str] = set()
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        out |= metric_columns(value, f"{name}.") if isinstance(value, dict) else {name}
    return out


def encode(img: np.ndarray, suffix: str = ".jpg", quality: int | None = None) -> bytes:
    """The bytes of ``img`` (BGR) as written by OpenCV for ``suffix``."""
    flags = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    return cv2.imencode(suffix, img, flags)[1].tobytes()


# --- Table rows, per docs/data-contracts.md ---------------------------------------------------


def face_id(path: str, index: int) -> str:
    """``<sha1(path)[:12]>_<face_index>``."""
    return f"{hashlib.sha1(path.encode()).hexdigest()[:12]}_{index}"


def crop_path(image_id: str, index: int) -> str:
    """``data/faces/<image_id[:2]>/<image_id[:16]>_<face_index>.png``."""
    return f"data/faces/{image_id[:2]}/{image_id[:16]}_{index}.png"


def pick_mislabeled(rng: np.random.Generator, n: int, fraction: float) -> set[int]:
    """A random ``fraction`` of ``range(n)`` (no random draw at all when it is 0)."""
    if not fraction:
        return set()
    return set(rng.permutation(n)[: int(n * fraction + 1e-9)].tolist())


def relabel(cls: str) -> str:
    """The wrong label a mislabelled face gets: the next class."""
    return CLASSES[(CLASSES.index(cls) + 1) % 3]


@dataclass
class FakeProject:
    """A fabricated project under ``root``: rows collect in memory, ``write_*`` put them down."""

    root: Path
    raw_dir: str = "data/sandbox"
    folder: dict[str, str] = field(default_factory=lambda: dict(FOLDER))
    manifest: list[dict] = field(default_factory=list)
    detections: list[dict] = field(default_factory=list)
    faces: list[dict] = field(default_factory=list)
    splits: list[dict] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    mislabeled_paths: set[str] = field(default_factory=set)
    params: Path | None = None

    @property
    def config(self) -> Config:
        """The project's params file, loaded."""
        return load_config(self.params)

    def add_image(self, path: str, data: bytes, given: str, size: tuple[int, int], **row) -> str:
        """Write raw image bytes; add its manifest row; return its id (sha256 of the bytes)."""
        full = self.root / self.raw_dir / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        image_id = hashlib.sha256(data).hexdigest()
        self.manifest.append(
            dict(id=image_id, path=path, expression=self.folder[given], label=given,
                 bytes=len(data), width=size[0], height=size[1], format="JPEG", status="ok",
                 reason="", duplicate_of="", **row)
        )  # fmt: skip
        return image_id

    def add_rejected(self, path: str, data: bytes, given: str, reason: str) -> None:
        """A raw file that ingest refused (no id, no size)."""
        (self.root / self.raw_dir / path).write_bytes(data)
        self.manifest.append(
            dict(id="", path=path, expression=self.folder[given], label=given, bytes=len(data),
                 width=0, height=0, format="", status="rejected", reason=reason, duplicate_of="")
        )  # fmt: skip

    def add_detection(self, image_id: str, path: str, label: str, n_faces: int, **row) -> None:
        """The detect stage's per-image row (``status``/``reason`` default to ok)."""
        self.detections.append(
            dict(image_id=image_id, path=path, expression=self.folder[label], label=label,
                 n_faces=n_faces, n_crops=n_faces, **{"status": "ok", "reason": "", **row})
        )  # fmt: skip

    def add_face(self, image_id: str, path: str, label: str, crop: np.ndarray, **row) -> dict:
        """Write an RGB crop; add its faces row (``row`` sets index, box, score, n_faces)."""
        row = {"face_index": 0, "x": 32, "y": 32, "w": 64, "h": 64, "score": 0.95,
               "n_faces": 1, **row}  # fmt: skip
        index = row["face_index"]
        rel = self.write_crop(crop_path(image_id, index), crop)
        face = dict(face_id=face_id(path, index), image_id=image_id, path=path,
                    expression=self.folder[label], label=label, face_index=index,
                    x=row["x"], y=row["y"], w=row["w"], h=row["h"], score=row["score"],
                    crop_path=rel, n_faces=row["n_faces"])  # fmt: skip
        self.faces.append(face)
        return face

    def add_truth(self, path: str, given: str, true: str, n_faces: int = 1) -> None:
        """The sample's truth row for ``path``."""
        self.truth.append(
            dict(path=path, given_expression=self.folder[given],
                 true_expression=self.folder[true], given_class=given, true_class=true,
                 mislabeled=given != true, n_faces=n_faces, boxes="[]")
        )  # fmt: skip
        if given != true:
            self.mislabeled_paths.add(path)

    def write_crop(self, rel: str, crop: np.ndarray) -> str:
        """Save an RGB crop at project-relative ``rel``; return ``rel``."""
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(self.root / rel), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        return rel

    def write_tables(self) -> None:
        """Every non-empty table to its contract path under ``data/``."""
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        for name, rows in (("manifest", self.manifest), ("detections", self.detections),
                           ("faces", self.faces), ("splits", self.splits)):  # fmt: skip
            if rows:
                pd.DataFrame(rows).to_parquet(data / f"{name}.parquet", index=False)
        if self.truth:
            pd.DataFrame(self.truth).to_csv(data / "sample_truth.csv", index=False)

    def write_params(self, sections: dict[str, Any], overrides: dict[str, Any] | None) -> Path:
        """``params.yaml``: ``sections`` with each of ``overrides``' sections merged in."""
        merged = dict(sections)
        for name, value in (overrides or {}).items():
            base = merged.get(name)
            merged[name] = {**base, **value} if isinstance(base, dict) else value
        self.params = self.root / "params.yaml"
        self.params.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
        return self.params


# --- Scenes -----------------------------------------------------------------------------------


def fake_project(
    root: Path,
    ready_for: Scene = "validate",
    *,
    n_faces: int | None = None,
    seed: int = 0,
    mislabeled: float | None = None,
    crops: str | None = None,
    crop_size: int = CROP_SIZE,
    params: dict[str, Any] | None = None,
    **scene: Any,
) -> FakeProject:
    """Fabricate a project under ``root`` that is ready for ``fer <ready_for>``.

    ``n_faces`` (default 150 / 30 / 120), ``mislabeled`` (share of faces whose given label is
    wrong; default 0.1 for validate, else 0), ``crops`` (``shape``/``color``/``face``; default
    shape for validate, color for train; review draws cartoon faces), ``params`` (sections
    merged over the scene's params.yaml; ``models`` replaces the train scene's tiny baseline).
    Review only: ``faces_per_image`` (1), ``no_face`` (3), ``img_size`` ((160, 120)).
    Train only: ``fractions`` (train/val/test share per class, (0.6, 0.2, 0.2)).
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if ready_for == "validate":
        project = FakeProject(root)
        _validate_scene(project, rng, n_faces or 150, _mislabeled(mislabeled, 0.1),
                        CROPS[crops or "shape"], crop_size)  # fmt: skip
        sections = _validate_params(root)
    elif ready_for == "review":
        project = FakeProject(root, raw_dir="data/raw")
        _review_scene(project, rng, n_faces or 30, crop_size, **scene)
        sections = _review_params()
    elif ready_for == "train":
        project = FakeProject(root, folder=dict(TRAIN_FOLDER))
        _train_scene(project, rng, n_faces or 120, _mislabeled(mislabeled, 0.0),
                     CROPS[crops or "color"], crop_size, **scene)  # fmt: skip
        sections = _train_params(has_models="models" in (params or {}))
    else:
        raise ValueError(f"ready_for must be validate, review or train, not {ready_for!r}")
    project.write_tables()
    project.write_params(sections, params)
    return project


def _mislabeled(given: float | None, default: float) -> float:
    return default if given is None else given


def _validate_scene(
    project: FakeProject, rng: np.random.Generator, n_faces: int, mislabeled: float,
    draw: Any, size: int,
) -> None:  # fmt: skip
    """One face per 128×128 image, then duplicates, faceless, crashed and truncated files."""
    flipped = pick_mislabeled(rng, n_faces, mislabeled)
    for i in range(n_faces):
        true = CLASSES[i % 3]
        given = relabel(true) if i in flipped else true
        crop = draw(rng, i % 3, size)
        img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
        img[32 : 32 + size, 32 : 32 + size] = crop
        _add_one_face_image(
            project, f"{FOLDER[given]}/{i:04d}.jpg", encode(img), given, true, crop
        )
    _add_duplicates(project)
    _add_faceless(project, rng)
    project.add_rejected("happy/broken.jpg", b"\xff\xd8\xff\xe0 truncated", "positive",
                         "truncated")  # fmt: skip


def _add_one_face_image(
    project: FakeProject, path: str, data: bytes, given: str, true: str, crop: np.ndarray
) -> None:
    image_id = project.add_image(path, data, given, (128, 128))
    project.add_truth(path, given, true)
    project.add_detection(image_id, path, given, 1)
    project.add_face(image_id, path, given, crop)


def _add_duplicates(project: FakeProject) -> None:
    """An exact copy of the first image under another name, and a re-encoded near copy."""
    first = project.root / project.raw_dir / project.manifest[0]["path"]
    crop = cv2.cvtColor(
        cv2.imread(str(project.root / project.faces[0]["crop_path"])), cv2.COLOR_BGR2RGB
    )
    near = encode(cv2.imread(str(first)), quality=60)
    for path, data in (("happy/copy.jpg", first.read_bytes()), ("happy/near.jpg", near)):
        _add_one_face_image(project, path, data, "positive", "positive", crop)


def _add_faceless(project: FakeProject, rng: np.random.Generator) -> None:
    """Six scenes without a face, and one (with a face) that the detector crashed on."""
    for k in range(6):
        path = f"calm/empty{k}.jpg"
        img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
        image_id = project.add_image(path, encode(img), "neutral", (128, 128))
        project.add_truth(path, "neutral", "neutral", n_faces=0)
        project.add_detection(image_id, path, "neutral", 0)
    path = "angry/crash.jpg"
    image_id = project.add_image(path, encode(shape_crop(rng, 1, 128)), "negative", (128, 128))
    project.add_truth(path, "negative", "negative")
    project.add_detection(image_id, path, "negative", 0, status="error",
                          reason="RuntimeError: boom")  # fmt: skip


def _validate_params(root: Path) -> dict[str, Any]:
    return {
        "taxonomy": TAXONOMY,
        "validate": {"folds": 5, "cv_epochs": 10, "seed": 0},
        "tracking": {
            "enabled": False,
            "uri": f"sqlite:///{root / 'mlflow.db'}",
            "artifact_location": str(root / "mlruns"),
        },
    }


def _review_scene(
    project: FakeProject, rng: np.random.Generator, n_faces: int, crop_size: int, *,
    faces_per_image: int = 1, no_face: int = 3, img_size: tuple[int, int] = (160, 120),
) -> None:  # fmt: skip
    """``n_faces // faces_per_image`` images of cartoon faces, then ``no_face`` empty ones."""
    n_images = n_faces // faces_per_image
    width, height = img_size
    side = min(width // (faces_per_image + 1), height * 2 // 3)
    issues: list[tuple] = []
    for i in range(n_images + no_face):
        label = CLASSES[i % 3]
        path = f"{FOLDER[label]}/{i:06d}.jpg"
        img = np.full((height, width, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        img[:8, :8] = rng.integers(0, 255, (8, 8, 3))  # unique bytes per image
        boxes = []
        for k in range(faces_per_image if i < n_images else 0):
            x, y = 4 + k * (side + 6), 4
            img[y : y + side, x : x + side] = cartoon_face(rng, side)
            boxes.append((x, y, side, side))
        image_id = project.add_image(path, encode(img), label, img_size)
        project.add_detection(image_id, path, label, len(boxes))
        for k, (x, y, w, h) in enumerate(boxes):
            crop = cv2.resize(img[y : y + h, x : x + w], (crop_size, crop_size))
            rgb, score = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), float(rng.uniform(0.5, 1))
            face = project.add_face(image_id, path, label, rgb, face_index=k, x=x, y=y, w=w, h=h,
                                    score=score, n_faces=len(boxes))  # fmt: skip
            p = rng.dirichlet(np.ones(3))
            issues.append((face["face_id"], path, label, relabel(label),
                           float(rng.uniform(0, 1)), "exclude", *p))  # fmt: skip
    _write_validation(project, issues, n_images)


def _write_validation(project: FakeProject, issues: list[tuple], n_images: int) -> None:
    """label_issues, quarantine (the faceless images) and duplicates (the first two)."""
    val = project.root / "data" / "validation"
    val.mkdir(parents=True, exist_ok=True)
    cols = ["face_id", "path", "given_label", "suggested_label", "score", "action"]
    li = pd.DataFrame(issues, columns=[*cols, *(f"p_{c}" for c in CLASSES)])
    li.sort_values("score", ascending=False).to_csv(val / "label_issues.csv", index=False)
    m = pd.DataFrame(project.manifest)[["path", "id"]].rename(columns={"id": "image_id"})
    m.iloc[n_images:].assign(reason="no_face").to_csv(val / "quarantine.csv", index=False)
    dup = m.iloc[:2].assign(group="dup000001", kind="near_image")
    dup[["group", "path", "image_id", "kind"]].to_csv(val / "duplicates.csv", index=False)


def _review_params() -> dict[str, Any]:
    repo = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    return {
        "taxonomy": TAXONOMY,
        "ingest": {"raw_dir": "data/raw", "manifest": "data/manifest.parquet"},
        "detect": {"faces": "data/faces.parquet", "crops_dir": "data/faces"},
        "validate": {"out_dir": "data/validation"},
        "split": repo["split"],
        "review": {"decisions": "review_decisions.csv"},
        "tracking": {"enabled": False},
    }


def _train_scene(
    project: FakeProject, rng: np.random.Generator, n_faces: int, mislabeled: float,
    draw: Any, size: int, *, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> None:  # fmt: skip
    """``n_faces // 3`` crops per class (no raw images), split in order by ``fractions``."""
    n_per_class = n_faces // 3
    flipped = pick_mislabeled(rng, n_per_class * 3, mislabeled)
    for ci, cls in enumerate(CLASSES):
        for j in range(n_per_class):
            crop = draw(rng, ci, size)
            fid = f"{cls[:3]}{j:04d}_0"
            given = relabel(cls) if ci * n_per_class + j in flipped else cls
            path = f"{TRAIN_FOLDER[given]}/{fid}.png"
            project.splits.append(
                {"face_id": fid, "image_id": fid[:-2], "path": path,
                 "crop_path": project.write_crop(crop_path(fid[:-2], 0), crop),
                 "expression": TRAIN_FOLDER[given], "given_label": given, "label": given,
                 "split": _split_of(j / n_per_class, fractions), "group": fid}
            )  # fmt: skip
            project.add_truth(path, given, cls)


def _split_of(u: float, fractions: tuple[float, float, float]) -> str:
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def _train_params(has_models: bool) -> dict[str, Any]:
    repo = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    sections: dict[str, Any] = {
        "taxonomy": repo["taxonomy"],
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.003, "threads": 2, "device": "cpu",
                  "early_stopping_patience": 0, "cache_dir": ".fer_cache/train"},
        "models": {"baseline": {"width": 8}},
        "evaluate": {"gallery_size": 4},
        "tracking": {"uri": "sqlite:///mlflow.db"},
    }  # fmt: skip
    if has_models:
        del sections["models"]  # the caller's models replace the tiny baseline
    return sections


# --- A real copy of the repository ------------------------------------------------------------

# Small enough that the whole pipeline runs in well under a minute of compute on 2 cores.
TINY_OVERRIDES = [
    "sample.n=60",
    "sample.workers=1",
    "ingest.workers=1",
    "detect.workers=1",
    "validate.folds=2",
    "validate.cv_epochs=1",
    "validate.levels.class_balance=warning",
    "train.epochs=2",
    "train.batch_size=32",
    "train.early_stopping_patience=0",
    "evaluate.gallery_size=4",
]

_TOP_LEVEL_SKIP = {
    ".git", ".venv", "data", "models", "metrics", "plots", "predictions", "mlruns", "mlflow.db",
    ".fer_cache", "tmp", "docs", "benchmarks", "tests", "dvc.lock",
}  # fmt: skip
_ANYWHERE_SKIP = shutil.ignore_patterns(
    "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"
)


def copy_ignore(folder: str, names: list[str]) -> set[str]:
    """Skip workspace outputs at the top level only (``fer/data`` is code, ``data/`` is not)."""
    skip = set(_ANYWHERE_SKIP(folder, names))
    here = Path(folder).resolve()
    if here == ROOT:
        skip |= _TOP_LEVEL_SKIP & set(names)
    elif here == ROOT / ".dvc":
        skip |= {"cache", "tmp"} & set(names)  # the workspace's data cache stays behind
    return skip


def env(project: Path) -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH, telemetry off, own Prefect home."""
    e = dict(os.environ)
    e.update(
        PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GIT_AUTHOR_NAME="fer test", GIT_AUTHOR_EMAIL="test@fer.local",
        GIT_COMMITTER_NAME="fer test", GIT_COMMITTER_EMAIL="test@fer.local",
    )  # fmt: skip
    e.pop("MLFLOW_TRACKING_URI", None)
    return e


def sh(
    project: Path,
    *cmd: str,
    check: bool = True,
    timeout: float = 900,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command in the project copy; on failure raise with its output."""
    proc = subprocess.run(
        list(cmd),
        cwd=project,
        env={**env(project), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def copy_project(dest: Path, overrides: list[str] | None = None) -> Path:
    """Copy code + dvc.yaml + params.yaml to ``dest``, shrink params, and commit as a git repo."""
    from fer.params_edit import apply_overrides

    shutil.copytree(ROOT, dest, ignore=copy_ignore)
    apply_overrides(dest / "params.yaml", [*TINY_OVERRIDES, *(overrides or [])])
    sh(dest, "git", "init", "-q", "-b", "main")
    if not (dest / ".dvc").exists():
        sh(dest, str(BIN / "dvc"), "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "test project")
    return dest


def repo_params_copy(root: Path) -> dict[str, Any]:
    """``root/params.yaml``: the project's params with tracking off and the train cache (where
    ``pretrained:NAME`` models are built) under ``root``; ``{"root", "params", "cfg"}``."""
    repo = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    repo["train"] = {**repo["train"], "cache_dir": str(root / "cache")}
    repo["tracking"] = {**repo["tracking"], "enabled": False}
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(repo, sort_keys=False), encoding="utf-8")
    return {"root": root, "params": params, "cfg": load_config(params)}

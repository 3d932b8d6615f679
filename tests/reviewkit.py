"""A project folder with the tables `fer review` reads, written directly (no detector run):
raw images, manifest, faces + crops and validation CSVs, per docs/data-contracts.md.

Used by the review app tests (a few dozen faces) and ``benchmarks/bench_review.py`` (10,000).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import yaml

from fer import CLASSES

REPO = Path(__file__).resolve().parents[1]
FOLDER = {"positive": "happy", "negative": "angry", "neutral": "calm"}


def _face(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size, 3), rng.integers(40, 200, 3), dtype=np.uint8)
    c = size // 2
    skin = tuple(int(v) for v in rng.integers(120, 240, 3))
    cv2.ellipse(img, (c, c), (size // 3, size * 2 // 5), 0, 0, 360, skin, -1)
    for dx in (-size // 8, size // 8):
        cv2.circle(img, (c + dx, c - size // 10), max(1, size // 20), (20, 20, 20), -1)
    return img


def _params(root: Path, extra: dict[str, Any] | None) -> Path:
    repo = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params = {
        "taxonomy": {c: [FOLDER[c]] for c in CLASSES},
        "ingest": {"raw_dir": "data/raw", "manifest": "data/manifest.parquet"},
        "detect": {"faces": "data/faces.parquet", "crops_dir": "data/faces"},
        "validate": {"out_dir": "data/validation"},
        "split": repo["split"],
        "review": {"decisions": "review_decisions.csv"},
        "tracking": {"enabled": False},
        **(extra or {}),
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def make_review_project(
    root: Path,
    n_images: int = 30,
    *,
    faces_per_image: int = 1,
    no_face: int = 3,
    seed: int = 0,
    img_size: tuple[int, int] = (160, 120),
    params: dict[str, Any] | None = None,
) -> Path:
    """Write the tables and files under ``root``; returns the params file.

    Every face is a label issue (with per-class ``p_*`` columns); the first two images with
    faces are near duplicates of each other; the last ``no_face`` images have no face.
    """
    rng = np.random.default_rng(seed)
    width, height = img_size
    manifest, faces, issues = [], [], []
    side = min(width // (faces_per_image + 1), height * 2 // 3)
    for i in range(n_images + no_face):
        label = CLASSES[i % 3]
        rel = f"{FOLDER[label]}/{i:06d}.jpg"
        img = np.full((height, width, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        img[:8, :8] = rng.integers(0, 255, (8, 8, 3))  # unique bytes per image
        boxes = []
        if i < n_images:
            for k in range(faces_per_image):
                x, y = 4 + k * (side + 6), 4
                img[y : y + side, x : x + side] = _face(rng, side)
                boxes.append((x, y, side, side))
        path = root / "data" / "raw" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = cv2.imencode(".jpg", img)[1].tobytes()
        path.write_bytes(data)
        iid = hashlib.sha256(data).hexdigest()
        manifest.append((iid, rel, FOLDER[label], label, len(data), width, height, "JPEG", "ok"))
        fid_base = hashlib.sha1(rel.encode()).hexdigest()[:12]
        for k, (x, y, w, h) in enumerate(boxes):
            crop = f"data/faces/{iid[:2]}/{iid[:16]}_{k}.png"
            (root / crop).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / crop), cv2.resize(img[y : y + h, x : x + w], (64, 64)))
            fid = f"{fid_base}_{k}"
            faces.append((fid, iid, rel, FOLDER[label], label, k, x, y, w, h,
                          float(rng.uniform(0.5, 1)), crop, len(boxes)))  # fmt: skip
            p = rng.dirichlet(np.ones(3))
            other = CLASSES[(i + 1) % 3]
            issues.append((fid, rel, label, other, float(rng.uniform(0, 1)), "exclude", *p))
    _write_tables(root, manifest, faces, issues, n_images)
    return _params(root, params)


def _write_tables(root: Path, manifest: list, faces: list, issues: list, n_images: int) -> None:
    m = pd.DataFrame(manifest, columns=["id", "path", "expression", "label", "bytes", "width",
                                        "height", "format", "status"])  # fmt: skip
    m["reason"] = ""
    m["duplicate_of"] = ""
    m.to_parquet(root / "data" / "manifest.parquet", index=False)
    f = pd.DataFrame(faces, columns=["face_id", "image_id", "path", "expression", "label",
                                     "face_index", "x", "y", "w", "h", "score", "crop_path",
                                     "n_faces"])  # fmt: skip
    f.to_parquet(root / "data" / "faces.parquet", index=False)
    val = root / "data" / "validation"
    val.mkdir(parents=True, exist_ok=True)
    cols = ["face_id", "path", "given_label", "suggested_label", "score", "action"]
    li = pd.DataFrame(issues, columns=[*cols, *(f"p_{c}" for c in CLASSES)])
    li.sort_values("score", ascending=False).to_csv(val / "label_issues.csv", index=False)
    q = m.iloc[n_images:][["path", "id"]].rename(columns={"id": "image_id"})
    q.assign(reason="no_face").to_csv(val / "quarantine.csv", index=False)
    dup = m.iloc[:2][["path", "id"]].rename(columns={"id": "image_id"})
    dup.assign(group="dup000001", kind="near_image")[["group", "path", "image_id", "kind"]].to_csv(
        val / "duplicates.csv", index=False
    )

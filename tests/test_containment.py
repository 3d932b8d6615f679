"""Paths read from tables stay inside their root; files too small for any step stop at ingest."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_detect_stage import _config, _manifest, _write

from fer.io import contained


def test_contained_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    (root / "happy").mkdir(parents=True)
    (root / "happy" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", root / "happy" / "link.jpg")
    os.symlink(root / "happy" / "a.jpg", root / "happy" / "inner.jpg")

    assert contained(root, "happy/a.jpg") == (root / "happy/a.jpg").resolve()
    assert contained(root, "happy/inner.jpg") == (root / "happy/a.jpg").resolve()
    assert contained(root, root.resolve() / "happy/a.jpg") is not None  # absolute, inside
    for bad in ("../secret.txt", "happy/../../secret.txt", "/etc/passwd", "happy/link.jpg"):
        assert contained(root, bad) is None, bad


def test_detect_never_opens_a_manifest_path_outside_the_raw_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fer.stages import detect

    raw = tmp_path / "raw"
    _write(raw / "calm" / "blank.png", np.full((240, 320, 3), 127, np.uint8))
    outside = tmp_path / "outside.png"
    _write(outside, np.full((240, 320, 3), 90, np.uint8))
    manifest = _manifest(raw, tmp_path / "m.pq")
    escape = {**manifest.iloc[0].to_dict(), "path": "../outside.png", "id": "f" * 64}
    manifest = pd.concat([manifest, pd.DataFrame([escape])], ignore_index=True)
    manifest.to_parquet(tmp_path / "m.pq", index=False)

    opened: list[str] = []
    real = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda p, *a: opened.append(str(p)) or real(p, *a))
    detect.run(_config(tmp_path))
    rows = pd.read_parquet(tmp_path / "detections.parquet").set_index("path")
    assert rows.loc["../outside.png", "status"] == "error"
    assert rows.loc["../outside.png", "reason"].startswith("path_outside_raw_dir")
    assert rows.loc["calm/blank.png", "status"] == "ok"
    assert not any("outside" in p for p in opened)
    faces = pd.read_parquet(tmp_path / "faces.parquet")
    assert "../outside.png" not in set(faces["path"])


def test_ingest_rejects_images_too_small_to_use(tmp_path: Path) -> None:
    from fer.config import config_from_dict
    from fer.stages import ingest

    raw = tmp_path / "raw"
    _write(raw / "happy" / "dot.png", np.zeros((1, 1, 3), np.uint8))
    _write(raw / "happy" / "ok.png", np.zeros((40, 40, 3), np.uint8))
    cfg = config_from_dict(
        {
            "taxonomy": {"positive": ["happy"], "negative": ["angry"], "neutral": ["calm"]},
            "ingest": {"raw_dir": str(raw), "manifest": str(tmp_path / "m.pq"), "workers": 1},
        }
    )
    ingest.run(cfg)
    rows = pd.read_parquet(tmp_path / "m.pq").set_index("path")
    assert rows.loc["happy/dot.png", ["status", "reason"]].tolist() == ["rejected", "too_small"]
    assert rows.loc["happy/ok.png", "status"] == "ok"


def test_fingerprint_of_a_one_pixel_image_is_none() -> None:
    from fer.validation.duplicates import fingerprint

    assert fingerprint(np.zeros((1, 1, 3), np.uint8)) is None
    assert fingerprint(np.zeros((0, 5, 3), np.uint8)) is None

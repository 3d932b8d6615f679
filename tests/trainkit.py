"""Tiny training projects for the model/training/evaluation/tracking tests (real files).

``make_project`` writes crops and a ``data/splits.parquet`` following docs/data-contracts.md,
and returns a shrunk :class:`fer.config.Config` whose relative paths resolve inside the project
(tests ``chdir`` into it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import yaml

from fer import CLASSES
from fer.config import Config, config_from_dict

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def color_crop(rng: np.random.Generator, cls: int, size: int = SIZE) -> np.ndarray:
    """An easily separable crop: one dominant colour channel per class, plus noise."""
    img = rng.integers(0, 90, size=(size, size, 3)).astype(np.int16)
    img[:, :, cls] += 140
    return np.clip(img, 0, 255).astype(np.uint8)


def face_crop(rng: np.random.Generator, expression: str, size: int = SIZE) -> np.ndarray:
    """A real sandbox face of ``expression`` (fer's renderer), cropped by its truth box."""
    from fer.data.synthetic import render_scene

    scene, boxes = render_scene(rng, expression, 1, 160, 160)
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


def make_project(
    root: Path,
    *,
    n_per_class: int = 40,
    kind: str = "color",
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    train: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
    tracking: dict[str, Any] | None = None,
    noise: float = 0.0,
) -> Config:
    """Write crops + splits (+ a truth file) under ``root``; return the matching config."""
    rng = np.random.default_rng(seed)
    expressions = {"positive": "happy", "negative": "angry", "neutral": "neutral"}
    rows, truth = [], []
    for ci, cls in enumerate(CLASSES):
        for j in range(n_per_class):
            img = color_crop(rng, ci) if kind == "color" else face_crop(rng, expressions[cls])
            face_id = f"{cls[:3]}{j:04d}_0"
            crop_rel = f"data/faces/{face_id[:2]}/{face_id}.png"
            (root / crop_rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / crop_rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            u = j / n_per_class
            split = (
                "train"
                if u < fractions[0]
                else "val"
                if u < fractions[0] + fractions[1]
                else "test"
            )
            given = cls
            if noise and rng.random() < noise:
                given = CLASSES[(ci + 1 + int(rng.integers(2))) % 3]
            path = f"{expressions[given]}/{face_id}.png"
            rows.append(
                {
                    "face_id": face_id, "image_id": face_id[:-2], "path": path,
                    "crop_path": crop_rel, "expression": expressions[given],
                    "given_label": given, "label": given, "split": split, "group": face_id,
                }
            )  # fmt: skip
            truth.append({"path": path, "true_class": cls, "given_class": given})
    table = pd.DataFrame(rows)
    (root / "data").mkdir(exist_ok=True)
    table.to_parquet(root / "data/splits.parquet", index=False)
    pd.DataFrame(truth).to_csv(root / "data/sample_truth.csv", index=False)
    taxonomy = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["taxonomy"]
    tr = {
        "epochs": 2, "batch_size": 16, "lr": 0.003, "threads": 2, "device": "cpu",
        "early_stopping_patience": 0, "cache_dir": ".fer_cache/train",
        **(train or {}),
    }  # fmt: skip
    return config_from_dict(
        {
            "taxonomy": taxonomy,
            "train": tr,
            "models": models or {"baseline": {"width": 8}},
            "evaluate": {"gallery_size": 4},
            "tracking": {"uri": "sqlite:///mlflow.db", **(tracking or {})},
        }
    )

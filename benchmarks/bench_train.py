"""Benchmark `fer train` throughput against a bare PyTorch loop, same model/batch/crop size.

Writes ``--n`` synthetic crops (PNG) and a splits table into a temp project, then measures in
the same process, interleaved (bare, fer, bare) so machine load drifts hit both sides:

- bare loop: the model trained on an in-memory, pre-normalised float tensor (random batch order,
  Adam, cross-entropy, no augmentation, no validation, no checkpoint): the compute bound;
- ``fer.stages.train.run`` (tracking off): cached uint8 crops, per-batch float conversion,
  augmentation, class weights, per-epoch validation, checkpoint and history writes.

Reported per side: the median images/s of the training phase over epochs 2..E (the first
carries one-off warm-up), and for `fer train` also the whole-run rate including validation,
checkpointing and start-up.
Goal: fer train-phase / bare ≥ 0.9. Usage::

    python benchmarks/bench_train.py                 # alexnet, batch 256, 1024 crops, 5 epochs
    python benchmarks/bench_train.py --model baseline --n 2048
    python benchmarks/bench_train.py --device cuda --n 16384 --epochs 6   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_project(root: Path, n: int, size: int, seed: int) -> None:
    """``n`` colour-coded noisy crops and a splits table (80% train, 20% val)."""
    import cv2
    import pandas as pd

    from fer import CLASSES

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cls = i % 3
        img = rng.integers(0, 120, size=(size, size, 3)).astype(np.uint8)
        img[:, :, cls] = np.clip(img[:, :, cls].astype(int) + 100, 0, 255)
        rel = f"data/faces/{i % 16:02d}/{i:06d}_0.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img)
        rows.append(
            {"face_id": f"{i:06d}_0", "image_id": f"{i:06d}", "path": f"x/{i:06d}.png",
             "crop_path": rel, "expression": "x", "given_label": CLASSES[cls],
             "label": CLASSES[cls], "split": "val" if i % 5 == 0 else "train", "group": str(i)}
        )  # fmt: skip
    pd.DataFrame(rows).to_parquet(root / "data/splits.parquet", index=False)


def bare_loop(
    name: str, x: np.ndarray, y: np.ndarray, batch: int, epochs: int, seed: int, device: str
) -> float:
    """Median images/s over epochs 2..E of a plain loop over an in-memory float tensor."""
    import torch

    from fer.config import ModelSpec
    from fer.learning.models import build_model
    from fer.learning.preprocess import InputSpec, preprocess

    torch.manual_seed(seed)
    model = build_model(name, ModelSpec(), input_size=x.shape[1]).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = preprocess(x, InputSpec(size=x.shape[1]), device=device)  # all of it, once, as float
    target = torch.as_tensor(y).to(device)
    rates = []
    for _ in range(epochs):
        order = torch.randperm(len(target), device=device)
        start = time.perf_counter()
        for i in range(0, len(target), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(data[idx]), target[idx])
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(len(target) / (time.perf_counter() - start))
    return statistics.median(rates[1:] or rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="alexnet")
    ap.add_argument("--n", type=int, default=1024, help="crops (80%% train)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = ap.parse_args(argv)

    import torch
    import yaml

    from fer.config import config_from_dict
    from fer.learning.datasets import cpu_threads
    from fer.learning.splits import read_splits, subset
    from fer.learning.training import resolve_device
    from fer.stages.train import run

    torch.set_num_threads(cpu_threads(args.threads))
    device = resolve_device(args.device)
    repo = Path(__file__).resolve().parents[1]
    taxonomy = yaml.safe_load((repo / "params.yaml").read_text())["taxonomy"]
    old_cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        root = Path(tmp)
        write_project(root, args.n, args.size, seed=0)
        os.chdir(root)
        try:
            cfg = config_from_dict(
                {
                    "taxonomy": taxonomy,
                    "detect": {"crop": {"size": args.size}},
                    "train": {"epochs": args.epochs, "batch_size": args.batch, "device": device,
                              "threads": args.threads, "early_stopping_patience": 0},
                    "tracking": {"enabled": False},
                }
            )  # fmt: skip
            data = read_splits(cfg, progress=False)
            _, x, y = subset(data, "train")
            bare1 = bare_loop(args.model, x, y, args.batch, args.epochs, seed=0, device=device)
            t0 = time.perf_counter()
            summary = run(cfg, model=args.model, resume=False)
            wall = time.perf_counter() - t0
            bare2 = bare_loop(args.model, x, y, args.batch, args.epochs, seed=0, device=device)
            import pandas as pd

            hist = pd.read_csv(root / cfg.evaluate.plots_dir / args.model / "history.csv")
        finally:
            os.chdir(old_cwd)
    rates = list(hist["images_per_s"])
    fer_rate = statistics.median(rates[1:] or rates)
    bare = (bare1 + bare2) / 2
    whole = summary["n_train"] * args.epochs / wall  # includes start-up, val, checkpoints
    cmd = "python benchmarks/bench_train.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    print(
        f"\nreproduce: {cmd.strip()}  "
        f"({device}: {_device_name(device)}; {torch.get_num_threads()} threads, "
        f"torch {torch.__version__})"
    )
    print(
        "| model | batch | crop | train imgs | fer train img/s (train phase) | bare loop img/s "
        "(before/after) | ratio | fer train img/s (whole run incl. val, ckpt, start-up) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.model} | {args.batch} | {args.size} | {summary['n_train']} | {fer_rate:.0f} | "
        f"{bare:.0f} ({bare1:.0f}/{bare2:.0f}) | {fer_rate / bare:.2f} | {whole:.0f} |"
    )
    return 0


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPU cores"


if __name__ == "__main__":
    sys.exit(main())

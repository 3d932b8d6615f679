"""Does this CPU crash in oneDNN without fer's kernel pin, and is it clean with it?

Runs the reproducibility issue's sequence (mini-Xception, FaceExpressionNet, mini-Xception again,
fine-tuned back to back through :func:`fer.learning.training.fit`, 2 epochs on 12 random images)
in fresh child processes, ``--runs`` times each way:

- ``pinned``: the child starts with no pin and ``fit`` sets fer's
  (:data:`fer.numerics.PINNED_KERNELS`);
- ``unpinned``: ``ONEDNN_MAX_CPU_ISA=ALL`` and ``ATEN_CPU_CAPABILITY`` at the CPU's widest, the
  libraries' own choice (a value the user sets wins over fer's pin).

Per run it prints the exit status (negative: killed by that signal; -11 is a segfault), the
models that finished, the ISA oneDNN reports and the convolution kernels it ran. On a CPU
without AVX-512 both ways run the same AVX2 kernels and neither crashes: the check proves
something only where the unpinned ISA line names AVX-512.

    python benchmarks/check_onednn_pin.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer.numerics import PINNED_KERNELS  # noqa: E402

BACK_TO_BACK = textwrap.dedent(
    """
    import numpy as np, torch
    from fer.config import ModelSpec, TrainConfig
    from fer.learning.models import build_model, input_spec
    from fer.learning.training import FitData, fit

    cfg = TrainConfig(epochs=2, batch_size=4, early_stopping_patience=0, threads=1, device="cpu")
    for name, head in [("minixception", "mapped"), ("faceexpr", "new"), ("minixception", "new")]:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        spec = input_spec(name)
        x = rng.integers(0, 256, (12, spec.size, spec.size, 3), dtype=np.uint8)
        y = np.arange(12) % 3
        model = build_model(name, ModelSpec(pretrained=True, head=head))
        result = fit(model, FitData(x, y, x[:6], y[:6], input_spec=spec), cfg)
        losses = [record["train_loss"] for record in result.history]
        print(name, head, "loss", losses[0], losses[-1])
    import os
    print("pinned", os.environ.get("ONEDNN_MAX_CPU_ISA"), os.environ.get("ATEN_CPU_CAPABILITY"))
    """
)
"""The child program: the issue's back-to-back fine-tuning, through fer's own ``fit``."""


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without fer's pin, oneDNN verbose, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    return {**env, "ONEDNN_VERBOSE": "1", **extra}


def widest_aten_capability() -> str:
    """torch's own choice of vectorised kernels on this CPU (``avx512``, ``avx2``, ...)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability().lower())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env({})
    )
    return out.stdout.strip() or "default"


def onednn_report(stdout: str) -> tuple[str, list[str]]:
    """(the ISA oneDNN dispatched to, the sorted convolution kernels it ran) from its log."""
    lines = stdout.splitlines()
    isa = next((line.split("isa:", 1)[1] for line in lines if ",info,cpu,isa:" in line), "?")
    kernels = sorted({line.split(",")[6] for line in lines if ",exec,cpu,conv" in line})
    return isa, kernels


def run_once(extra: dict[str, str]) -> dict:
    """One child run: exit status, models finished, ISA, kernels, seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", BACK_TO_BACK], capture_output=True, text=True, timeout=600,
        env=child_env(extra), cwd=REPO,
    )  # fmt: skip
    isa, kernels = onednn_report(proc.stdout)
    finished = sum(" loss " in line for line in proc.stdout.splitlines())
    return {"rc": proc.returncode, "finished": finished, "isa": isa, "kernels": kernels,
            "s": time.perf_counter() - start}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="child runs each way")
    args = parser.parse_args(argv)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# python benchmarks/check_onednn_pin.py --runs {args.runs}")
    print(f"# cpus={os.cpu_count()}, load average {load}")
    unpinned = {"ONEDNN_MAX_CPU_ISA": "ALL", "ATEN_CPU_CAPABILITY": widest_aten_capability()}
    print(f"# unpinned: {unpinned}")
    print("| way | run | exit | models finished (of 3) | oneDNN ISA | conv kernels | s |")
    print("|---|---|---|---|---|---|---|")
    crashed = {"pinned": 0, "unpinned": 0}
    for way, extra in (("pinned", {}), ("unpinned", unpinned)):
        for run in range(1, args.runs + 1):
            r = run_once(extra)
            crashed[way] += r["rc"] != 0
            kernels = ", ".join(r["kernels"][:2]) or "none"
            print(f"| {way} | {run} | {r['rc']} | {r['finished']} | {r['isa']} | {kernels} | "
                  f"{r['s']:.1f} |", flush=True)  # fmt: skip
    print(f"\ncrashed: pinned {crashed['pinned']}/{args.runs}, "
          f"unpinned {crashed['unpinned']}/{args.runs}")  # fmt: skip
    return 1 if crashed["pinned"] else 0


if __name__ == "__main__":
    sys.exit(main())

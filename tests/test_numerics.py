"""The CPU kernel pin (fer.numerics): packaged networks fine-tune back to back in one process.

On AMD EPYC CPUs with AVX-512, fine-tuning mini-Xception and then FaceExpressionNet in one
process crashed in oneDNN's backward pass (the reproducibility issue). The check runs that exact
sequence through fer's own training entry point in a child process that starts with no pin in its
environment, so a crash is a failed test naming the signal, never a dead test run, and a lost pin
shows on every machine as oneDNN reporting a wider ISA than AVX2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fer.numerics import pin_cpu_kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from check_onednn_pin import BACK_TO_BACK, child_env


@pytest.mark.slow
def test_packaged_models_fine_tune_back_to_back_in_one_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BACK_TO_BACK], capture_output=True, text=True, timeout=600,
        env=child_env({}),
    )  # fmt: skip
    tail = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
    died = f"exit {proc.returncode} (negative: killed by that signal)"
    assert proc.returncode == 0, f"{died}\n{tail}"
    isa = [line for line in proc.stdout.splitlines() if ",info,cpu,isa:" in line]
    assert isa, f"oneDNN printed no ISA line\n{tail}"
    assert "AVX-512" not in isa[0] and "AMX" not in isa[0], isa[0]
    kernels = {line.split(",")[6] for line in proc.stdout.splitlines() if ",exec,cpu,conv" in line}
    assert kernels, "no oneDNN convolution ran: the check would prove nothing"
    assert not any("avx512" in k or "amx" in k for k in kernels), sorted(kernels)
    trained = [line for line in proc.stdout.splitlines() if " loss " in line]
    assert len(trained) == 3, tail
    assert "pinned AVX2 avx2" in proc.stdout  # by fit() itself: the child started without it


def test_pin_keeps_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert pin_cpu_kernels() == {"ONEDNN_MAX_CPU_ISA": "ALL", "ATEN_CPU_CAPABILITY": "avx2"}


def test_the_fer_command_pins_before_any_stage_runs(tmp_path) -> None:
    script = (
        "import os; from fer.cli import main; "
        f"code = main(['--params', {str(tmp_path / 'absent.yaml')!r}, 'ingest']); "
        "print(code, os.environ.get('ONEDNN_MAX_CPU_ISA'), os.environ.get('ATEN_CPU_CAPABILITY'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env=child_env({}),
    )  # fmt: skip
    assert proc.stdout.split() == ["2", "AVX2", "avx2"], proc.stderr

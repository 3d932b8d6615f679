"""One CPU kernel family on every x86 machine: no oneDNN crash, and the same arithmetic everywhere.

torch's CPU convolutions (oneDNN) and its own vectorised kernels (ATen) pick their code by the
CPU's instruction set the first time they run. On AMD EPYC CPUs with AVX-512, fine-tuning
mini-Xception and FaceExpressionNet in one process crashed in oneDNN's backward pass (segfault,
or ``double free or corruption`` in a longer single-model run); the same code is clean with oneDNN
off, and on AVX2 CPUs, whose kernels the crash never reached. Turning oneDNN off is no cure: the
depthwise convolutions of both networks then fall back to ATen's generic path, 4-9× slower to
train and up to 30× slower to run (measured on 2 cores, batch 64).

So fer caps both libraries at AVX2, the widest ISA every current x86-64 server has: the crashing
AVX-512 kernels are never chosen, and Intel and AMD machines run the same kernel family, which
narrows (but does not remove: blocking depends on cache sizes and threads) the spread of results
across machines. The cap is an environment setting read when each library first runs a kernel,
so it is set before any model runs: by the ``fer`` command at start-up, by the training entry
points (:func:`fer.learning.training.fit`, the label auditor's K-fold pass) and by the test suite.
A value you set yourself wins (``ONEDNN_MAX_CPU_ISA=ALL`` restores oneDNN's own choice).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

PINNED_KERNELS: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: convolutions, their backward passes, pooling
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised ops: softmax, batch norm, Adam
}
"""Environment variables that fix the CPU kernels (a no-op on CPUs without AVX-512)."""


def pin_cpu_kernels() -> dict[str, str]:
    """Set :data:`PINNED_KERNELS` where the environment does not already choose.

    Returns the settings in force afterwards. Takes effect only if no convolution has run in
    this process yet (each library reads its setting once); harmless when called again.
    """
    for key, value in PINNED_KERNELS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in PINNED_KERNELS}


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the setting.

    None (or the current count) changes nothing. Switching costs ~1 µs.
    """
    import torch

    previous = torch.get_num_threads()
    if not threads or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

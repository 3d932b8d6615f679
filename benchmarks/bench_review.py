"""Benchmark `fer review` on 10,000 flagged faces: start-up, first page, first thumbnails, memory.

A temporary project holds the tables `fer review` reads (manifest, faces + 64 px crops, and
validation CSVs in which every face is a label issue; see ``tests/kit.py``), plus an
optional decisions file with ``--decided`` rows. Then, in one run:

- ``fer review`` is started as its own process (the console script, as a user runs it);
  measured: process start → ``/healthz`` answers, → first page HTML;
- headless Chromium (already running, so its start-up is not counted) opens the label-issue
  page: navigation → the first ``--thumbs`` thumbnails decoded in the page;
- over plain HTTP: one page's HTML, the first and the last page, and ``--thumbs`` thumbnails
  cold then cached; the JSON API for the last page; ``/api/decide`` latency;
- the server's peak resident memory (psutil, sampled every 20 ms over the whole run).

    python benchmarks/bench_review.py                  # 10,000 faces
    python benchmarks/bench_review.py --faces 2000     # quick
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
os.environ.setdefault("FER_PROGRESS", "0")


class PeakRSS(threading.Thread):
    """Samples a process's resident memory until stopped; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:  # the process ended
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def _build(root: Path, faces: int, decided: int) -> Path:
    import pandas as pd

    from fer.validation import decisions as dec
    from tests.kit import fake_project

    t0 = time.perf_counter()
    params = fake_project(root, "review", n_faces=faces, no_face=max(1, faces // 100)).params
    if decided:
        f = pd.read_parquet(root / "data/faces.parquet").head(decided)
        rows = [
            dec.Decision(i, (int(x), int(y), int(w), int(h)), "keep", reviewer="bench", path=p)
            for i, p, x, y, w, h in f[["image_id", "path", "x", "y", "w", "h"]].itertuples(
                index=False
            )
        ]
        dec.write_decisions(root / "review_decisions.csv", rows)
    print(f"built the project: {faces} faces in {time.perf_counter() - t0:.1f} s ({root})")
    return params


def _get(client, url: str) -> tuple[float, bytes]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    resp = client.get(url)
    resp.raise_for_status()
    return time.perf_counter() - t0, resp.content


def _http(base: str, n_thumbs: int, pages: int) -> dict[str, float]:
    import re

    import httpx

    out: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=60) as c:
        out["page1_html_s"], html = _get(c, "/?group=label_issue&page=2")
        out["page_html_kb"] = len(html) / 1024
        out["last_page_html_s"], _ = _get(c, f"/?group=label_issue&page={pages}")
        out["last_page_json_s"], _ = _get(c, f"/api/items?group=label_issue&page={pages}")
        out["sort_class_filter_s"], _ = _get(c, "/?group=label_issue&cls=neutral&sort=path")
        ids = re.findall(r'src="thumb/face/([^"]+)"', html.decode())[:n_thumbs]
        t0 = time.perf_counter()
        sizes = [len(_get(c, f"/thumb/face/{i}")[1]) for i in ids]
        out["thumbs_cold_s"] = time.perf_counter() - t0
        out["thumb_kb_mean"] = statistics.mean(sizes) / 1024
        t0 = time.perf_counter()
        for i in ids:
            _get(c, f"/thumb/face/{i}")
        out["thumbs_cached_s"] = time.perf_counter() - t0
        lat = []
        for i in ids[:20]:
            t0 = time.perf_counter()
            c.post("/api/decide", json={"item": i, "action": "drop"}).raise_for_status()
            lat.append(time.perf_counter() - t0)
        out["decide_median_ms"] = statistics.median(lat) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark fer review on many flagged faces.")
    ap.add_argument("--faces", type=int, default=10_000)
    ap.add_argument("--thumbs", type=int, default=24, help="first N thumbnails to wait for")
    ap.add_argument("--decided", type=int, default=0, help="rows already in the decisions file")
    args = ap.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    from fer.ui import free_port, stop_processes
    from tests.cdp import Browser, find_chromium

    with tempfile.TemporaryDirectory(prefix="fer-bench-review-") as tmp:
        root = Path(tmp)
        params = _build(root, args.faces, args.decided)
        exe = find_chromium()
        browser = Browser(exe, free_port()) if exe else None
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [str(BIN / "fer"), "--params", str(params), "review", "--port", str(port)]
        t0 = time.perf_counter()
        server = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL)
        peak = PeakRSS(server.pid)
        peak.start()
        res: dict[str, float] = {}
        try:
            res.update(_startup(base, t0))
            if browser is not None:
                res.update(_browser(browser, base, args.thumbs, t0))
            pages = -(-args.faces // 48)
            res.update(_http(base, args.thumbs, pages))
        finally:
            rss = peak.stop()
            stop_processes([server])
            if browser is not None:
                browser.close()
    res["server_peak_rss_mib"] = rss / 2**20
    print(f"\n{args.faces} flagged faces, first {args.thumbs} thumbnails:")
    for k, v in res.items():
        print(f"  {k:<28} {v:10.3f}")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def _startup(base: str, t0: float) -> dict[str, float]:
    import httpx

    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.perf_counter() - t0 > 120:
            raise SystemExit("fer review did not start in 120 s")
        time.sleep(0.02)
    ready = time.perf_counter() - t0
    httpx.get(f"{base}/?group=label_issue", timeout=60).raise_for_status()
    return {"start_to_ready_s": ready, "start_to_first_html_s": time.perf_counter() - t0}


def _browser(browser, base: str, n: int, t0: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    t_nav = time.perf_counter()
    browser.navigate(f"{base}/?group=label_issue")
    dom = time.perf_counter() - t_nav
    expr = (
        f"(() => {{ const im = Array.from(document.querySelectorAll('img.thumb')).slice(0, {n});"
        f" return im.length === {n} && im.every(i => i.complete && i.naturalWidth > 0); }})()"
    )
    browser.wait_for(expr, timeout=120, interval=0.01)
    done = time.perf_counter()
    return {
        "chromium_page_load_s": dom,
        "chromium_first_thumbs_s": done - t_nav,
        "start_to_first_thumbs_s": done - t0,
    }


if __name__ == "__main__":
    main()

"""`fer review` end to end: a sandbox built by real `dvc repro`, the page in headless Chromium,
one face relabelled and one dropped with the keyboard, then `dvc repro` re-runs split and what
follows only, and ``data/splits.parquet`` carries the decisions.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.cdp import Browser, find_chromium
from tests.kit import BIN, env, sh

pytestmark = [pytest.mark.slow, pytest.mark.browser]
DVC = str(BIN / "dvc")
OVERRIDES = [
    "sample.n=120",
    "train.epochs=1",
    "train.models=[baseline]",
    "tracking.enabled=false",
]


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def pick_cards(project: Path, items: list[dict]) -> tuple[int, int]:
    """Indices of two cards whose faces nothing else keeps out of training."""
    issues = pd.read_csv(project / "data/validation/label_issues.csv", dtype=str)
    quarantined = set(pd.read_csv(project / "data/validation/quarantine.csv", dtype=str)["path"])
    free = [
        k
        for k, c in enumerate(items)
        if c["kind"] == "face"
        and c["face_id"] not in set(issues["face_id"])
        and c["path"] not in quarantined
    ]
    assert len(free) >= 3, "the sandbox has too few multi-face cards to test with"
    return free[0], free[1]


@pytest.fixture
def review_server(tmp_path: Path):
    procs: list[subprocess.Popen] = []

    def start(project: Path, port: int) -> subprocess.Popen:
        log = open(tmp_path / "review.log", "w")  # noqa: SIM115
        cmd = [str(BIN / "fer"), "review", "--port", str(port), "--reviewer", "e2e"]
        proc = subprocess.Popen(cmd, cwd=project, env=env(project), stdout=log, stderr=log)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=20)


def test_keyboard_decisions_rerun_only_split_and_downstream(
    tmp_path: Path, review_server, project_copy
):
    import httpx

    from fer.ui import free_port
    from tests.browser import wait_http

    exe = find_chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium); UI check skipped")
    project = project_copy(tmp_path / "proj", OVERRIDES)
    first = sh(project, DVC, "repro").stdout
    assert {"validate", "split", "train@baseline", "evaluate@baseline"} <= ran_stages(first)

    port = free_port()
    review_server(project, port)
    base = f"http://127.0.0.1:{port}/"
    wait_http(base + "healthz", timeout=60)
    items = httpx.get(base + "api/items", params={"group": "multi_face", "size": 48}).json()
    a, b = pick_cards(project, items["items"])
    card_a, card_b = items["items"][a], items["items"][b]
    new_label = next(c for c in ("neutral", "positive") if c != card_a["given_label"])
    key = {"positive": "1", "negative": "2", "neutral": "3"}[new_label]

    with Browser(exe, free_port()) as page:
        page.navigate(base + "?group=multi_face")
        page.wait_for("document.querySelectorAll('.card img').length > 0")
        assert (
            page.eval("document.querySelectorAll('.card')[0].dataset.item")
            == items["items"][0]["item"]
        )
        for _ in range(a):
            page.key("j")
        page.key(key)  # relabel; the cursor moves on
        for _ in range(b - a - 1):
            page.key("j")
        page.key("d")  # drop
        page.key("n")  # not a face on the next card ...
        page.key("u")  # ... undone
        page.eval("window.ferReview.idle()")
        badges = page.eval("Array.from(document.querySelectorAll('.badge'), e => e.textContent)")
        assert badges[a] == f"relabel → {new_label}" and badges[b] == "drop"
        assert badges[b + 1] == ""
        page.key("f")  # the whole image with the box, on demand
        page.wait_for("document.querySelector('#overlay img').complete")
        assert page.eval("document.querySelector('#overlay img').naturalWidth") > 0
        page.key("Escape")

    with open(project / "review_decisions.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["image_id"], r["action"], r["label"], r["reviewer"]) for r in rows] == [
        (card_a["image_id"], "relabel", new_label, "e2e"),
        (card_b["image_id"], "drop", "", "e2e"),
    ]
    assert all(r["box"] and r["time"] for r in rows)

    status = json.loads(sh(project, DVC, "status", "--json").stdout)
    assert "review_decisions.csv" in json.dumps(status["split"])
    assert status["ingest"] == ["always changed"]  # ingest looks at the image folder each time
    for stage in ("sample", "detect", "validate"):
        assert stage not in status, status
    second = sh(project, DVC, "repro").stdout
    # ingest re-reads the folder, finds the same manifest: detect and validate do not run.
    assert ran_stages(second) == {"ingest", "split", "train@baseline", "evaluate@baseline"}, second
    assert "review decisions (review_decisions.csv): 2 row(s); faces decided: 2" in second

    splits = pd.read_parquet(project / "data/splits.parquet").set_index("face_id")
    assert splits.loc[card_a["face_id"], "label"] == new_label
    assert splits.loc[card_a["face_id"], "given_label"] == card_a["given_label"]
    assert card_b["face_id"] not in splits.index

"""The review app through Starlette's TestClient on a small project: listing, pagination,
thumbnails, refused paths, decisions written at once; `fer split` applying them; migration."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fer.cli import main
from fer.config import load_config
from fer.validation import decisions as dec

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

N_IMAGES, PER_IMAGE, NO_FACE = 20, 2, 3


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def project(tmp_path: Path, fake_project) -> Path:
    fake_project(tmp_path, "review", n_faces=N_IMAGES * PER_IMAGE, faces_per_image=PER_IMAGE,
                 no_face=NO_FACE)  # fmt: skip
    return tmp_path


@pytest.fixture
def client(project: Path) -> TestClient:
    from fer.review.app import create_app
    from fer.review.state import load_state

    state = load_state(load_config(project / "params.yaml"), project, "tester")
    return TestClient(create_app(state))


def rows(project: Path) -> list[dict[str, str]]:
    with open(project / "review_decisions.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_listing_groups_and_pagination(client: TestClient) -> None:
    n_faces = N_IMAGES * PER_IMAGE
    first = client.get("/api/items", params={"group": "label_issue", "size": 16}).json()
    assert first["total"] == n_faces and first["pages"] == 3 and len(first["items"]) == 16
    scores = [c["confidence"] for c in first["items"]]
    assert scores == sorted(scores, reverse=True)
    assert set(first["items"][0]["probs"]) == {"positive", "negative", "neutral"}
    seen = []
    for page in (1, 2, 3):
        got = client.get("/api/items", params={"group": "label_issue", "size": 16, "page": page})
        seen += [c["item"] for c in got.json()["items"]]
    assert len(seen) == len(set(seen)) == n_faces  # pages are disjoint and cover everything
    low = client.get("/api/items", params={"group": "label_issue", "sort": "confidence_asc"})
    assert low.json()["items"][0]["confidence"] == min(
        c["confidence"]
        for c in client.get("/api/items?group=label_issue&size=500").json()["items"]
    )
    neg = client.get("/api/items", params={"group": "label_issue", "cls": "negative"}).json()
    assert neg["total"] > 0 and {c["given_label"] for c in neg["items"]} == {"negative"}
    no_face = client.get("/api/items", params={"group": "no_face"}).json()
    assert no_face["total"] == NO_FACE and {c["kind"] for c in no_face["items"]} == {"image"}
    assert client.get("/api/items", params={"group": "duplicate"}).json()["total"] == 2 * PER_IMAGE
    assert client.get("/api/items", params={"group": "nope"}).status_code == 400
    assert client.get("/api/items", params={"cls": "happy"}).status_code == 400


def test_page_html_lists_cards_with_lazy_thumbnails(client: TestClient) -> None:
    resp = client.get("/", params={"group": "label_issue"})
    assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
    html = resp.text
    assert html.count('class="card face') == 40 and 'loading="lazy"' in html
    assert "Label issues (40)" in html and "No face (3)" in html
    assert client.get("/static/review.js").status_code == 200
    second = client.get("/", params={"group": "label_issue", "page": 2}).text
    assert second.count('class="card face') == 0 and "Nothing to review" in second


def test_thumbnails_are_small_cached_jpegs(client: TestClient) -> None:
    item = client.get("/api/items?group=label_issue&size=1").json()["items"][0]
    resp = client.get(f"/thumb/face/{item['face_id']}")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert "max-age" in resp.headers["cache-control"]
    img = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and max(img.shape[:2]) <= 96
    assert client.get(f"/thumb/face/{item['face_id']}").content == resp.content
    whole = client.get(f"/image/{item['image_id']}", params={"face": item["face_id"]})
    assert whole.status_code == 200 and whole.content[:2] == b"\xff\xd8"
    assert client.get(f"/thumb/image/{item['image_id']}").status_code == 200
    other = client.get("/api/items?group=label_issue&size=40").json()["items"]
    foreign = next(c for c in other if c["image_id"] != item["image_id"])
    bad = client.get(f"/image/{item['image_id']}", params={"face": foreign["face_id"]})
    assert bad.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/thumb/face/not-a-face",
        "/thumb/face/..%2F..%2Fparams.yaml",
        "/thumb/face/../../params.yaml",
        "/thumb/image/..%2Fparams.yaml",
        "/image/%2Fetc%2Fpasswd",
        "/image/" + "0" * 64,
        "/static/..%2Fapp.py",
    ],
)
def test_unlisted_paths_are_refused(client: TestClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code in (400, 404), (url, resp.status_code)
    assert b"root:" not in resp.content and b"taxonomy" not in resp.content


def test_listed_path_escaping_its_root_is_refused(project: Path) -> None:
    from fer.review.app import create_app
    from fer.review.state import load_state

    (project / "secret.png").write_bytes((project / "data/faces").rglob("*.png").__next__()
                                         .read_bytes())  # fmt: skip
    faces = pd.read_parquet(project / "data/faces.parquet")
    faces.loc[0, "crop_path"] = "data/faces/../../secret.png"
    link = project / "data/faces/link.png"
    os.symlink(project / "secret.png", link)
    faces.loc[1, "crop_path"] = "data/faces/link.png"
    faces.to_parquet(project / "data/faces.parquet", index=False)
    state = load_state(load_config(project / "params.yaml"), project, "tester")
    client = TestClient(create_app(state))
    for k in (0, 1):
        assert client.get(f"/thumb/face/{faces.loc[k, 'face_id']}").status_code == 400
    assert client.get(f"/thumb/face/{faces.loc[2, 'face_id']}").status_code == 200


def test_decisions_are_written_at_once_and_undone(client: TestClient, project: Path) -> None:
    items = client.get("/api/items?group=label_issue&size=3").json()["items"]
    a, b, c = (i["item"] for i in items)
    r = client.post("/api/decide", json={"item": a, "action": "relabel", "label": "neutral"})
    assert r.status_code == 200 and r.json()["decision"]["label"] == "neutral"
    assert [(x["action"], x["label"], x["reviewer"]) for x in rows(project)] == [
        ("relabel", "neutral", "tester")
    ]
    assert rows(project)[0]["box"] and rows(project)[0]["time"].endswith("Z")
    client.post("/api/decide", json={"item": b, "action": "drop"})
    client.post("/api/decide", json={"item": a, "action": "keep"})  # replaces a's row
    assert [x["action"] for x in rows(project)] == ["drop", "keep"]
    bad = client.post("/api/decide", json={"item": c, "action": "relabel", "label": "happy"})
    assert bad.status_code == 409 and "unknown class 'happy'" in bad.json()["detail"]
    assert client.post("/api/decide", json={"item": c, "action": "restore"}).status_code == 400
    assert client.post("/api/decide", json={"item": "zz", "action": "drop"}).status_code == 404
    # a hand edit made while the page is open is kept
    path = project / "review_decisions.csv"
    path.write_text(path.read_text() + f"{sha(b'x')},,drop,,hand,,x/y.jpg,typed\n")
    undo = client.post("/api/undo", json={"items": [a, b]}).json()
    assert undo["undone"] and undo["decisions"][a]["action"] == "relabel"
    assert [x["action"] for x in rows(project)] == ["drop", "drop", "relabel"]
    assert rows(project)[1]["note"] == "typed"
    no_face = client.get("/api/items?group=no_face").json()["items"][0]
    r = client.post("/api/decide", json={"item": no_face["item"], "action": "restore"})
    assert r.status_code == 200 and r.json()["decision"]["box"] == ""
    shown = client.get("/api/items?group=label_issue&size=3").json()["items"]
    assert shown[0]["decision"]["action"] == "relabel" and shown[1]["decision"]["action"] == "drop"
    todo = client.get("/api/items?group=label_issue&todo=1").json()
    assert todo["total"] == N_IMAGES * PER_IMAGE - 2


def test_split_applies_the_decisions(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faces = pd.read_parquet(project / "data/faces.parquet")
    f0, f1, f2 = (faces.iloc[k] for k in (0, 1, 2))
    q = pd.read_csv(project / "data/validation/quarantine.csv", dtype=str)
    lines = [
        ",".join(dec.COLUMNS),
        f"{f0.image_id},{f0.x} {f0.y} {f0.w} {f0.h},relabel,neutral,t,,{f0.path},",
        f"{f1.image_id},{f1.x + 2} {f1.y} {f1.w} {f1.h},keep,,t,,{f1.path},",
        f"{f2.image_id},,not_face,,t,,{f2.path},",
        f"{q.image_id[0]},,restore,,t,,{q.path[0]},",
        f"{sha(b'gone')},,drop,,t,,sad/gone.jpg,",
    ]
    (project / "review_decisions.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(project)
    assert main(["split"]) == 0
    splits = pd.read_parquet(project / "data/splits.parquet").set_index("face_id")
    assert splits.loc[f0.face_id, "label"] == "neutral"
    assert splits.loc[f1.face_id, "label"] == f1.label  # kept despite validate's exclude
    assert f2.face_id not in splits.index and faces.iloc[3].face_id not in splits.index
    assert len(splits) == 2  # every other face is a label issue with action exclude
    assert (project / "review_decisions.csv").read_text() == "\n".join(lines) + "\n"


def test_split_stage_output_reports_vanished(project: Path, monkeypatch, capsys) -> None:
    gone = sha(b"gone")
    faces = pd.read_parquet(project / "data/faces.parquet")
    keep = [f"{iid},,keep,,t,,," for iid in faces["image_id"].unique()[:8]]
    (project / "review_decisions.csv").write_text(
        "\n".join([",".join(dec.COLUMNS), f"{gone},,drop,,t,,sad/gone.jpg,", *keep]) + "\n"
    )
    monkeypatch.chdir(project)
    from fer.stages import split

    result = split.run(load_config("params.yaml"))
    assert [r["path"] for r in result["review"]["vanished"]] == ["sad/gone.jpg"]
    assert "1 decision(s) kept but unused (image no longer in the data)" in capsys.readouterr().out


def test_bad_decisions_file_stops_split_with_one_line(project: Path, monkeypatch, capsys) -> None:
    (project / "review_decisions.csv").write_text(
        ",".join(dec.COLUMNS) + f"\n{sha(b'a')},,explode,,t,,a.jpg,\n"
    )
    monkeypatch.chdir(project)
    assert main(["split"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "fer split: error: review_decisions.csv line 2: unknown action 'explode' "
        "(one of: keep, relabel, drop, not_face, restore)"
    )


def test_migrate_restore_list(project: Path, monkeypatch, capsys) -> None:
    q = pd.read_csv(project / "data/validation/quarantine.csv", dtype=str)
    (project / "quarantine_restore.txt").write_text(
        f"# old list\n{q.path[0]}\nnot/listed.jpg  # typo\n"
    )
    monkeypatch.chdir(project)
    assert main(["review", "--migrate-restore-list", "--reviewer", "mig"]) == 0
    out = capsys.readouterr().out
    assert (
        "1 restore row(s) added" in out and "not in the manifest (left out): not/listed.jpg" in out
    )
    got = rows(project)
    assert [(r["image_id"], r["action"], r["path"], r["reviewer"]) for r in got] == [
        (q.image_id[0], "restore", q.path[0], "mig")
    ]
    assert main(["review", "--migrate-restore-list"]) == 0  # idempotent
    assert len(rows(project)) == 1
    assert (project / "quarantine_restore.txt").exists()


def test_validation_report_says_how_to_review() -> None:
    from fer.validation import report

    html = report.render_html([], {"gate_passed": 1})
    assert "fer review" in html and report.REVIEW_URL in html
    text = report.summary_text([], {"label_issues": 3}, "r.html")
    assert "`fer review` opens http://127.0.0.1:8765/" in text
    assert "fer review" not in report.summary_text([], {"label_issues": 0}, "r.html")

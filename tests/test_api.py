"""`fer api` and the pyfunc's input handling, tried as a hostile client would.

A tiny baseline is trained by fer's train stage; `fer api` serves it from a subprocess on
127.0.0.1 (real uvicorn, real HTTP). The pyfunc tests load the same model without a server and
prove that a path named in a request is never opened, nor even stat'ed, unless it lies inside
the allow-listed ``FER_IMAGE_DIR``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import httpx
import numpy as np
import pandas as pd
import pytest
from test_predict import train_tiny_model

from fer import CLASSES
from fer.ui import free_port, stop_processes

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MAX_BYTES = 1024 * 1024  # the server under test refuses bodies over this


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    assert ok
    return buf.tobytes()


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("api_train"))


@pytest.fixture(scope="module")
def photo() -> bytes:
    """The astronaut (one face) as a JPEG."""
    import skimage.data

    return _jpeg(skimage.data.astronaut())


# --- the pyfunc: paths are refused unless allow-listed (no server) ------------------------------


class FileSpy:
    """Records every open (audit hook) and stat/lstat (wrapping the real functions) of a
    path containing ``needle`` while active: a spy, the calls still happen as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, needle: str) -> None:
        self.needle, self.seen, self.active = needle, [], False
        sys.addaudithook(self._audit)  # hooks cannot be removed: inert once inactive
        for name in ("stat", "lstat"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(name, real))

    def _hit(self, event: str, path: Any) -> None:
        if not self.active or not isinstance(path, str | bytes | os.PathLike):
            return
        name = os.fsdecode(path)
        if self.needle in name:
            self.seen.append((event, name))

    def _audit(self, event: str, args: tuple) -> None:
        if event == "open" and args:
            self._hit(event, args[0])

    def _wrap(self, name: str, real: Any) -> Any:
        def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
            self._hit(name, path)
            return real(path, *args, **kwargs)

        return spy

    def __enter__(self) -> FileSpy:
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False


@pytest.fixture(scope="module")
def pyfunc(model_dir: Path) -> Any:
    """The MLflow pyfunc's class, loaded from the model's artifacts as MLflow would."""
    from fer.prediction.serving import FacePyfunc

    model = FacePyfunc()
    model.load_context(SimpleNamespace(artifacts={"weights": str(model_dir / "model.pt")}))
    return model


def test_image_bytes_never_touches_a_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fer.prediction.serving import image_bytes

    monkeypatch.delenv("FER_IMAGE_DIR", raising=False)
    secret = tmp_path / "secret_photo.png"
    secret.write_bytes(_png(np.full((64, 64, 3), 90, np.uint8)))
    with FileSpy(monkeypatch, "secret_photo") as spy:
        for text in (str(secret), f"{tmp_path.name}/../{tmp_path.name}/secret_photo.png",
                     "file://" + str(secret), "~/secret_photo.png"):  # fmt: skip
            with pytest.raises(ValueError, match="not valid base64"):
                image_bytes(text)
    assert spy.seen == []
    # Base64 (plain, with line breaks, URL-safe, data URL) and bytes still work.
    data = secret.read_bytes()
    b64 = base64.b64encode(data).decode()
    assert image_bytes(b64) == image_bytes(data) == data
    assert image_bytes("\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))) == data
    assert image_bytes(base64.urlsafe_b64encode(data).decode()) == data
    assert image_bytes("data:image/png;base64," + b64) == data


def test_pyfunc_refuses_server_paths_row_by_row(
    pyfunc: Any, photo: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FER_IMAGE_DIR", raising=False)
    secret = tmp_path / "secret_face.jpg"
    secret.write_bytes(photo)  # a real face: had it been read, the row would have faces
    rows = [str(secret), base64.b64encode(photo).decode(), "../../../etc/passwd", "/etc/passwd"]
    with FileSpy(monkeypatch, "secret_face") as spy:
        out = pyfunc.predict(None, pd.DataFrame({"image": rows}))
    assert spy.seen == [], spy.seen
    assert out["error"][0].startswith("bad_input: not valid base64") and out["faces"][0] == "[]"
    assert "FER_IMAGE_DIR is not set" in out["error"][0]
    assert out["error"][1] == "" and len(json.loads(out["faces"][1])) == 1
    assert out["error"][2].startswith("bad_input") and out["error"][3].startswith("bad_input")


def test_pyfunc_allow_list(
    pyfunc: Any, photo: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside_dir"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "sub" / "face.jpg").write_bytes(photo)
    (outside / "face.jpg").write_bytes(photo)
    (allowed / "link.jpg").symlink_to(outside / "face.jpg")
    monkeypatch.setenv("FER_IMAGE_DIR", str(allowed))
    ok = ["sub/face.jpg", str(allowed / "sub" / "face.jpg"), "sub/../sub/face.jpg"]
    lexically_out = [
        "../outside_dir/face.jpg",
        str(outside / "face.jpg"),
        "sub/../../outside_dir/face.jpg",
    ]
    with FileSpy(monkeypatch, "outside_dir") as spy:
        out = pyfunc.predict(None, pd.DataFrame({"image": ok + lexically_out}))
    assert spy.seen == [], spy.seen  # not even a stat outside the folder
    for i in range(len(ok)):
        assert out["error"][i] == "" and len(json.loads(out["faces"][i])) == 1, out["error"][i]
    for i in range(len(ok), len(out)):
        assert out["error"][i].startswith("bad_input: not valid base64, nor a file inside")
    out = pyfunc.predict(None, pd.DataFrame({"image": ["link.jpg", "missing.jpg"]}))
    assert list(out["error"].str.split(":").str[0]) == ["bad_input", "bad_input"]


def test_pyfunc_survives_concurrent_calls(model_dir: Path, photo: bytes, tmp_path: Path) -> None:
    """`mlflow models serve` calls predict from a thread pool; OpenCV's detector network
    crashed the process (SIGSEGV) when two threads ran it at once. In a subprocess, so that a
    crash fails this test instead of ending the test run."""
    (tmp_path / "photo.jpg").write_bytes(photo)
    script = (
        "import base64, sys, types\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import pandas as pd\n"
        "from fer.prediction.serving import FacePyfunc\n"
        "m = FacePyfunc()\n"
        "m.load_context(types.SimpleNamespace(artifacts={'weights': sys.argv[1]}))\n"
        "b64 = base64.b64encode(open(sys.argv[2], 'rb').read()).decode()\n"
        "df = pd.DataFrame({'image': [b64]})\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    out = list(pool.map(lambda _: m.predict(None, df), range(16)))\n"
        "print(sorted({o['error'][0] for o in out}), len(out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script, str(model_dir / "model.pt"), str(tmp_path / "photo.jpg")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert res.stdout.strip().splitlines()[-1] == "[''] 16"


# --- `fer api` over real HTTP --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`fer api` in a subprocess on 127.0.0.1, with a 1 MiB body limit and no image folder."""
    tmp = tmp_path_factory.mktemp("api_server")
    port = free_port()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("FER_IMAGE_DIR", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp / "api.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "fer"), "--params", str(REPO / "params.yaml"), "api", "--model",
         str(model_dir), "--port", str(port), "--max-bytes", str(MAX_BYTES)],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp / "api.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "fer api not up in 90 s"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=60) as client:
            yield {"proc": proc, "port": port, "client": client, "log": tmp / "api.log"}
    finally:
        stop_processes([proc])
        log.close()


def _check_faces(faces: list[dict], n: int) -> None:
    assert len(faces) == n
    for face in faces:
        assert set(face) == {"box", "score", "probs", "label"}
        assert list(face["probs"]) == list(CLASSES)
        assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert face["label"] == max(face["probs"], key=face["probs"].get)


@pytest.mark.slow
def test_health_predict_and_invocations(server: dict, photo: bytes, model_dir: Path) -> None:
    client = server["client"]
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": str(model_dir), "arch": "baseline"}

    raw = client.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    _check_faces(raw.json()["faces"], 1)
    form = client.post("/predict", files={"image": ("a.jpg", photo, "image/jpeg")})
    assert form.status_code == 200 and form.json() == raw.json()

    rows = [{"image": base64.b64encode(photo).decode()}, {"image": "not base64!"}]
    inv = client.post("/invocations", json={"dataframe_records": rows})
    assert inv.status_code == 200, inv.text
    first, second = inv.json()["predictions"]
    assert first["error"] == "" and json.loads(first["faces"]) == raw.json()["faces"]
    assert second["error"].startswith("bad_input") and second["faces"] == "[]"
    split = {"columns": ["image"], "data": [[rows[0]["image"]]]}
    assert client.post("/invocations", json={"dataframe_split": split}).json() == {
        "predictions": [first]
    }


def _raw_request(port: int, head: str, body_chunks: Iterable[bytes] = ()) -> tuple[bytes, int]:
    """Send a hand-written request (head, then chunks until the server stops taking them);
    return the server's answer (status line, headers, body) and the body bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1"))
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server cut the body and closed
            return b"", sent
        return _read_answer(sock), sent


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer: the head, then as many body bytes as its Content-Length says."""
    answer = b""
    while b"\r\n\r\n" not in answer and (part := sock.recv(65536)):
        answer += part
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    lengths = [
        ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.startswith(b"content-length:")
    ]
    while len(answer) - len(head) - 4 < int(lengths[0] if lengths else 0) and (
        part := sock.recv(65536)
    ):
        answer += part
    return answer


def _chunked(n: int, size: int = 64 * 1024, end: bool = True) -> Iterator[bytes]:
    chunk = os.urandom(size)
    for _ in range(n):
        yield b"%x\r\n%s\r\n" % (size, chunk)
    if end:
        yield b"0\r\n\r\n"


HEAD = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"


@pytest.mark.slow
def test_oversized_body_refused_before_it_is_read(server: dict) -> None:
    """A Content-Length over the limit gets 413 though not one byte of the body was sent;
    a declared body this large (over 4x the limit) also has its connection closed."""
    start = time.monotonic()
    answer, _ = _raw_request(server["port"], HEAD + "Content-Length: 50000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower() and b'"error":"too_large"' in answer
    assert time.monotonic() - start < 10


@pytest.mark.slow
def test_oversized_body_sent_whole_still_gets_its_413(server: dict) -> None:
    """Clients that send the body before reading (httpx, requests) read the 413, not a reset."""
    resp = server["client"].post(
        "/predict", content=os.urandom(2 * MAX_BYTES), headers={"Content-Type": "image/jpeg"}
    )
    assert resp.status_code == 413 and resp.json()["error"] == "too_large"


@pytest.mark.slow
def test_chunked_oversized_body_cut_at_the_limit(server: dict) -> None:
    n = MAX_BYTES // (64 * 1024) + 2  # just past the limit
    answer, _ = _raw_request(server["port"], HEAD + "Transfer-Encoding: chunked\r\n\r\n",
                             _chunked(n))  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error":"too_large"' in answer


@pytest.mark.slow
def test_chunked_flood_is_cut(server: dict) -> None:
    """A body that never ends: the server drains a bounded amount, then closes the connection."""
    total = 64 * MAX_BYTES
    _, sent = _raw_request(server["port"], HEAD + "Transfer-Encoding: chunked\r\n\r\n",
                           _chunked(total // (64 * 1024), end=False))  # fmt: skip
    assert sent < total / 2, f"the server took {sent} bytes of an endless body"


def _one_pixel_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    return buf.getvalue()


HOSTILE = [
    # (name, path, headers, body, expected status, expected error)
    ("empty body", "/predict", {"Content-Type": "image/jpeg"}, b"", 400, "empty_body"),
    ("wrong content type", "/predict", {"Content-Type": "text/plain"}, b"hello", 415,
     "unsupported_media_type"),
    ("json to /predict", "/predict", {"Content-Type": "application/json"}, b"{}", 415,
     "unsupported_media_type"),
    ("image to /invocations", "/invocations", {"Content-Type": "image/jpeg"}, b"\xff\xd8", 415,
     "unsupported_media_type"),
    ("bad JSON", "/invocations", {"Content-Type": "application/json"}, b'{"dataframe_records":',
     400, "bad_json"),
    ("deep JSON", "/invocations", {"Content-Type": "application/json"}, b"[" * 200_000, 400,
     "bad_json"),
    ("not MLflow's format", "/invocations", {"Content-Type": "application/json"}, b"[1, 2]",
     422, "bad_format"),
    ("missing image field", "/invocations", {"Content-Type": "application/json"},
     b'{"dataframe_records": [{"img": "abc"}]}', 422, "missing_field"),
    ("missing multipart field", "/predict", None, None, 422, "missing_field"),
    ("too many rows", "/invocations", {"Content-Type": "application/json"},
     json.dumps({"dataframe_records": [{"image": "x"}] * 33}).encode(), 413, "too_many_rows"),
    ("1x1 PNG", "/predict", {"Content-Type": "image/png"}, "one_pixel", 422, "too_small"),
    ("truncated JPEG", "/predict", {"Content-Type": "image/jpeg"}, "truncated", 422,
     "truncated"),
    ("not an image", "/predict", {"Content-Type": "image/jpeg"}, b"this is not an image", 422,
     "not_an_image"),
    ("30000x30000 PNG header", "/predict", {"Content-Type": "image/png"},
     _png_header(30000, 30000), 413, "decompression_bomb"),
    ("unknown route", "/admin", {"Content-Type": "image/png"}, b"x", 404, "not_found"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "error"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_input_gets_its_4xx(
    server: dict, photo: bytes, path: str, headers: dict | None, body: Any, status: int, error: str
) -> None:
    client = server["client"]
    if body is None:  # multipart without the field 'image'
        resp = client.post(path, files={"picture": ("a.jpg", photo, "image/jpeg")})
    else:
        content = {"one_pixel": _one_pixel_png(), "truncated": photo[: len(photo) // 2]}.get(
            body, body
        )
        resp = client.post(path, content=content, headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert set(doc) == {"error", "detail"} and doc["error"] == error, doc
    assert "Traceback" not in resp.text and "/site-packages/" not in resp.text


@pytest.mark.slow
def test_server_path_in_a_row_is_not_read(server: dict, photo: bytes, tmp_path: Path) -> None:
    secret = tmp_path / "face_on_the_server.jpg"
    secret.write_bytes(photo)  # a real face outside any allow-list: read, it would have faces
    rows = [{"image": str(secret)}, {"image": "../../../../etc/passwd"}]
    resp = server["client"].post("/invocations", json={"dataframe_records": rows})
    assert resp.status_code == 200
    for row in resp.json()["predictions"]:
        assert row["faces"] == "[]" and row["error"].startswith("bad_input: not valid base64")


@pytest.mark.slow
def test_server_survived_everything(server: dict, photo: bytes) -> None:
    """Run last in this module: after all of the above the same process still serves."""
    client = server["client"]
    assert server["proc"].poll() is None
    assert client.get("/health").status_code == 200
    resp = client.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"})
    assert resp.status_code == 200 and len(resp.json()["faces"]) == 1
    assert "Traceback" not in server["log"].read_text()


def test_app_factory_builds_from_the_environment(
    model_dir: Path, photo: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fer api --workers N` hands the settings to each worker process through the
    environment, where uvicorn calls the factory: here uvicorn runs it on a thread."""
    import threading

    import uvicorn

    from fer.config import load_config
    from fer.prediction import api

    cfg = load_config(REPO / "params.yaml")
    settings = api.settings_from_config(cfg, model_dir, "models:/x@y", workers=2, max_rows=1)
    monkeypatch.setenv(api.SETTINGS_ENV, settings.to_json())
    assert api.ApiSettings.from_env() == settings
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        "fer.prediction.api:create_app", factory=True, host="127.0.0.1", port=port,
        http="h11", log_level="warning",
    ))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/health").json()["model"] == "models:/x@y"
            rows = [{"image": base64.b64encode(photo).decode()}] * 2
            resp = client.post("/invocations", json={"dataframe_records": rows})
            assert resp.status_code == 413 and resp.json()["error"] == "too_many_rows"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_fer_api_stops_with_one_line_when_the_model_does_not_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fer.cli import main

    code = main(["--params", str(REPO / "params.yaml"), "api", "--model", str(tmp_path / "no")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fer api: error: --model")

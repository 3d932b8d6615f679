"""The registered model in use: `fer predict`'s default (the registry alias), the resolution
order, and the logged pyfunc behind `mlflow models serve` on 127.0.0.1.

A tiny baseline is trained by fer's train stage with tracking on, so a real sqlite store in
tmp_path holds the run, the logged pyfunc and ``fer-classifier@champion``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_predict import photos

from fer import CLASSES
from fer.config import Config
from fer.errors import ModelError
from fer.ui import free_port

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, fake_project) -> tuple[Path, Config]:
    """A trained, logged and registered model in a fresh sqlite store; returns (root, cfg)."""
    from fer.stages import train

    root = tmp_path_factory.mktemp("served")
    old, env = Path.cwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    try:
        tracking = {
            "uri": f"sqlite:///{root}/mlflow.db",
            "artifact_location": str(root / "mlruns"),
        }
        # Real images (not the sandbox's): a model trained on them may become the champion.
        params = {"train": {"epochs": 1}, "tracking": tracking, "ingest": {"raw_dir": "photos"}}
        cfg = fake_project(root, "train", n_faces=18, params=params).config
        result = train.run(cfg, model="baseline", resume=False)
    finally:
        os.chdir(old)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # set by mlflow itself
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env
    assert result["champion"] is True
    return root, cfg


@pytest.fixture
def no_env_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_default_is_registry_alias(project: tuple[Path, Config], no_env_uri: None) -> None:
    from fer.prediction.model_resolution import resolve_model

    root, cfg = project
    resolved = resolve_model(cfg, None)
    assert resolved.how == "mlflow" and resolved.source == "models:/fer-classifier@champion"
    assert (resolved.path / "model.pt").read_bytes() == (
        root / "models" / "baseline" / "model.pt"
    ).read_bytes()
    assert root / "mlruns" in resolved.path.parents  # local store: used in place, no copy


def test_explicit_local_dir_wins(
    project: tuple[Path, Config], no_env_uri: None, tmp_path: Path
) -> None:
    from fer.prediction.model_resolution import resolve_model

    root, cfg = project
    other = tmp_path / "other"
    shutil.copytree(root / "models" / "baseline", other)
    resolved = resolve_model(cfg, str(other))
    assert (resolved.path, resolved.how) == (other, "local")


def test_registry_uris_and_fallback(project: tuple[Path, Config], no_env_uri: None) -> None:
    from fer.prediction.model_resolution import resolve_model

    root, cfg = project
    assert (resolve_model(cfg, "models:/fer-classifier/1").path / "model.pt").is_file()
    with pytest.raises(ModelError, match=r"models:/fer-classifier@nosuchalias"):
        resolve_model(cfg, "models:/fer-classifier@nosuchalias")
    with pytest.raises(ModelError, match=r"runs:/0123456789abcdef/model"):
        resolve_model(cfg, "runs:/0123456789abcdef/model")
    # Without a champion, the default fails in one line naming it: never a silent switch...
    bare = cfg.model_copy(
        update={
            "predict": cfg.predict.model_copy(update={"model": "models:/no-such-model@champion"}),
            "train": cfg.train.model_copy(
                update={"out_dir": root / "models", "model": "baseline"}
            ),
        }
    )
    with pytest.raises(ModelError, match=r"predict.model models:/no-such-model@champion"):
        resolve_model(bare, None)
    # ... unless the user named a fallback.
    chosen = bare.model_copy(
        update={"predict": bare.predict.model_copy(update={"fallback": "baseline"})}
    )
    resolved = resolve_model(chosen, None)
    assert (resolved.how, resolved.path) == ("fallback", root / "models" / "baseline")


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return resp.status
    except (urllib.error.URLError, OSError):
        return 0


@pytest.mark.slow
def test_mlflow_models_serve_round_trip(project: tuple[Path, Config], tmp_path: Path) -> None:
    root, _ = project
    port = free_port()
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # mlflow execs uvicorn from the venv
        MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", "models:/fer-classifier@champion",
         "--host", "127.0.0.1", "-p", str(port), "--env-manager", "local"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while _get(f"http://127.0.0.1:{port}/ping") != 200:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server not up in 90 s"
            time.sleep(1)
        images = photos(tmp_path / "in")
        payload = {
            "dataframe_records": [
                {"image": base64.b64encode(images["astronaut"].read_bytes()).decode()},
                {"image": base64.b64encode(images["corrupt"].read_bytes()).decode()},
                {"image": base64.b64encode(images["blank"].read_bytes()).decode()},
            ]
        }
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = json.loads(resp.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    rows = body["predictions"]
    assert len(rows) == 3
    faces = json.loads(rows[0]["faces"])
    assert rows[0]["error"] == "" and len(faces) >= 1
    for face in faces:
        x, y, w, h = face["box"]
        assert 0 <= x < x + w <= 512 and 0 <= y < y + h <= 512
        assert list(face["probs"]) == list(CLASSES)
        assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert face["label"] == max(face["probs"], key=face["probs"].get)
    assert json.loads(rows[1]["faces"]) == [] and rows[1]["error"].startswith("truncated")
    assert json.loads(rows[2]["faces"]) == [] and rows[2]["error"] == ""

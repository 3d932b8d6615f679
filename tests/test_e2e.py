"""End to end through real DVC: a fresh project copy builds, re-runs nothing, and re-runs only
what a params change touches; a local remote round-trips the outputs into another clone."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from fer.config import load_config
from tests.kit import BIN, metric_columns, sh

pytestmark = pytest.mark.slow
DVC = str(BIN / "dvc")


def ran_stages(output: str) -> set[str]:
    """Stage names that `dvc repro` actually ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def built(tmp_path_factory, project_copy) -> Path:
    project = project_copy(tmp_path_factory.mktemp("e2e") / "proj")
    audit = {"FER_PARAMS_AUDIT": str(project.parent / "params_read.jsonl")}
    out = sh(project, DVC, "repro", extra_env=audit).stdout
    assert {"sample", "ingest", "detect", "validate", "split"} <= ran_stages(out)
    assert {"train@alexnet", "train@baseline", "evaluate@alexnet", "evaluate@baseline"} <= (
        ran_stages(out)
    )
    return project


def test_fresh_clone_builds_every_output(built: Path) -> None:
    for rel in [
        "data/sandbox", "data/sample_truth.csv", "data/manifest.parquet", "data/faces.parquet",
        "data/detections.parquet", "data/validation/quarantine.csv", "data/splits.parquet",
        "models/alexnet/model.pt", "models/baseline/model.pt", "metrics/alexnet.json",
        "metrics/baseline.json", "metrics/detect.json", "metrics/validate.json",
        "plots/alexnet/confusion.csv", "plots/alexnet/history.csv",
        "metrics/details/alexnet.json", "metrics/details/detect.json",
        "metrics/details/validate.json", "models/faceexpr-zeroshot/model.pt",
    ]:  # fmt: skip
        assert (built / rel).exists(), rel
    shown = json.loads(sh(built, DVC, "metrics", "show", "--json").stdout)
    files = shown[""]["data"]  # {"": {"data": {path: {"data": {...}}}}} for the workspace
    columns = {path: metric_columns(doc["data"]) for path, doc in files.items()}
    models = load_config(built / "params.yaml").train.models
    assert set(columns) == {f"metrics/{name}.json" for name in [*models, "detect", "validate"]}
    for model in models:
        assert {"accuracy", "macro_f1", "true_label_accuracy"} <= columns[f"metrics/{model}.json"]
    assert {"box_precision", "box_recall", "box_f1"} <= columns["metrics/detect.json"]
    assert {"gate_passed", "auditor_accuracy", "mislabel_f1"} <= columns["metrics/validate.json"]
    assert len(set().union(*columns.values())) <= 25, columns  # one readable table


def test_report_after_the_pipeline_shows_every_model(built: Path) -> None:
    sh(built, str(BIN / "fer"), "report")  # `make run` runs it after `dvc repro`
    report = (built / "reports/report.md").read_text()
    for model in load_config(built / "params.yaml").train.models:
        accuracy = json.loads((built / f"metrics/{model}.json").read_text())["accuracy"]
        assert re.search(rf"^\| {model} \| \d+ \| {accuracy:.3f} \|", report, re.M), report
    assert "data:image/png;base64," in (built / "reports/report.html").read_text()
    assert re.search(r"^\| alexnet \|.*\| \d+ \|$", report, re.M)  # its training time, in s


def test_after_a_sandbox_run_fer_predict_answers_with_a_real_face_model(built: Path) -> None:
    """The sandbox's models (AlexNet, the baseline, mini-Xception fine-tuned on drawn faces) are
    registered but never the champion: the default `fer predict` answers with FaceExpressionNet
    as shipped, the one model of the run that has learned from real faces."""
    models = load_config(built / "params.yaml").train.models
    assert "faceexpr-zeroshot" in models and "alexnet" in models
    image = next((built / "data/sandbox").rglob("*.jpg"))
    proc = sh(built, str(BIN / "fer"), "predict", str(image), "--json")
    assert "model: models:/fer-classifier@champion" in proc.stderr
    assert ", faceexpr)" in proc.stderr, proc.stderr  # the architecture behind the alias
    assert json.loads(proc.stdout)[0]["faces"]
    ok = sh(built, str(BIN / "fer"), "predict", str(image), "--json", "--model", "alexnet")
    assert json.loads(ok.stdout)  # asked for by name, a sandbox model still answers


def test_every_stage_declares_the_params_it_read(built: Path) -> None:
    """Each `fer` command of the real `dvc repro` above recorded the params keys it read;
    dvc.yaml must list each (or a section above it) for that stage."""
    from tests.pipeline_truth import key_declared, stage_entries

    entries = stage_entries(built)
    by_cmd = {e["cmd"]: name for name, e in entries.items()}
    lines = (built.parent / "params_read.jsonl").read_text().splitlines()
    seen = set()
    for line in lines:
        record = json.loads(line)
        stage = by_cmd["fer " + " ".join(record["argv"])]
        seen.add(stage)
        declared = entries[stage]["params"]
        missing = [k for k in record["read"] if not key_declared(k, declared)]
        assert not missing, f"stage {stage!r} read params dvc.yaml does not list: {missing}"
    assert seen == set(entries)


def test_second_repro_does_nothing(built: Path) -> None:
    """Only ingest looks at the image folder again (always: DVC does not hash it); its
    manifest is byte for byte the same, so nothing after it runs."""
    manifest = (built / "data/manifest.parquet").read_bytes()
    out = sh(built, DVC, "repro").stdout
    assert ran_stages(out) == {"ingest"}, out
    assert (built / "data/manifest.parquet").read_bytes() == manifest
    assert json.loads(sh(built, DVC, "status", "--json").stdout) == {"ingest": ["always changed"]}


def test_lr_change_reruns_only_train_and_evaluate(built: Path) -> None:
    from fer.params_edit import apply_overrides

    apply_overrides(built / "params.yaml", ["train.lr=0.0005"])
    try:
        out = sh(built, DVC, "repro").stdout
        models = load_config(built / "params.yaml").train.models
        cfg = load_config(built / "params.yaml")
        # Every training reruns; an evaluation only where the model changed: a model with its
        # own lr (models.<name>.lr) retrains to the same bytes, so its evaluation is skipped.
        changed = [m for m in models if cfg.model_spec(m).lr is None]
        expected = {f"train@{m}" for m in models} | {f"evaluate@{m}" for m in changed}
        expected |= {"ingest"}
        assert ran_stages(out) == expected, out
        diff = sh(built, DVC, "params", "diff", "--json").stdout
        assert "train.lr" in diff
    finally:
        sh(built, "git", "checkout", "--", "params.yaml")
        sh(built, DVC, "repro")


def test_local_remote_push_pull_into_another_clone(built: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    sh(built, DVC, "remote", "add", "-f", "-d", "local", str(remote))
    sh(built, "git", "add", "-A")
    sh(built, "git", "commit", "-qm", "pipeline outputs", check=False)
    sh(built, DVC, "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(built), str(clone))
    shutil.copytree(built / "weights", clone / "weights")  # what `make setup` fetches
    sh(clone, DVC, "pull")
    for rel in ["data/manifest.parquet", "data/splits.parquet", "models/alexnet/model.pt"]:
        assert (clone / rel).read_bytes() == (built / rel).read_bytes(), rel
    assert ran_stages(sh(clone, DVC, "repro").stdout) == {"ingest"}  # same manifest: no more
    shutil.rmtree(clone)


# --- Prefect: the same stages as flow runs, through DVC ------------------------------------


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_prefect_pipeline_after_dvc_repro_does_no_duplicate_work(
    built: Path, prefect_harness, monkeypatch
) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline

    monkeypatch.chdir(built)
    state = pipeline(return_state=True)
    assert state.is_completed(), state
    results = state.result()
    assert {r["stage"] for r in results} >= {"detect", "train@alexnet", "evaluate@baseline"}
    assert all(r["action"] == "up to date" for r in results if r["stage"] != "ingest"), results

    async def task_runs():
        async with get_client() as client:
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

            flt = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            return await client.read_task_runs(flow_run_filter=flt)

    runs = asyncio.run(task_runs())
    names = {r.name for r in runs}
    assert {"sample", "validate", "train@alexnet"} <= names
    assert all(r.state.is_completed() for r in runs)


def test_fer_pipeline_cli_runs_on_its_own_temporary_server(built: Path) -> None:
    import socket

    proc = sh(built, str(BIN / "fer"), "pipeline")
    out = proc.stdout + proc.stderr
    match = re.search(r"temporary server on http://127\.0\.0\.1:(\d+)/api", out)
    assert match, out
    rows = [line.split() for line in out.splitlines() if line.startswith(("sample", "evaluate@"))]
    models = load_config(built / "params.yaml").train.models
    assert len(rows) == 1 + len(models) and all(r[1:3] == ["up", "to"] for r in rows), out
    assert "Error logging to API" not in out
    with socket.socket() as sock:  # the server went away with the run
        assert sock.connect_ex(("127.0.0.1", int(match.group(1)))) != 0


# --- The UIs, in a real browser --------------------------------------------------------------


@pytest.fixture
def server(built: Path, tmp_path: Path):
    """Start a server process in the built project; stop it after the test."""
    import subprocess

    from fer.ui import stop_processes
    from tests.kit import env

    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], **extra: str) -> subprocess.Popen:
        log = open(tmp_path / f"server{len(procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            cmd, cwd=built, env={**env(built), **extra}, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    yield start
    stop_processes(procs, timeout=20)


def test_mlflow_ui_shows_both_models_with_accuracy(built: Path, server, tmp_path: Path) -> None:
    import urllib.parse

    from mlflow.tracking import MlflowClient

    from fer.config import load_config
    from fer.ui import free_port, mlflow_ui_command
    from tests.browser import chromium, render, wait_http

    chromium()
    cfg = load_config(built / "params.yaml")
    client = MlflowClient(tracking_uri=f"sqlite:///{built / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    runs = client.search_runs([exp_id], filter_string="tags.stage = 'train'")
    # A retraining that gave the same bytes (a model with its own lr, after the lr change
    # above) is not evaluated again: DVC skips its evaluation, so that run has no test metrics.
    runs = [r for r in runs if "test_accuracy" in r.data.metrics]
    assert {r.data.tags["model"] for r in runs} >= {"alexnet", "baseline"}
    port = free_port()
    server(mlflow_ui_command(cfg, "127.0.0.1", port))
    wait_http(f"http://127.0.0.1:{port}/health")
    ids = urllib.parse.quote(json.dumps([r.info.run_id for r in runs]))
    exp = urllib.parse.quote(json.dumps([exp_id]))
    url = f"http://127.0.0.1:{port}/#/compare-runs?runs={ids}&experiments={exp}"
    dom = render(url, screenshot=tmp_path / "mlflow.png")
    for needle in ("alexnet", "baseline", "test_accuracy"):
        assert needle in dom, needle
    for r in runs:  # each model's accuracy is on the page (shown full or rounded)
        value = r.data.metrics["test_accuracy"]
        assert str(value)[:4] in dom or f"{value:.2f}" in dom, value


def test_served_deployment_runs_and_prefect_ui_shows_it(built: Path, server, tmp_path) -> None:
    import time

    import httpx

    from fer.ui import free_port
    from tests.browser import chromium, render, wait_http

    chromium()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api}
    server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
           **home)  # fmt: skip
    wait_http(f"{api}/health", timeout=120)
    server([str(BIN / "fer"), "serve"], **home)
    deadline = time.monotonic() + 120
    while not any(d["name"] == "fer" for d in httpx.post(f"{api}/deployments/filter").json()):
        assert time.monotonic() < deadline, "deployment never registered"
        time.sleep(1)
    proc = sh(built, str(BIN / "prefect"), "deployment", "run", "pipeline/fer", "--watch",
              "--watch-timeout", "600", check=False, extra_env=home)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flows = httpx.post(f"{api}/flow_runs/filter", json={}).json()
    run = next(f for f in flows if f["deployment_id"])
    assert run["state_type"] == "COMPLETED"
    dom = render(f"http://127.0.0.1:{port}/runs/flow-run/{run['id']}",
                 screenshot=tmp_path / "prefect.png")  # fmt: skip
    assert run["name"] in dom
    assert "train@alexnet" in dom or "sample" in dom

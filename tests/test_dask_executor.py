"""`fer detect` with ``executor: dask``: Prefect tasks on a real Dask LocalCluster.

Real SSD, real files, a real Prefect server (``prefect_test_harness``) with its own home.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_detect_stage import _config, project  # noqa: F401  (the fixture is used by name)

from fer.stages import detect


def _noop(x: int) -> int:
    return x


def noop_task():
    """A Prefect task that does nothing (built on use: Prefect is imported lazily)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(_noop, name="noop", persist_result=False, cache_policy=NO_CACHE)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A throw-away Prefect server and home for this module's flow runs."""
    old = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        if old is None:
            os.environ.pop("PREFECT_HOME", None)
        else:
            os.environ["PREFECT_HOME"] = old


def _outputs(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, bytes]]:
    """Tables and crops of one run, with crop paths made relative to its crops dir."""
    faces = pd.read_parquet(root / "faces.parquet")
    faces["crop_path"] = [Path(p).relative_to(root / "crops").as_posix() for p in faces.crop_path]
    crops = {
        p.relative_to(root / "crops").as_posix(): p.read_bytes()
        for p in (root / "crops").rglob("*.png")
    }
    return pd.read_parquet(root / "detections.parquet"), faces, crops


def _run(root: Path, name: str, **detect_overrides: object) -> dict:
    out = root / name
    cfg = _config(
        root,
        faces=str(out / "faces.parquet"),
        images=str(out / "detections.parquet"),
        crops_dir=str(out / "crops"),
        cache_dir=str(out / "cache"),
        **detect_overrides,
    )
    return detect.run(cfg)


def test_dask_executor_matches_local(project: Path, prefect_server: None) -> None:  # noqa: F811
    local = _run(project, "local", workers=2)
    dask = _run(project, "dask", workers=2, executor="dask")
    assert dask["detected"] == local["detected"] == 5  # 6 ok files, one exact duplicate
    assert dask["errors"] == local["errors"] == 1  # the corrupt file, recorded as such
    det_l, faces_l, crops_l = _outputs(project / "local")
    det_d, faces_d, crops_d = _outputs(project / "dask")
    pd.testing.assert_frame_equal(det_d, det_l)
    pd.testing.assert_frame_equal(faces_d, faces_l)
    # Exact duplicates share one crop file.
    assert len(faces_l) == 5 and sorted(crops_d) == sorted(crops_l) == sorted(
        set(faces_l.crop_path)
    )
    assert crops_d == crops_l  # byte for byte


def test_dask_flow_stops_cleanly_when_the_caller_stops(prefect_server: None) -> None:
    from flows.dask_runner import FLOW_NAME, run_flow

    noop = noop_task()

    results = run_flow(
        lambda i: noop.submit(i),
        range(1000),
        workers=1,
        address=None,
        window=2,
        on_error=lambda i, exc: pytest.fail(f"task {i} failed: {exc}"),
    )
    assert next(results) in (0, 1)
    results.close()  # cancels what is in flight, ends the flow, closes the cluster
    assert not [t for t in threading.enumerate() if t.name == FLOW_NAME]


@pytest.mark.timeout(60)  # a hang guard, not a timing: an unreachable scheduler must not block
@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "not-an-address"])
def test_bad_dask_address_is_a_one_line_error(
    project: Path,  # noqa: F811
    address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fer.cli import main

    cfg = _config(project, executor="dask", dask_address=address)
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    assert main(["detect", "--params", str(params)]) == 2  # a FerError (ConfigError)
    err = capsys.readouterr().err.strip()
    assert err.startswith("fer detect: error: detect.dask_address") and "\n" not in err
    assert address in err
    assert not (project / "faces.parquet").exists()  # nothing half-written


def test_no_work_starts_nothing() -> None:
    """An all-cached re-run must not pay for a Prefect server, a flow run or a cluster."""
    from flows.dask_runner import FLOW_NAME, run_flow

    noop = noop_task()

    results = run_flow(
        lambda i: noop.submit(i),
        [],
        workers=2,
        address="tcp://127.0.0.1:1",  # never contacted
        window=4,
        on_error=lambda i, exc: None,
    )
    assert list(results) == []
    assert not [t for t in threading.enumerate() if t.name == FLOW_NAME]

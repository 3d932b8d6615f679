"""Nothing a user put in their raw folder is ever deleted: checked with real `dvc repro`.

The sandbox is a DVC output (``sample.out``, ``data/sandbox``) that DVC may delete and restore;
a user's images go in their own folder (here ``data/raw``), which no stage writes, and
``ingest.raw_dir`` picks which one the pipeline reads.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.kit import BIN, sh

pytestmark = pytest.mark.slow
DVC = str(BIN / "dvc")


def _user_images(project: Path) -> dict[Path, bytes]:
    """Two images of the user's (copied from the sandbox) in ``data/raw/<expression>/``."""
    sandbox = sorted((project / "data/sandbox/happy").glob("*.jpg"))
    calm = sorted((project / "data/sandbox/calm").glob("*.jpg"))
    mine = {
        project / "data/raw/happy/mine.jpg": sandbox[0].read_bytes(),
        project / "data/raw/calm/also mine.jpg": calm[0].read_bytes(),
    }
    for path, data in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return mine


def _intact(mine: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == data for p, data in mine.items())


def test_dvc_repro_never_deletes_user_images(tmp_path: Path, project_copy) -> None:
    from fer.params_edit import apply_overrides

    project = project_copy(tmp_path / "proj")
    sh(project, DVC, "repro", "ingest")  # sample + ingest on the sandbox
    mine = _user_images(project)

    # Re-rendering the sandbox (forced, and after a sample param change) leaves them alone.
    sh(project, DVC, "repro", "--force", "--single-item", "sample")
    assert _intact(mine)
    apply_overrides(project / "params.yaml", ["sample.seed=1"])
    sh(project, DVC, "repro", "ingest")
    assert _intact(mine)

    # One params change switches the pipeline to the user's folder; it is read, not written.
    apply_overrides(project / "params.yaml", ["ingest.raw_dir=data/raw"])
    sh(project, DVC, "repro", "--force", "ingest")
    assert _intact(mine)
    manifest = pd.read_parquet(project / "data/manifest.parquet")
    assert sorted(manifest["path"]) == ["calm/also mine.jpg", "happy/mine.jpg"]
    assert set(manifest["status"]) == {"ok"}
    # The sandbox stage still owns only its own folder.
    sh(project, DVC, "repro", "--force", "--single-item", "sample")
    assert _intact(mine)


def test_links_in_the_image_folder_never_stop_dvc(tmp_path: Path, project_copy) -> None:
    """A dangling symlink, or one leading out of the folder, is a rejected manifest row with
    its reason; `dvc status` and `dvc repro` never trip over it (DVC does not hash the folder)."""
    import os

    from fer.params_edit import apply_overrides

    project = project_copy(tmp_path / "proj")
    sh(project, DVC, "repro", "ingest")
    mine = _user_images(project)
    folder = project / "data/raw/happy"
    os.symlink(project / "nowhere.jpg", folder / "dangling.jpg")
    (tmp_path / "secret.jpg").write_bytes(next(iter(mine.values())))
    os.symlink(tmp_path / "secret.jpg", folder / "outside.jpg")
    apply_overrides(project / "params.yaml", ["ingest.raw_dir=data/raw"])
    assert sh(project, DVC, "status").returncode == 0
    sh(project, DVC, "repro", "ingest")
    manifest = pd.read_parquet(project / "data/manifest.parquet").set_index("path")
    assert manifest.loc["happy/dangling.jpg", "reason"] == "broken_symlink"
    assert manifest.loc["happy/outside.jpg", "reason"] == "symlink_outside_raw"
    assert manifest.loc["happy/mine.jpg", "status"] == "ok"
    assert _intact(mine)


def test_truth_scores_only_the_sandbox(tmp_path: Path) -> None:
    from fer.config import config_from_dict

    base = {"taxonomy": {"positive": ["happy"], "negative": ["angry"], "neutral": ["calm"]}}
    sandbox = config_from_dict(base)
    assert sandbox.truth == Path("data/sample_truth.csv")
    own = config_from_dict({**base, "ingest": {"raw_dir": "data/raw"}})
    assert own.truth is None
    folder = str(tmp_path / "s")
    moved = config_from_dict({**base, "sample": {"out": folder}, "ingest": {"raw_dir": folder}})
    assert moved.truth == Path("data/sample_truth.csv")

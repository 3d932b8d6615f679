"""MLflow tracking: the ONLY module of fer that imports mlflow.

Where runs go: ``MLFLOW_TRACKING_URI`` from the environment wins over ``tracking.uri`` in
params (so one shell can point every stage at a shared server without editing params); the
default is ``sqlite:///mlflow.db`` with artifacts under the absolute
``tracking.artifact_location``.

Stages call :func:`log_stage_run` for a one-shot run (detect, validate), or :func:`open_run` for
the training run that stays open across epochs and is re-opened by evaluate (its id is in
``models/<model>/run.json``). The registry logic (alias ``champion`` moves only to a better
model) is :func:`register_if_better`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fer import disable_telemetry
from fer.config import TrackingConfig
from fer.errors import TrackingError

ENV_URI = "MLFLOW_TRACKING_URI"

# mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into os.environ itself; the URIs we set
# from params are remembered so that they are not mistaken for a user's override later.
_SET_FROM_PARAMS: set[str] = set()


def tracking_uri(cfg: TrackingConfig) -> str:
    """The tracking URI in force: the user's ``MLFLOW_TRACKING_URI``, else ``tracking.uri``.

    A relative sqlite path is made absolute (against the current folder, the project root):
    mlflow caches one database engine per URI string, so a relative one would keep pointing
    at the first folder it was used from.
    """
    env = os.environ.get(ENV_URI)
    uri = env if env and env not in _SET_FROM_PARAMS else cfg.uri
    return _absolute_sqlite(uri)


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        rest = uri[len(prefix) :]
        if rest and not rest.startswith(":memory:"):
            return prefix + str(Path(rest).resolve())
    return uri


_CHECKED: set[str] = set()


def check_store(uri: str) -> None:
    """Fail in one line on a damaged local sqlite store, before mlflow touches it.

    ``PRAGMA quick_check`` reads every page once (milliseconds for a project's store), so a
    truncated, overwritten or zeroed database is caught at start instead of as ~80 lines of
    SQLAlchemy traceback, or, worse, not at all while training keeps writing into it.

    Raises:
        TrackingError: the file is not a healthy sqlite database (exit code 3).
    """
    import sqlite3

    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri in _CHECKED:
        return
    db = Path(uri[len(prefix) :])
    if not db.is_file():
        return  # mlflow creates a new store
    fix = f"move it aside (mv {db} {db}.damaged) and re-run, or restore it from a backup"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"{db}: damaged MLflow database ({exc}); {fix}") from None
    problems = [r[0] for r in rows if r[0] != "ok"]
    if problems:
        raise TrackingError(f"{db}: damaged MLflow database ({problems[0][:120]}); {fix}")
    _CHECKED.add(uri)


# Columns of MLflow's sqlite schema that hold local artifact paths (plain or file:// URIs).
_PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)
_FOLLOWED: set[str] = set()


def follow_project(cfg: TrackingConfig, uri: str) -> str | None:
    """Keep a local store's artifact paths inside this project, wherever it was moved.

    MLflow stores artifact locations as absolute paths, so a copied or moved project would
    keep reading and writing the original's ``mlruns/`` (and break once that is removed).
    When the experiment's location is not ``tracking.artifact_location`` of this project, the
    paths under the old root are rewritten to the new one, once, with a notice. Returns the
    old root when it rewrote them.
    """
    import sqlite3

    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri in _FOLLOWED:
        return None
    _FOLLOWED.add(uri)
    db = Path(uri[len(prefix) :])
    if not db.is_file():
        return None
    new = Path(cfg.artifact_location).resolve()
    with contextlib.closing(sqlite3.connect(db)) as con:
        row = con.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (cfg.experiment,)
        ).fetchone()
        old = _local_path(row[0]) if row and row[0] else None
        if old is None or old == new:
            return None
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        with con:
            for table, column in (tc for tc in _PATH_COLUMNS if tc[0] in tables):
                for before, after in ((old.as_uri(), new.as_uri()), (str(old), str(new))):
                    con.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {column} = ? OR {column} LIKE ?",
                        (after, len(before) + 1, before, before + "/%"),
                    )
    print(  # a notice, never on stdout: `fer predict --json` keeps stdout pure JSON
        f"tracking: this project's store pointed at {old}; artifact paths now use {new}",
        file=sys.stderr,
    )
    return str(old)


def _local_path(location: str) -> Path | None:
    """The folder of a local artifact location (a path or file:// URI); None for remote ones."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(location) if not parsed.scheme else None


def _use_store(cfg: TrackingConfig) -> str:
    """Point mlflow at the store in force (after checking a local one) and return its URI."""
    uri = tracking_uri(cfg)
    check_store(uri)
    follow_project(cfg, uri)
    env = os.environ.get(ENV_URI)
    if not env or env in _SET_FROM_PARAMS:
        _SET_FROM_PARAMS.add(uri)  # mlflow is about to write it into the environment
    _mlflow().set_tracking_uri(uri)
    return uri


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def ensure_reachable(cfg: TrackingConfig, timeout_s: float = 3.0) -> None:
    """Fail fast, before any work, when an http(s) tracking server does not answer.

    Local stores (sqlite, file) need no check here: their errors surface on first use with the
    path in the message. Called at the start of training so a typo in the URI costs seconds,
    not a whole training run.

    Raises:
        TrackingError: one line naming the URI and the reason.
    """
    if not cfg.enabled:
        return
    uri = tracking_uri(cfg)
    if not _is_http(uri):
        check_store(uri)
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            if resp.status >= 400:
                raise TrackingError(f"tracking server {uri} answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise TrackingError(f"tracking server {uri} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"tracking server {uri} is unreachable ({reason})") from None


def _mlflow() -> Any:
    """Import mlflow quietly (its import is ~2 s, so only stages that track pay it)."""
    disable_telemetry()
    # Artifact "downloads" from a local store draw a progress bar per file on every registration.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return mlflow


def _experiment_id(cfg: TrackingConfig) -> str:
    """Point mlflow at the store and return the experiment id, creating it on first use."""
    mlflow = _mlflow()
    uri = _use_store(cfg)
    client = mlflow.MlflowClient()
    try:
        exp = client.get_experiment_by_name(cfg.experiment)
        if exp is None:
            # A server decides its own artifact root; a local store gets ours, absolute so that
            # runs started from another folder still find their artifacts.
            location = None
            if not _is_http(uri):
                root = Path(cfg.artifact_location).resolve()
                root.mkdir(parents=True, exist_ok=True)
                location = root.as_uri()
            return client.create_experiment(cfg.experiment, artifact_location=location)
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(
                f"experiment {cfg.experiment!r} is deleted in {uri}; restore it "
                "(mlflow experiments restore) or set tracking.experiment"
            )
        return exp.experiment_id
    except TrackingError:
        raise
    except Exception as exc:  # mlflow raises many types; the user needs one line
        raise TrackingError(f"cannot use tracking store {uri}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _clean_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten nested dicts to dotted keys; mlflow caps values at 6000 characters."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = str(value)[:6000]

    walk("", params)
    return out


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep numeric, finite metrics (nested dicts flattened to dotted keys)."""
    out: dict[str, float] = {}
    for key, value in _clean_params(metrics).items():
        try:
            num = float(value)
        except ValueError:
            continue
        if num == num and abs(num) != float("inf"):
            out[key] = num
    return out


class RunLogger:
    """Thin handle on an open MLflow run; every method logs into that run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._mlflow = _mlflow()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (nested dicts flattened); re-logging a resumed run's params is skipped."""
        client = self._mlflow.MlflowClient()
        existing = client.get_run(self.run_id).data.params
        fresh = {k: v for k, v in _clean_params(params).items() if k not in existing}
        if fresh:
            self._mlflow.log_params(fresh)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the numeric entries of ``metrics`` at ``step``."""
        clean = _clean_metrics(metrics)
        if clean:
            self._mlflow.log_metrics(clean, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified)."""
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Log a file or a folder (missing paths are skipped: optional reports)."""
        p = Path(path)
        if p.is_dir():
            self._mlflow.log_artifacts(str(p), artifact_path=artifact_path)
        elif p.is_file():
            self._mlflow.log_artifact(str(p), artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log a string as an artifact file (e.g. a JSON report)."""
        self._mlflow.log_text(text, artifact_file)

    def log_dataset(
        self,
        frame: Any,
        *,
        name: str,
        source: str,
        digest: str,
        context: str = "training",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Record dataset lineage: a pandas table with our own digest (e.g. the manifest hash)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source ... multiple ways" notice
            ds = self._mlflow.data.from_pandas(frame, source=source, name=name, digest=digest[:36])
        self._mlflow.log_input(ds, context=context, tags=dict(tags or {}))

    def log_pyfunc(
        self,
        python_model: Any,
        *,
        artifacts: Mapping[str, str],
        input_example: Any,
        output_example: Any,
        pip_requirements: list[str],
        code_paths: list[str],
        name: str = "model",
    ) -> str:
        """Log a pyfunc model with an inferred signature; returns its ``models:/`` URI."""
        import warnings

        from mlflow.models import infer_signature

        signature = infer_signature(input_example, output_example)
        python_model = self._python_model(python_model)
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        with warnings.catch_warnings():
            # Logging a PythonModel instance is how artifacts travel; the cloudpickle notice
            # and the type-hint hints are not actionable here.
            warnings.simplefilter("ignore", UserWarning)
            pyfunc_log.setLevel(logging.ERROR)
            try:
                info = self._mlflow.pyfunc.log_model(
                    name=name,
                    python_model=python_model,
                    artifacts=dict(artifacts),
                    signature=signature,
                    input_example=input_example,
                    pip_requirements=pip_requirements,
                    code_paths=code_paths,
                )
            finally:
                pyfunc_log.setLevel(level)
        return info.model_uri

    def _python_model(self, impl: Any) -> Any:
        """``impl`` (a plain class with ``load_context``/``predict``) as an mlflow PythonModel.

        The pyfunc's logic lives in fer.prediction.serving, which never imports mlflow; the
        subclass made here pickles by value and names that class by reference.
        """
        base = self._mlflow.pyfunc.PythonModel
        if isinstance(impl, base):
            return impl
        cls = type(type(impl).__name__, (type(impl), base), {})
        model = cls.__new__(cls)
        model.__dict__.update(vars(impl))
        return model


@contextlib.contextmanager
def open_run(
    cfg: TrackingConfig,
    *,
    run_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[RunLogger | None]:
    """Start (or re-open, given ``run_id``) a run; yields None when tracking is disabled.

    A run whose body raises is marked FAILED (KeyboardInterrupt: KILLED) so the UI shows it.
    """
    if not cfg.enabled:
        yield None
        return
    mlflow = _mlflow()
    exp_id = _experiment_id(cfg)
    try:
        if run_id is not None:
            active = mlflow.start_run(run_id=run_id)
        else:
            active = mlflow.start_run(
                experiment_id=exp_id,
                run_name=run_name,
                tags={k: str(v) for k, v in (tags or {}).items()},
            )
    except Exception as exc:
        raise TrackingError(f"cannot start run in {tracking_uri(cfg)}: {_one_line(exc)}") from None
    status = "FINISHED"
    try:
        yield RunLogger(active.info.run_id)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mlflow.end_run(status=status)


def log_stage_run(
    cfg: TrackingConfig,
    stage: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: list[Path],
) -> str | None:
    """Log one finished stage as one run tagged ``stage=<stage>``; returns the run id.

    Nested params/metrics are flattened to dotted keys; non-numeric metrics are dropped;
    missing artifact paths are skipped. Returns None when ``tracking.enabled`` is false.
    """
    with open_run(cfg, run_name=stage, tags={"stage": stage}) as run:
        if run is None:
            return None
        run.log_params(params)
        run.log_metrics(metrics)
        for path in artifacts:
            run.log_artifact(path)
        return run.run_id


def git_revision() -> str:
    """``git rev-parse HEAD`` (``+dirty`` when the tree has changes), or "" outside git."""
    import subprocess

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("+dirty" if dirty else "")


def lineage_tags(*, manifest: Path, splits: Path, decisions: Path | None = None) -> dict[str, str]:
    """What a trained model was made from: input digests (the manifest, the splits, a person's
    review decisions), the DVC lock, the git revision."""
    from fer.io import file_sha256

    def digest(path: Path) -> str:
        return file_sha256(path) if path.is_file() else ""

    return {
        "manifest_sha256": digest(manifest),
        "splits_sha256": digest(splits),
        "dvc_lock_sha256": digest(Path("dvc.lock")),
        "git_revision": git_revision(),
        **({"review_decisions_sha256": digest(decisions)} if decisions is not None else {}),
    }


def run_exists(cfg: TrackingConfig, run_id: str) -> bool:
    """Whether ``run_id`` is a live run in the store in force.

    Only the store's own "not found" answers False; any other failure (an unreachable server,
    a damaged database) is a :class:`TrackingError`, so that a passing fault never makes a
    caller open a new run instead of the existing one.
    """
    mlflow = _mlflow()
    _use_store(cfg)
    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except Exception as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise TrackingError(
            f"cannot read run {run_id} in {tracking_uri(cfg)}: {_one_line(exc)}"
        ) from None


RUN_FACTS_DIR = Path(".fer_runs")
"""Per-run facts that differ on every run (MLflow run id, model URI, registry version, wall time,
speed): one JSON per stage or model in this git-ignored folder at the project root, never in a
DVC output, so that the pipeline's outputs are the same bytes on every run. `fer report` shows
the times; `fer evaluate` links its run to the training run through them."""


def run_facts_path(name: str) -> Path:
    """``.fer_runs/<name>.json``: ``name`` is a model (``train.models``), ``detect`` or
    ``validate``."""
    return RUN_FACTS_DIR / f"{name}.json"


def write_run_facts(name: str, facts: Mapping[str, Any]) -> None:
    """Write :func:`run_facts_path` atomically."""
    from fer.io import write_json

    write_json(run_facts_path(name), dict(facts))


def read_run_facts(name: str) -> dict[str, Any]:
    """What :func:`write_run_facts` wrote; empty when missing or unreadable."""
    import json

    try:
        facts = json.loads(run_facts_path(name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return facts if isinstance(facts, dict) else {}


READS_REAL_FACES = "reads_real_faces"
"""Run tag: ``true`` when the model has learned from real faces (trained on real data, or a
packaged real-face model used as shipped). Only such a model may hold the alias."""


def register_if_better(
    cfg: TrackingConfig,
    *,
    model_uri: str,
    run_id: str,
    metric: str,
    value: float,
    reads_real_faces: bool = True,
) -> dict[str, Any]:
    """Register ``model_uri`` as ``cfg.registered_model``; move ``cfg.alias`` only if better.

    The alias is what ``fer predict`` answers with by default, so it goes only to a model that
    reads real faces (``reads_real_faces``; a sandbox-trained model is registered, never
    aliased). Among those, the incumbent's score is read from its own run (metric ``metric``);
    ties keep the incumbent, so re-training an identical model does not churn the alias. An
    incumbent that is not known to read real faces, or whose run lacks the metric, loses to any
    model that does.

    Returns:
        ``{"version", "champion" (bool: this version holds the alias), "previous_version",
        "previous_value"}``.
    """
    mlflow = _mlflow()
    _experiment_id(cfg)
    client = mlflow.MlflowClient()
    name = cfg.registered_model
    try:
        client.set_tag(run_id, READS_REAL_FACES, str(reads_real_faces).lower())
        mv = mlflow.register_model(model_uri, name)
        previous_version: str | None = None
        previous_value: float | None = None
        try:
            incumbent = client.get_model_version_by_alias(name, cfg.alias)
        except mlflow.exceptions.MlflowException:
            incumbent = None
        incumbent_real = False
        if incumbent is not None:
            previous_version = str(incumbent.version)
            if incumbent.run_id:
                run = client.get_run(incumbent.run_id)
                previous_value = run.data.metrics.get(metric)
                incumbent_real = run.data.tags.get(READS_REAL_FACES) == "true"
        outscores = previous_value is None or value > previous_value
        better = reads_real_faces and (not incumbent_real or outscores)
        if better:
            client.set_registered_model_alias(name, cfg.alias, mv.version)
    except Exception as exc:
        raise TrackingError(f"model registry {tracking_uri(cfg)}: {_one_line(exc)}") from None
    return {
        "version": str(mv.version),
        "champion": bool(better),
        "previous_version": previous_version,
        "previous_value": previous_value,
    }


def download_model_artifacts(cfg: TrackingConfig, uri: str) -> Path:
    """Download (or locate, for a local store) a logged model's files; returns the folder.

    Raises:
        ModelError: the URI does not resolve (unknown name, alias or run).
    """
    from fer.errors import ModelError

    mlflow = _mlflow()
    _use_store(cfg)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except Exception as exc:
        raise ModelError(
            f"model {uri!r} not found in {tracking_uri(cfg)}: {_one_line(exc)}"
        ) from None
    return Path(local)

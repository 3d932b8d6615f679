"""The ``fer`` console script: parse arguments, load params once, call one stage.

Stage modules are imported lazily, so ``fer predict`` never pays for Prefect, DVC or Great
Expectations, and ``fer --help`` is instant.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fer import disable_telemetry
from fer.errors import FerError
from fer.numerics import pin_cpu_kernels

AUDIT_ENV = "FER_PARAMS_AUDIT"  # fer.config.AUDIT_ENV (not imported: `fer --help` stays instant)
TIMINGS_ENV = "FER_TIMINGS"
"""Set to a file path to append each command's wall time (process start to exit) as a JSON line:
how benchmarks/bench_orchestration.py separates stage time from orchestration time."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer",
        description="Facial-expression recognition pipeline: sample → ingest → detect → "
        "validate → split → train → evaluate → predict (or serve: api).",
    )
    parser.add_argument(
        "--params", type=Path, default=None, help="params file (default: ./params.yaml)"
    )
    # Sub-commands accept --params too; SUPPRESS keeps `fer --params X cmd` from being reset.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", type=Path, default=argparse.SUPPRESS, help="params file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _data_commands(sub, common)
    _model_commands(sub, common)
    _service_commands(sub, common)
    return parser


def _data_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """sample, import, ingest, detect, validate, split."""
    p = sub.add_parser("sample", parents=[common], help="render the synthetic sandbox")
    p.add_argument("--out", type=Path, help="raw tree to write (default: sample.out)")
    p.add_argument("--truth", type=Path, help="truth CSV to write (default: sample.truth)")
    p.add_argument("--n", type=int, help="number of images (default: sample.n)")
    p.add_argument("--seed", type=int, help="random seed (default: sample.seed)")
    p.add_argument("--noise", type=float, help="fraction of wrong labels (default: sample.noise)")
    p.add_argument("--workers", type=int, help="processes (default: sample.workers; 0 = cores)")

    p = sub.add_parser("import", parents=[common], help="convert a public dataset to a raw tree")
    p.add_argument("format", choices=["fer2013"], help="source format")
    p.add_argument(
        "csv", type=Path, metavar="SOURCE",
        help="FER2013 CSV (emotion,pixels,Usage) or image folders (<train|test>/<emotion>/*.jpg)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="raw tree to write")
    p.add_argument(
        "--use", action="store_true",
        help="also point params.yaml at it with the FER2013 settings (comments kept)",
    )  # fmt: skip
    p.add_argument(
        "--votes", type=Path, metavar="FERPLUS_CSV",
        help="FER+ crowd votes (fer2013new.csv): joined by row (CSV) or by pixels (folders)",
    )  # fmt: skip
    p.add_argument(
        "--ferplus-images", type=Path, metavar="FERPLUS_DIR",
        help="FER+'s PNGs (fer*.png, any sub-folders): each row's pixels, for image folders",
    )  # fmt: skip
    p.add_argument(
        "--match-threshold", type=float, default=4.0, metavar="GREY_LEVELS",
        help="largest mean absolute grey difference accepted as the same image (default 4)",
    )  # fmt: skip

    sub.add_parser("ingest", parents=[common], help="scan the raw tree into the manifest")
    sub.add_parser("detect", parents=[common], help="find and crop faces")
    sub.add_parser("validate", parents=[common], help="data gate, quarantine, label issues")
    sub.add_parser("split", parents=[common], help="group-aware train/val/test split")


def _model_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """train, evaluate, report, predict, weights."""
    p = sub.add_parser("train", parents=[common], help="train one model")
    p.add_argument("--model", help="architecture name (default: train.model)")
    p.add_argument(
        "--resume", action="store_true", help="resume from the last checkpoint (or fail)"
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="never resume (default: resume a checkpoint of "
        "the same params and crops, e.g. after a killed `dvc repro`)",
    )

    p = sub.add_parser("evaluate", parents=[common], help="evaluate one model on the test split")
    p.add_argument("--model", help="architecture name (default: train.model)")

    p = sub.add_parser(
        "check", parents=[common],
        help="this run's metrics vs the committed ones, within metrics/tolerances.yaml",
    )  # fmt: skip
    p.add_argument("--against", default="HEAD", help="git revision to compare with (HEAD)")
    p.add_argument("--tolerances", type=Path, help="rules file (default: metrics/tolerances.yaml)")

    sub.add_parser(
        "report", parents=[common], help="compare the models: reports/report.{md,html} + stdout"
    )

    p = sub.add_parser("predict", parents=[common], help="classify faces in images or video")
    p.add_argument("paths", nargs="*", type=Path, help="images, folders or video files")
    p.add_argument("--camera", type=int, metavar="INDEX", help="also read a camera (e.g. 0)")
    p.add_argument(
        "--show", action="store_true", help="show videos and the camera live in a window"
    )
    p.add_argument(
        "--detect-with", choices=["model", "params"], default="model",
        help="detector settings: the model's own (default, as when served) or params.yaml's",
    )  # fmt: skip
    p.add_argument("--model", help="model dir, MLflow model URI (default: predict.model)")
    p.add_argument(
        "--out", type=Path, help="folder for annotated output (default: predict.out_dir)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON contract to stdout")
    p.add_argument(
        "--precropped", action="store_true",
        help="every image is one face crop (e.g. FER2013): no detector, the whole image is read",
    )  # fmt: skip

    p = sub.add_parser(
        "ensemble", parents=[common],
        help="several models as one: each cuts faces its way, probabilities averaged",
    )  # fmt: skip
    p.add_argument(
        "models", nargs="+",
        help="model dirs, MLflow URIs or pretrained:NAME (2+; or 1 with --flip or --shift)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="new folder for model.pt")
    p.add_argument("--weights", type=float, nargs="+", help="one per model (default: equal)")
    p.add_argument(
        "--fit", type=Path, metavar="DIR",
        help="fit the weights on labelled images: DIR/<expression>/... (not your test set)",
    )  # fmt: skip
    p.add_argument("--fit-pattern", default="*", help="only files matching this glob ('*')")
    p.add_argument("--precropped", action="store_true", help="--fit images are face crops")
    p.add_argument("--flip", action="store_true", help="members also read the mirrored face")
    p.add_argument(
        "--shift", type=float, default=0.0, metavar="F",
        help="members also read the face moved left, right, up and down by F of its side "
        "(e.g. 0.04; default 0: off)",
    )  # fmt: skip
    p.add_argument("--step", type=float, default=0.1, help="weight grid step for --fit (0.1)")

    p = sub.add_parser("api", parents=[common], help="serve a model over HTTP (FastAPI)")
    p.add_argument("--model", help="model dir, MLflow model URI (default: predict.model)")
    p.add_argument("--host", help="address to bind (default: api.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default: api.port, 8000)")
    p.add_argument("--workers", type=int, help="processes (default: api.workers, 1)")
    p.add_argument(
        "--max-bytes", type=int, metavar="N",
        help="largest request body in bytes (default: api.max_request_bytes, 10 MiB)",
    )  # fmt: skip


def _service_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """pipeline, serve, review, api, ui: the commands that run flows and servers."""
    p = sub.add_parser(
        "pipeline", parents=[common], help="run the whole pipeline as a Prefect flow"
    )
    p.add_argument("--models", nargs="+", help="models to train (default: train.models)")
    p.add_argument("--force", action="store_true", help="re-run every stage")

    p = sub.add_parser("serve", parents=[common], help="serve Prefect deployments of the flows")
    p.add_argument("--cron", help="optional schedule for the pipeline deployment")

    p = sub.add_parser(
        "review", parents=[common], help="review flagged samples in a local page, one key each"
    )
    p.add_argument("--host", help="address to listen on (default: review.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: review.port)")
    p.add_argument("--reviewer", help="name written with each decision (default: $USER)")
    p.add_argument(
        "--migrate-restore-list", nargs="?", const="", default=None, metavar="PATH",
        help="turn quarantine_restore.txt (or PATH) into restore rows of the decisions file, "
        "then exit",
    )  # fmt: skip

    p = sub.add_parser(
        "weights", parents=[common], help="fetch the pinned pretrained real-face weights"
    )
    p.add_argument(
        "--dest",
        type=Path,
        help="weights folder (default: $FER_WEIGHTS_DIR, else weights/ in the project)",
    )

    p = sub.add_parser("ui", parents=[common], help="start the MLflow UI and Prefect server")
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--prefect-port", type=int, default=4200)
    p.add_argument("--host", default="127.0.0.1")


# command -> (module, function, names of parsed args passed as keyword arguments)
_DISPATCH: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sample": ("fer.stages.sample", "run", ("out", "truth", "n", "seed", "noise", "workers")),
    "import": (
        "fer.stages.imports",
        "run",
        ("format", "csv", "out", "use", "params", "votes", "ferplus_images", "match_threshold"),
    ),
    "ingest": ("fer.stages.ingest", "run", ()),
    "detect": ("fer.stages.detect", "run", ()),
    "validate": ("fer.stages.validate", "run", ()),
    "split": ("fer.stages.split", "run", ()),
    "train": ("fer.stages.train", "run", ("model", "resume", "fresh")),
    "evaluate": ("fer.stages.evaluate", "run", ("model",)),
    "check": ("fer.stages.check", "run", ("against", "tolerances")),
    "report": ("fer.stages.report", "run", ()),
    "predict": (
        "fer.stages.predict",
        "run",
        ("paths", "model", "out", "json", "camera", "show", "detect_with", "precropped"),
    ),
    "ensemble": (
        "fer.stages.ensemble",
        "run",
        (
            "models",
            "out",
            "weights",
            "fit",
            "fit_pattern",
            "precropped",
            "flip",
            "shift",
            "step",
        ),
    ),
    "api": ("fer.stages.api", "run", ("model", "host", "port", "workers", "max_bytes")),
    "pipeline": ("flows.launcher", "run", ("models", "force", "params")),
    "serve": ("flows.serve", "run", ("cron",)),
    "ui": ("fer.ui", "run", ("host", "mlflow_port", "prefect_port")),
    "review": ("fer.stages.review", "run", ("host", "port", "reviewer", "migrate_restore_list")),
    "weights": ("fer.stages.weights", "run", ("dest",)),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Returns the exit code: 0 ok, 1 gate failed, 2 user error, 130 interrupted."""
    args = _parser().parse_args(argv)
    disable_telemetry()
    pin_cpu_kernels()  # before any model runs: fer.numerics says why
    if os.environ.get(TIMINGS_ENV):
        atexit.register(_record_timing, os.environ[TIMINGS_ENV], list(argv or sys.argv[1:]))
    if os.environ.get(AUDIT_ENV):
        from fer.config import audit_params

        atexit.register(_record_params, os.environ[AUDIT_ENV], list(argv or sys.argv[1:]),
                        audit_params())  # fmt: skip
    try:
        from fer.config import DEFAULT_PARAMS, load_config

        cfg = load_config(args.params or DEFAULT_PARAMS)
        module, func, names = _DISPATCH[args.command]
        stage: Callable[..., Any] = getattr(importlib.import_module(module), func)
        stage(cfg, **{n: getattr(args, n) for n in names})
    except FerError as exc:
        print(f"fer {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"fer {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _record_params(path: str, argv: list[str], audit: Any) -> None:
    """Append ``{"argv", "read"}``: the params keys this command read (fer.config.AUDIT_ENV)."""
    import json

    line = json.dumps({"argv": argv, "read": sorted(audit.read)})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _record_timing(path: str, argv: list[str]) -> None:
    """Append ``{"argv", "start", "end"}`` (epoch seconds; start = process creation)."""
    import json
    import time

    import psutil

    start = psutil.Process().create_time()
    line = json.dumps({"argv": argv, "start": start, "end": time.time()})
    with open(path, "a", encoding="utf-8") as fh:  # one short append per process: no tearing
        fh.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())

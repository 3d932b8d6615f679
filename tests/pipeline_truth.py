"""What each DVC stage really uses: the code its command imports and the params it reads.

Shared by tests/test_pipeline_truth.py (code, static) and tests/test_e2e.py (params, recorded
from a real `dvc repro` with ``FER_PARAMS_AUDIT``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def stage_entries(root: Path = ROOT) -> dict[str, dict]:
    """dvc.yaml's stages with ``foreach`` expanded over ``train.models`` (as DVC does)."""
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    out: dict[str, dict] = {}
    for name, stage in dvc["stages"].items():
        if "foreach" not in stage:
            out[name] = _resolve(stage, params, None)
            continue
        for item in params["train"]["models"]:
            out[f"{name}@{item}"] = _resolve(stage["do"], params, item)
    return out


def _resolve(stage: dict, params: dict, item: str | None) -> dict:
    def sub(text: str) -> str:
        text = text.replace("${item}", item or "")
        while "${" in text:
            start = text.index("${")
            end = text.index("}", start)
            value = params
            for key in text[start + 2 : end].split("."):
                value = value[key]
            text = text[:start] + str(value) + text[end + 1 :]
        return text

    def names(entries: list) -> list[str]:
        return [sub(e if isinstance(e, str) else next(iter(e))) for e in entries or []]

    return {
        "cmd": sub(stage["cmd"]),
        "deps": names(stage.get("deps")),
        "params": names(stage.get("params")),
    }


def command_module(cmd: str) -> str:
    """The module a ``fer <command>`` runs (fer.cli's dispatch table)."""
    from fer.cli import _DISPATCH

    words = shlex.split(cmd)
    assert words[0] == "fer", cmd
    return _DISPATCH[words[1]][0]


def imported_files(module: str, root: Path = ROOT) -> set[str]:
    """Repo-relative files of every fer/flows module ``module`` imports, lazily or not."""
    import grimp

    graph = grimp.build_graph("fer", "flows", cache_dir=None, exclude_type_checking_imports=True)
    modules = {module} | graph.find_upstream_modules(module)
    files = set()
    for name in modules:
        base = root / Path(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        files.add(path.relative_to(root).as_posix())
    return files


def covered(path: str, deps: list[str]) -> bool:
    """Whether a file is one of ``deps`` or lies under a folder of them."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def key_declared(key: str, declared: list[str]) -> bool:
    """Whether a read params key is declared (itself or a section above it)."""
    return any(key == d or key.startswith(d + ".") for d in declared)

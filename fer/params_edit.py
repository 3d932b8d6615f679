"""Apply ``key=value`` edits to params.yaml, keeping its comments (like ``dvc exp run -S``)."""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO
from pathlib import Path

from fer.errors import ConfigError
from fer.io import write_text


def apply_overrides(path: Path, overrides: Sequence[str]) -> None:
    """Set dotted keys (``train.lr=0.0005``) in ``path``; values are parsed as YAML.

    The edited file is validated before it replaces the original, so a bad override leaves
    params.yaml untouched and fails with one line naming the key.
    """
    from ruamel.yaml import YAML

    from fer.config import config_from_dict

    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(path.read_text(encoding="utf-8"))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        *parents, leaf = key.strip().split(".")
        node = doc
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {item!r}: unknown key {key.strip()!r}")
            node = node[part]
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"override {item!r}: unknown key {key.strip()!r}")
        node[leaf] = YAML(typ="safe").load(raw) if raw.strip() else None
    buf = StringIO()
    yaml.dump(doc, buf)
    text = buf.getvalue()
    import yaml as pyyaml

    config_from_dict(pyyaml.safe_load(text), source=f"{path} (after overrides)")
    write_text(path, text)

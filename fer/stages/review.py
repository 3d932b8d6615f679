"""`fer review`: serve the flagged samples on a local page and record a person's decisions.

Reads the current validation outputs (``quarantine.csv``, ``label_issues.csv``,
``duplicates.csv``) with the manifest and faces table; every decision is written at once to
``review.decisions`` (see :mod:`fer.validation.decisions`), a dependency of ``fer split``, so
``dvc repro`` then re-runs split and what follows, never detect or validate.

``fer review --migrate-restore-list [PATH]`` turns the old ``quarantine_restore.txt`` into
``restore`` rows (paths mapped to content ids through the manifest) and exits; the old file is
left as it is.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer import io as fio
from fer.errors import ConfigError, InputError
from fer.validation import decisions as dec

if TYPE_CHECKING:
    from fer.config import Config

DEFAULT_RESTORE_LIST = Path("quarantine_restore.txt")
MIGRATE_DEFAULT = ""
"""``--migrate-restore-list`` without a path: the configured (or default) restore list."""


def default_reviewer() -> str:
    """``$USER``, else the login name, else ``"reviewer"``."""
    try:
        return os.environ.get("USER") or getpass.getuser() or "reviewer"
    except (KeyError, OSError):
        return "reviewer"


def restore_list_path(cfg: Config) -> Path:
    """``validate.restore_list`` while that key exists, else ``quarantine_restore.txt``."""
    configured = getattr(cfg.validate_, "restore_list", None)
    return Path(configured) if configured else DEFAULT_RESTORE_LIST


def run(
    cfg: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    reviewer: str | None = None,
    migrate_restore_list: str | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """Serve the review page until interrupted, or migrate the restore list and return."""
    root = Path(root or Path.cwd())
    who = (reviewer or default_reviewer()).strip()
    if not who or "\n" in who:
        raise ConfigError(f"--reviewer {who!r}: give a one-line name")
    if migrate_restore_list is not None:
        source = Path(migrate_restore_list) if migrate_restore_list else restore_list_path(cfg)
        return migrate(cfg, root, source, who)
    return serve(cfg, root, host or cfg.review.host, cfg.review.port if port is None else port,
                 who)  # fmt: skip


def migrate(cfg: Config, root: Path, source: Path, reviewer: str) -> dict[str, Any]:
    """Append ``restore`` rows for the paths of ``source`` to the decisions file."""
    from fer.validation.quarantine import parse_restore_list

    src = source if source.is_absolute() else root / source
    if not src.is_file():
        raise InputError(f"{source}: restore list not found")
    paths = parse_restore_list(src.read_text(encoding="utf-8"))
    manifest = fio.read_table(root / cfg.ingest.manifest, producer="fer ingest",
                              columns=["id", "path"])  # fmt: skip
    target = root / cfg.review.decisions
    existing = dec.read_decisions(target)
    new, unmapped, already = dec.migrate_restore_list(
        paths, manifest, existing, reviewer=reviewer, time=dec.now(), source=str(source)
    )
    if new:
        dec.write_decisions(target, [*existing, *new])
    print(f"review: {len(paths)} path(s) in {source}: {len(new)} restore row(s) added to "
          f"{cfg.review.decisions}, {len(already)} already decided, {len(unmapped)} not in the "
          "manifest")  # fmt: skip
    for p in unmapped[:20]:
        print(f"  not in the manifest (left out): {p}")
    if paths:
        print(f"{source} was left as it is: once `fer validate` no longer reads it "
              "(validate.restore_list), delete it.")  # fmt: skip
    return {"paths": len(paths), "added": len(new), "already": already, "unmapped": unmapped}


def _pending_restore_hint(cfg: Config, root: Path, rows: list[dec.Decision]) -> str | None:
    from fer.validation.quarantine import parse_restore_list

    src = restore_list_path(cfg)
    path = src if src.is_absolute() else root / src
    if not path.is_file():
        return None
    listed = parse_restore_list(path.read_text(encoding="utf-8"))
    migrated = {d.path for d in rows if d.action == "restore"}
    left = [p for p in listed if p not in migrated]
    if not left:
        return None
    return (f"note: {src} lists {len(left)} path(s) not yet in the decisions file; run "
            "`fer review --migrate-restore-list` to turn them into restore rows")  # fmt: skip


def _check_port(host: str, port: int) -> None:
    """One-line error instead of uvicorn's exit when the address is taken or not local."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def serve(cfg: Config, root: Path, host: str, port: int, reviewer: str) -> dict[str, Any]:
    """Load the tables, print the URL and run uvicorn until Ctrl-C."""
    import uvicorn

    from fer.review.app import create_app
    from fer.review.items import group_counts
    from fer.review.state import load_state

    _check_port(host, port)
    state = load_state(cfg, root, reviewer)
    _, rows = state.store.rows()
    counts = group_counts(state.items)
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "all")
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    print(f"fer review: {counts['all']} flagged card(s) ({shown}); decisions -> "
          f"{cfg.review.decisions} ({len(rows)} row(s)) as {reviewer!r}")  # fmt: skip
    hint = _pending_restore_hint(cfg, root, rows)
    if hint:
        print(hint)
    print(f"fer review: open {url}  (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(create_app(state), host=host, port=port, log_level="warning",
                            access_log=False)  # fmt: skip
    uvicorn.Server(config).run()
    return {"cards": counts["all"], "decisions": len(rows)}

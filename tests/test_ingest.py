"""`fer ingest` on a generated raw tree full of odd and broken files, through the real CLI."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer.cli import main
from fer.config import load_config
from fer.data.ingest import MANIFEST_COLUMNS, REASONS, is_junk, scan_tree
from fer.labels import Taxonomy
from fer.stages import ingest as stage


def encode(a: np.ndarray | Image.Image, fmt: str, **kwargs: object) -> bytes:
    im = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bomb_png(size: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# path -> (status, reason, expression, label) for every file that must be listed.
EXPECTED: dict[str, tuple[str, str, str, str]] = {
    "loose.jpg": ("rejected", "no_expression_folder", "", ""),
    "Happy/a.jpg": ("ok", "", "happy", "positive"),
    "Happy/rotated.jpg": ("ok", "", "happy", "positive"),
    "Happy/sub/deep.png": ("ok", "", "happy", "positive"),
    "neutral/grey.png": ("ok", "", "neutral", "neutral"),
    "neutral/g16.png": ("ok", "", "neutral", "neutral"),
    "neutral/cmyk.jpg": ("ok", "", "neutral", "neutral"),
    "neutral/palette.png": ("ok", "", "neutral", "neutral"),
    "neutral/rgba.png": ("ok", "", "neutral", "neutral"),
    "neutral/anim.gif": ("ok", "", "neutral", "neutral"),
    "neutral/dup.jpg": ("ok", "", "neutral", "neutral"),
    "neutral/link_in.jpg": ("ok", "", "neutral", "neutral"),
    "neutral/bomb.png": ("rejected", "decompression_bomb", "neutral", "neutral"),
    "neutral/empty.jpg": ("rejected", "zero_bytes", "neutral", "neutral"),
    "neutral/trunc.jpg": ("rejected", "truncated", "neutral", "neutral"),
    "neutral/trunc.png": ("rejected", "truncated", "neutral", "neutral"),
    "neutral/notes.jpg": ("rejected", "not_an_image", "neutral", "neutral"),
    "neutral/readme.txt": ("rejected", "not_an_image", "neutral", "neutral"),
    "neutral/x.jpg": ("rejected", "is_directory", "neutral", "neutral"),
    "neutral/x.jpg/inner.jpg": ("ok", "", "neutral", "neutral"),
    "neutral/link_out.jpg": ("rejected", "symlink_outside_raw", "neutral", "neutral"),
    "neutral/broken.jpg": ("rejected", "broken_symlink", "neutral", "neutral"),
    "neutral/pipe.jpg": ("rejected", "not_a_file", "neutral", "neutral"),
    "Weird/w.jpg": ("rejected", "unknown_folder", "weird", ""),
}


def make_tree(root: Path) -> None:
    """A raw tree with every odd case of EXPECTED, plus junk that must not be listed."""
    outside = root.parent / "outside.jpg"
    outside.write_bytes(encode(noise(8, 8, 9), "JPEG"))
    for d in ("Happy/sub", "neutral/x.jpg", "Weird"):
        (root / d).mkdir(parents=True)
    good = encode(noise(24, 32, 0), "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 8
    files: dict[str, bytes] = {
        "loose.jpg": encode(noise(8, 8, 1), "JPEG"),
        "Happy/a.jpg": good,
        "Happy/rotated.jpg": encode(noise(24, 32, 2), "JPEG", exif=exif.tobytes()),
        "Happy/sub/deep.png": encode(noise(10, 12, 3), "PNG"),
        "neutral/grey.png": encode(noise(10, 10, 4)[:, :, 0], "PNG"),
        "neutral/g16.png": encode(np.full((9, 9), 40000, np.uint16), "PNG"),
        "neutral/cmyk.jpg": encode(Image.fromarray(noise(9, 9, 5)).convert("CMYK"), "JPEG"),
        "neutral/palette.png": encode(Image.new("P", (7, 7)), "PNG", transparency=0),
        "neutral/rgba.png": encode(np.zeros((6, 6, 4), np.uint8), "PNG"),
        "neutral/anim.gif": encode(
            Image.new("RGB", (5, 5), "red"),
            "GIF",
            save_all=True,
            append_images=[Image.new("RGB", (5, 5), "blue")],
        ),
        "neutral/dup.jpg": good,
        "neutral/bomb.png": bomb_png(50_000),
        "neutral/empty.jpg": b"",
        "neutral/trunc.jpg": encode(noise(40, 40, 6), "JPEG")[:600],
        "neutral/trunc.png": encode(noise(40, 40, 7), "PNG")[:2000],
        "neutral/notes.jpg": b"just some text\n",
        "neutral/readme.txt": b"hello\n",
        "neutral/x.jpg/inner.jpg": encode(noise(8, 8, 8), "JPEG"),
        "Weird/w.jpg": encode(noise(8, 8, 10), "JPEG"),
        # junk: never listed
        ".fer-sandbox": b"marker",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "Thumbs.db": b"junk",
        "Happy/._a.jpg": b"\x00\x05\x16\x07",
        "Happy/.DS_Store": b"junk",
        "neutral/desktop.ini": b"[.ShellClassInfo]",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.jpg").write_bytes(good)
    os.symlink(root / "Happy" / "a.jpg", root / "neutral" / "link_in.jpg")
    os.symlink(outside, root / "neutral" / "link_out.jpg")
    os.symlink(root / "nowhere.jpg", root / "neutral" / "broken.jpg")
    os.mkfifo(root / "neutral" / "pipe.jpg")  # reading it would block forever


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    make_tree(root)
    return root


def ingest_params(make_params: Callable[..., Path], raw: Path, **ingest: object) -> Path:
    section = {
        "raw_dir": str(raw),
        "manifest": str(raw.parent / "manifest.parquet"),
        "min_side": 1,
    }
    return make_params(ingest={**section, "workers": 1, **ingest})


def test_unknown_folder_is_an_error_naming_the_folder_and_fix(
    raw: Path, make_params: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--params", str(ingest_params(make_params, raw))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "Weird" in err and "ingest.unknown_folders: ignore" in err
    assert not (raw.parent / "manifest.parquet").exists()


def test_cli_lists_every_file_with_its_status(
    raw: Path, make_params: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    params = ingest_params(make_params, raw, unknown_folders="ignore", max_pixels=10_000_000)
    assert main(["ingest", "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "rejected  12" in out and "decompression_bomb 1" in out

    df = pd.read_parquet(raw.parent / "manifest.parquet")
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert df["path"].tolist() == sorted(EXPECTED)
    got = {r.path: (r.status, r.reason, r.expression, r.label) for r in df.itertuples()}
    assert got == EXPECTED
    assert set(df.reason) - {""} <= set(REASONS)

    by_path = df.set_index("path")
    rot = by_path.loc["Happy/rotated.jpg"]
    assert (rot.width, rot.height, rot.format) == (24, 32, "JPEG")  # orientation 8 swaps
    assert by_path.loc["neutral/anim.gif", "format"] == "GIF"
    good = by_path.loc["Happy/a.jpg"]
    assert len(good.id) == 64 and good.bytes == (raw / "Happy/a.jpg").stat().st_size
    # Duplicates are listed, not merged: both copies stay, pointing at the first by path.
    assert by_path.loc["neutral/dup.jpg", "duplicate_of"] == "Happy/a.jpg"
    assert by_path.loc["neutral/link_in.jpg", "duplicate_of"] == "Happy/a.jpg"
    assert by_path.loc["neutral/dup.jpg", "id"] == good.id
    assert (df.loc[df.path != "neutral/dup.jpg", "duplicate_of"] != "Happy/a.jpg").sum() == (
        len(df) - 2
    )
    rejected = df[df.status == "rejected"]
    assert (rejected[["width", "height"]] == 0).all().all()
    assert df.loc[df.path == "neutral/empty.jpg", "bytes"].item() == 0
    assert by_path.loc["neutral/broken.jpg", "id"] == ""
    # Location-rejected files are still hashed, so they remain traceable.
    assert len(by_path.loc["Weird/w.jpg", "id"]) == 64


def test_process_pool_gives_the_same_manifest(raw: Path, make_params: Callable[..., Path]) -> None:
    for i in range(80):  # more than one chunk, so the pool really runs
        (raw / "Happy" / f"n{i:03d}.png").write_bytes(encode(noise(6, 6, 100 + i), "PNG"))
    cfg1 = load_config(ingest_params(make_params, raw, unknown_folders="ignore"))
    one = stage.run(cfg1)
    df1 = pd.read_parquet(cfg1.ingest.manifest)
    cfg2 = load_config(ingest_params(make_params, raw, unknown_folders="ignore", workers=2))
    two = stage.run(cfg2)
    df2 = pd.read_parquet(cfg2.ingest.manifest)
    pd.testing.assert_frame_equal(df1, df2)
    assert one["total"] == two["total"] == len(EXPECTED) + 80
    assert two["ok"] == one["ok"] and two["duplicate_groups"] == 1


def test_scan_is_case_insensitive_and_skips_junk(raw: Path) -> None:
    tax = Taxonomy({"positive": ["happy"], "negative": ["angry"], "neutral": ["neutral"]})
    scan = scan_tree(raw, tax)
    assert scan.unknown_folders == ["Weird"]
    paths = [e.path for e in scan.entries]
    assert not any(is_junk(Path(p).name) for p in paths)
    assert not any(p.startswith(".git") for p in paths)
    assert {e.label for e in scan.entries if e.path.startswith("Happy/")} == {"positive"}


def test_symlinked_folders_inside_raw(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    (root / "happy").mkdir(parents=True)
    (root / "happy" / "a.png").write_bytes(encode(noise(4, 4, 0), "PNG"))
    os.symlink(root / "happy", root / "happy" / "loop")  # a cycle must not hang
    os.symlink(root / "happy", root / "angry")  # sorts first: must not hide happy/
    tax = Taxonomy({"positive": ["happy"], "negative": ["angry"], "neutral": ["neutral"]})
    got = {e.path: (e.label, e.reason) for e in scan_tree(root, tax).entries}
    assert got == {
        "angry/a.png": ("negative", ""),
        "angry/loop": ("negative", "symlink_loop"),
        "happy/a.png": ("positive", ""),
        "happy/loop": ("positive", "symlink_loop"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "file"])
def test_bad_raw_dir_is_one_line_exit_2(
    case: str, tmp_path: Path, make_params: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw"
    if case == "empty":
        (raw / "happy").mkdir(parents=True)
        (raw / ".fer-sandbox").write_text("marker")  # junk only: still empty
    elif case == "file":
        raw.write_text("not a folder")
    assert main(["ingest", "--params", str(ingest_params(make_params, raw))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(raw) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", ["ingest:\n  raw_dri: data/raw\n", "a: [unclosed\n", None])
def test_bad_params_is_one_line_exit_2(
    content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    if content is not None:
        params.write_text(content)
    assert main(["ingest", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "params.yaml" in err


def test_unreadable_file_recorded(raw: Path, make_params: Callable[..., Path]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    locked = raw / "Happy" / "locked.jpg"
    shutil.copy(raw / "Happy" / "a.jpg", locked)
    locked.chmod(0)
    try:
        cfg = load_config(ingest_params(make_params, raw, unknown_folders="ignore"))
        stage.run(cfg)
    finally:
        locked.chmod(0o644)
    df = pd.read_parquet(cfg.ingest.manifest).set_index("path")
    assert df.loc["Happy/locked.jpg", "reason"] == "unreadable"

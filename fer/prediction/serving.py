"""The MLflow pyfunc: raw images in, faces with boxes and probabilities out.

Detector, crop policy, preprocessing and classifier travel together: the model's artifacts are
``model.pt`` and the detector's model files (each backend declares them), and ``code_paths``
ships the ``fer`` package, so ``mlflow.pyfunc.load_model(uri).predict(df)`` works in a fresh
process and behind ``mlflow models serve``. This module never imports mlflow: fer/tracking.py,
which logs the model, makes :class:`FacePyfunc` an ``mlflow.pyfunc.PythonModel`` then.

Input: a DataFrame with column ``image`` holding base64 text, raw bytes or a file path (one
image per row). Output: a DataFrame with one row per input, ``faces`` (JSON list of
``{"box": [x, y, w, h], "score", "probs": {"positive", "negative", "neutral"}, "label"}``) and
``error`` ("" or ``<reason>: <message>``); a bad image never fails the other rows.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
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
DETECTOR_ARTIFACT = "detector_0"


def pip_requirements() -> list[str]:
    """``name==version`` for every runtime dependency of the pyfunc (local build tags dropped)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def image_bytes(value: Any) -> bytes:
    """Raw bytes of one ``image`` cell: bytes, an existing file path, or base64 text.

    Raises:
        ValueError: none of those (message says which).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("empty: expected base64 text, bytes or a file path")
    text = value.strip()
    if len(text) < MAX_PATH_LEN and "\n" not in text:
        path = Path(text).expanduser()
        try:
            if path.is_file():
                return path.read_bytes()
        except OSError:
            pass
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]  # data URL
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("not a file path and not valid base64") from None


class FacePyfunc:
    """Detector + crops + classifier behind one ``predict(DataFrame)`` (an MLflow pyfunc)."""

    # MLflow would derive a schema from predict()'s type hints and warn that there are none;
    # the logged signature (a DataFrame with one string column ``image``) is explicit instead.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Build the detector and load the classifier from the model's artifacts."""
        import torch

        from fer.faces.detectors import create_detector
        from fer.prediction.inference import FaceClassifier

        self.classifier = FaceClassifier.load(
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
        self.crop_cfg = self.classifier.crop_config()
        self.max_pixels = int(config.get("max_pixels", 89_478_485))

    def predict(self, context, model_input, params=None):
        """One output row per input row: ``faces`` (JSON) and ``error``.

        Not annotated: MLflow would try to turn the hints into a schema and warn.
        """
        from fer.data.images import DecodeError, load_rgb
        from fer.prediction.inference import analyze_image

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "image" not in frame.columns:
            raise ValueError("input needs a column 'image' (base64 text, bytes or a file path)")
        faces_out: list[str] = []
        errors: list[str] = []
        for value in frame["image"].tolist():
            try:
                rgb = load_rgb(image_bytes(value), max_pixels=self.max_pixels)
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


def log_arguments(weights: Path, *, detector: DetectorSettings) -> dict[str, Any]:
    """Keyword arguments for ``RunLogger.log_pyfunc``: model, artifacts, examples, requirements.

    The detector's model files (:func:`fer.faces.detectors.packaged_files`) travel as
    artifacts ``detector_0`` (what ``model_path`` names), ``detector_1``, ...
    """
    import fer
    from fer.faces.detectors import packaged_files

    artifacts = {"weights": str(weights)}
    files = packaged_files(detector)
    artifacts.update({f"detector_{i}": str(path) for i, path in enumerate(files)})
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

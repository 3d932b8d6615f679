"""fer: orchestrated facial-expression recognition.

Importing ``fer`` has no side effects and imports no heavy dependency; each stage imports what
it needs when it runs.
"""

import os as _os

CLASSES: tuple[str, ...] = ("positive", "negative", "neutral")
"""The three target classes, in the order of every probability vector we emit."""

FER2013_EMOTIONS: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
)  # fmt: skip
"""FER2013's label order (its CSV's ``emotion`` index; also mini-Xception's output order)."""

TELEMETRY_OFF: dict[str, str] = {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
}
"""Offline by design: no library may phone home (set by the CLI, before any of them loads)."""


def disable_telemetry() -> None:
    """Turn every library's telemetry off; ``setdefault`` keeps a user's explicit choice."""
    for key, value in TELEMETRY_OFF.items():
        _os.environ.setdefault(key, value)


__version__ = "0.1.0"

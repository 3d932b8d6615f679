"""Error families. The CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class FerError(Exception):
    """Base for errors a user can fix (bad params, missing inputs). Exit code 2."""

    exit_code = 2


class ConfigError(FerError):
    """params.yaml is missing, unreadable, or holds an unknown key, wrong type or bad value."""


class InputError(FerError):
    """An input file or folder is missing, empty or unusable."""


class ModelError(FerError):
    """A model file, weights file or model URI cannot be found or loaded."""


class TrackingError(FerError):
    """The MLflow tracking server or store cannot be reached or used (a damaged database).

    Exit code 3: neither a user's params mistake (2) nor a failed data gate (1).
    """

    exit_code = 3


class GateError(FerError):
    """A blocking data-validation expectation failed; the pipeline must stop before training."""

    exit_code = 1

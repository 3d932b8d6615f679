"""The expression → class taxonomy (18 expression folders to positive/negative/neutral)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fer import CLASSES
from fer.errors import ConfigError


class Taxonomy:
    """Case-insensitive map from expression folder names to the three classes."""

    def __init__(self, mapping: Mapping[str, Sequence[str]]) -> None:
        self._class_of: dict[str, str] = {}
        for cls in CLASSES:
            for name in mapping.get(cls, ()):
                self._class_of[normalize(name)] = cls

    @property
    def expressions(self) -> list[str]:
        """All expression names, normalised, in class order then params order."""
        return list(self._class_of)

    def expressions_of(self, cls: str) -> list[str]:
        """Expression names that map to ``cls``."""
        return [e for e, c in self._class_of.items() if c == cls]

    def class_of(self, expression: str) -> str | None:
        """The class of a folder name, or None when the taxonomy does not know it."""
        return self._class_of.get(normalize(expression))

    def folder(self, key: str, name: str) -> str:
        """``name`` normalised, checked to be a folder of this taxonomy.

        Raises:
            ConfigError: it is not, naming the params ``key`` that gave it.
        """
        if name not in self:
            raise ConfigError(
                f"{key}: folder {name!r} is not in the taxonomy "
                f"(one of {', '.join(self.expressions)})"
            )
        return normalize(name)

    def __contains__(self, expression: object) -> bool:
        return isinstance(expression, str) and normalize(expression) in self._class_of


def normalize(name: str) -> str:
    """Folder names match case-insensitively and ignore surrounding spaces."""
    return name.strip().lower()

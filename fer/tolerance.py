"""Compare two sets of metrics within stated tolerances: "the same result" across machines.

On one machine the pipeline is byte-for-byte reproducible. Across machines it is not: float
sums run in another order on another CPU (kernel blocking follows cache sizes and thread counts),
a face near a decision boundary flips, and every figure downstream moves a little. So committed
figures come with tolerances (``metrics/tolerances.yaml``), and ``fer check`` holds a fresh run
to them. Pure functions: JSON dicts in, deviations out.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """Keys matching ``key`` (a shell pattern over ``file:dotted.path``) may differ by ``abs``
    or by ``rel`` × the committed value, whichever is larger; unmatched keys must be equal."""

    key: str
    abs: float = 0.0
    rel: float = 0.0

    def allows(self, committed: float, fresh: float) -> bool:
        """Whether ``fresh`` is within this rule of ``committed``."""
        bound = max(self.abs, self.rel * abs(committed))
        return abs(fresh - committed) <= bound + 1e-12


@dataclass(frozen=True)
class Deviation:
    """One key whose fresh value is outside its tolerance (or missing on one side)."""

    key: str
    committed: Any
    fresh: Any
    allowed: str  # the rule, in words

    def line(self) -> str:
        """One table row: key, committed, fresh, allowed."""
        return f"{self.key}: committed {self.committed!r}, fresh {self.fresh!r} ({self.allowed})"


def parse_rules(doc: Mapping[str, Any]) -> list[Rule]:
    """Rules from the tolerances file's ``rules`` list.

    Raises:
        ValueError: a malformed rule (the message names it).
    """
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ValueError("needs a non-empty `rules:` list of {key, abs, rel}")
    out = []
    for i, raw in enumerate(rules):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("key"), str):
            raise ValueError(f"rules[{i}]: needs a `key` pattern, got {raw!r}")
        unknown = set(raw) - {"key", "abs", "rel"}
        if unknown:
            raise ValueError(f"rules[{i}] ({raw['key']}): unknown fields {sorted(unknown)}")
        bounds = {k: float(raw.get(k, 0.0)) for k in ("abs", "rel")}
        if any(v < 0 or math.isnan(v) for v in bounds.values()):
            raise ValueError(f"rules[{i}] ({raw['key']}): abs and rel must be >= 0")
        out.append(Rule(raw["key"], **bounds))
    return out


def flatten(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` → ``("a.b", 1)``; lists and scalars are leaves."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{path}.")
        else:
            yield path, value


def rule_for(key: str, rules: list[Rule]) -> Rule | None:
    """The first rule whose pattern matches ``key`` (None: must be equal)."""
    return next((r for r in rules if fnmatch.fnmatchcase(key, r.key)), None)


def _describe(rule: Rule | None) -> str:
    if rule is None or (rule.abs == 0 and rule.rel == 0):
        return "must be equal"
    parts = [f"±{rule.abs:g}"] if rule.abs else []
    parts += [f"±{rule.rel:.0%}"] if rule.rel else []
    return " or ".join(parts) + f" by {rule.key}"


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(
    committed: Mapping[str, Mapping[str, Any]],
    fresh: Mapping[str, Mapping[str, Any]],
    rules: list[Rule],
) -> tuple[list[Deviation], int]:
    """Deviations of ``fresh`` from ``committed`` (both ``{file name: metrics dict}``).

    Returns the deviations and the number of keys compared.
    """
    left = {f"{f}:{k}": v for f, doc in committed.items() for k, v in flatten(doc)}
    right = {f"{f}:{k}": v for f, doc in fresh.items() for k, v in flatten(doc)}
    deviations = []
    for key in sorted(left.keys() | right.keys()):
        a, b = left.get(key, "(missing)"), right.get(key, "(missing)")
        rule = rule_for(key, rules)
        if _numeric(a) and _numeric(b):
            ok = a == b or (rule is not None and rule.allows(float(a), float(b)))
        else:
            ok = a == b
        if not ok:
            deviations.append(Deviation(key, a, b, _describe(rule)))
    return deviations, len(left.keys() | right.keys())

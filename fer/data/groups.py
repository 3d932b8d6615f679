"""Grouping: disjoint sets, for leakage groups (split) and duplicate groups (validate)."""

from __future__ import annotations

from collections import defaultdict


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        """Representative of ``x``'s set."""
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def components(self) -> list[list[int]]:
        """All sets, each sorted, in order of their smallest member."""
        groups: dict[int, list[int]] = defaultdict(list)
        for x in range(len(self.parent)):
            groups[self.find(x)].append(x)
        return sorted(groups.values(), key=lambda g: g[0])

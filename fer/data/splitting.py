"""Group-aware, stratified, seeded train/val/test split (pure logic of `fer split`).

A *leakage group* is every face that must stay together: all faces of one source image, all
copies of an exact duplicate (same content id) and every duplicate group found by validation.
Whole groups are assigned greedily, largest first (ties in a seeded order), each to the split
whose per-class quota is least filled, so every class lands close to the requested fractions
while no group ever crosses splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fer.data.groups import UnionFind

if TYPE_CHECKING:
    import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")


def leakage_groups(
    paths: Sequence[str],
    image_ids: Sequence[str],
    duplicate_group_of: Mapping[str, str] | None = None,
) -> list[str]:
    """Group name per face (``grp000001`` ...; numbered in order of each group's first path).

    Args:
        paths: source image path per face.
        image_ids: content id per face (equal ids are exact duplicates; "" links nothing).
        duplicate_group_of: image path → duplicate group from validation.
    """
    if len(paths) != len(image_ids):
        raise ValueError(f"{len(paths)} paths but {len(image_ids)} image ids")
    nodes = sorted(set(paths))
    index = {p: i for i, p in enumerate(nodes)}
    uf = UnionFind(len(nodes))
    first_by_key: dict[tuple[str, str], int] = {}

    def link(kind: str, key: str, node: int) -> None:
        first = first_by_key.setdefault((kind, key), node)
        uf.union(first, node)

    for path, image_id in zip(paths, image_ids, strict=True):
        if image_id:
            link("id", image_id, index[path])
    for path, group in (duplicate_group_of or {}).items():
        if path in index and group:
            link("dup", group, index[path])
    name: dict[int, str] = {}
    for number, component in enumerate(uf.components(), start=1):
        for node in component:
            name[node] = f"grp{number:06d}"
    return [name[index[p]] for p in paths]


def assign_splits(
    groups: Sequence[str],
    labels: Sequence[str],
    fractions: Mapping[str, float],
    seed: int,
) -> list[str]:
    """Split name per face; every face of a group gets the same split.

    Args:
        groups: leakage group per face.
        labels: class per face (stratification target).
        fractions: split name → fraction (summing to 1; zero-fraction splits stay empty).
        seed: tie order between equally large groups.
    """
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups but {len(labels)} labels")
    names = [s for s, f in fractions.items() if f > 0]
    if not names:
        raise ValueError("at least one split needs a positive fraction")
    total = sum(fractions[s] for s in names)
    frac = np.array([fractions[s] / total for s in names])
    classes = sorted(set(labels))
    cls_index = {c: k for k, c in enumerate(classes)}
    group_names = sorted(set(groups))
    g_index = {g: i for i, g in enumerate(group_names)}
    counts = np.zeros((len(group_names), len(classes)))
    for g, c in zip(groups, labels, strict=True):
        counts[g_index[g], cls_index[c]] += 1
    class_total = np.maximum(counts.sum(axis=0), 1.0)
    target = frac[:, None] * class_total[None, :]
    filled = np.zeros_like(target)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(group_names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    choice = np.zeros(len(group_names), dtype=np.int64)
    for g in order:
        # Deficit of each split, as a fraction of each class, weighted by this group's faces.
        need = ((target - filled) / class_total[None, :]) @ counts[g]
        s = int(np.argmax(need))
        choice[g] = s
        filled[s] += counts[g]
    return [names[choice[g_index[g]]] for g in groups]


def apply_label_actions(
    faces: pd.DataFrame, issues: pd.DataFrame
) -> tuple[pd.DataFrame, pd.Series]:
    """Training labels after validation's verdicts, and which faces to exclude.

    ``issues`` is ``label_issues.csv``: ``exclude`` drops the face, ``relabel`` trains it on
    ``suggested_label``, ``flag`` changes nothing.

    Returns:
        (faces with ``given_label`` and ``label`` columns, boolean Series: excluded).
    """
    out = faces.copy()
    out["given_label"] = out["label"]
    action = dict(zip(issues["face_id"], issues["action"], strict=False))
    suggested = dict(zip(issues["face_id"], issues["suggested_label"], strict=False))
    acts = out["face_id"].map(action).fillna("")
    relabel = acts == "relabel"
    out.loc[relabel, "label"] = out.loc[relabel, "face_id"].map(suggested)
    return out, acts == "exclude"

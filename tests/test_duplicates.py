"""Exact and near duplicates: hashes of real photos, banded lookup vs brute force, groups."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from skimage import data

from fer.validation import duplicates as d


def reencode(rgb: np.ndarray, quality: int, scale: float = 1.0) -> np.ndarray:
    """A re-saved copy: optionally resized, JPEG at ``quality``, decoded again."""
    if scale != 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
    }


def test_dhash_near_for_reencoded_far_for_different(photos: dict[str, np.ndarray]) -> None:
    a = photos["astronaut"]
    h = d.dhash(a)
    assert d.dhash(a) == h  # deterministic
    assert d.hamming(h, d.dhash(reencode(a, 40))) <= 4
    assert d.hamming(h, d.dhash(reencode(a, 70, scale=0.5))) <= 4
    for other in ("coffee", "chelsea"):
        assert d.hamming(h, d.dhash(photos[other])) > 12


def test_near_pairs_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = [int(v) for v in rng.integers(0, 2**63, 300, dtype=np.int64)]
    hashes = list(base)
    for h in base[:60]:  # planted neighbours at distance 0..6
        bits = rng.choice(64, int(rng.integers(0, 7)), replace=False)
        hashes.append(h ^ sum(1 << int(b) for b in bits))
    hashes += hashes[:5]  # identical copies too
    for max_distance in (0, 2, 4, 6):
        brute = sorted(
            (i, j)
            for i, j in itertools.combinations(range(len(hashes)), 2)
            if d.hamming(hashes[i], hashes[j]) <= max_distance
        )
        assert d.near_pairs(hashes, max_distance) == brute
        assert len(brute) >= 5
    odd = d.near_pairs(hashes, 4, verify=lambda i, j: (i + j) % 2 == 1)
    assert odd == [p for p in d.near_pairs(hashes, 4) if sum(p) % 2 == 1]


def test_fingerprint_tells_similar_faces_from_copies() -> None:
    """Two drawn faces differing only in colour share a dHash; the thumbnail tells them apart."""
    faces = []
    for skin in ((200, 160, 130), (120, 80, 60)):
        img = np.full((64, 64, 3), 30, np.uint8)
        cv2.ellipse(img, (32, 32), (22, 28), 0, 0, 360, skin, -1)
        for x in (24, 40):
            cv2.circle(img, (x, 26), 3, (20, 20, 20), -1)
        cv2.ellipse(img, (32, 44), (8, 4), 0, 0, 180, (90, 20, 20), 2)
        faces.append(img)
    a, b = (d.fingerprint(f) for f in faces)
    copy = d.fingerprint(reencode(faces[0], 60))
    assert a is not None and b is not None and copy is not None
    assert d.hamming(a.hash, b.hash) <= 4  # the hash alone would call them duplicates
    assert d.thumb_rms(a.thumb, b.thumb) > 30
    assert d.hamming(a.hash, copy.hash) <= 4 and d.thumb_rms(a.thumb, copy.thumb) < 8
    assert d.crop_links([0, 1, 2], [a, b, copy], max_distance=4, max_rms=8) == [(0, 2)]
    assert d.fingerprint(np.full((64, 64, 3), 128, np.uint8)) is None  # flat: not comparable


def test_duplicate_groups_exact_near_and_crop(photos: dict[str, np.ndarray]) -> None:
    a, b, c = photos["astronaut"], photos["coffee"], photos["chelsea"]
    paths = ["happy/a.jpg", "calm/a_copy.jpg", "angry/a_small.jpg", "happy/b.jpg", "calm/c.jpg"]
    ids = ["id_a", "id_a", "id_a_small", "id_b", "id_c"]
    prints = [d.fingerprint(x) for x in (a, a, reencode(a, 50, 0.5), b, c)]
    rows = d.duplicate_groups(paths, ids, prints, max_distance=4, max_rms=8)
    assert {(r["path"], r["kind"]) for r in rows} == {
        ("happy/a.jpg", "exact"),
        ("calm/a_copy.jpg", "exact"),
        ("angry/a_small.jpg", "near_image"),
    }
    assert len({r["group"] for r in rows}) == 1

    # A face crop of c appearing (re-encoded) in b links b and c as near_crop.
    face = c[100:228, 150:278]
    crop_prints = [d.fingerprint(x) for x in (face, reencode(face, 60), a[:128, :128])]
    links = d.crop_links([4, 3, 0], crop_prints, max_distance=4, max_rms=8)
    assert links == [(3, 4)]
    rows = d.duplicate_groups(paths, ids, prints, links, max_distance=4, max_rms=8)
    groups: dict[str, set[str]] = {}
    for r in rows:
        groups.setdefault(str(r["group"]), set()).add(str(r["path"]))
    assert sorted(map(sorted, groups.values())) == [
        ["angry/a_small.jpg", "calm/a_copy.jpg", "happy/a.jpg"],
        ["calm/c.jpg", "happy/b.jpg"],
    ]
    assert {r["kind"] for r in rows if r["path"] in ("happy/b.jpg", "calm/c.jpg")} == {"near_crop"}


def test_unreadable_and_unhashed_images_are_not_grouped() -> None:
    fp = d.Fingerprint(5, np.zeros((8, 8, 3), np.uint8))
    rows = d.duplicate_groups(
        ["a", "b", "c"], ["", "", "x"], [None, None, fp], max_distance=4, max_rms=8
    )
    assert rows == []
    with pytest.raises(ValueError, match="same length"):
        d.duplicate_groups(["a"], [], [], max_distance=1, max_rms=8)

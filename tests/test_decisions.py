"""Reviewed decisions: parsing, one-line errors naming the row, keys that survive a re-detection,
vanished images reported, and their effect on the split."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from fer.data.splitting import apply_label_actions
from fer.errors import InputError
from fer.validation import decisions as dec

HEADER = ",".join(dec.COLUMNS)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


A, B, C, GONE = sha("a"), sha("b"), sha("c"), sha("gone")


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def faces_table(shift: int = 0, reorder: bool = False) -> pd.DataFrame:
    """Image A has two faces, B one; ``shift`` moves every box, ``reorder`` swaps A's indices
    (what a re-detection with another threshold or backend does)."""
    rows = [
        ("fa0", A, "happy/a.jpg", "positive", 10, 10, 40, 40),
        ("fa1", A, "happy/a.jpg", "positive", 100, 20, 50, 50),
        ("fb0", B, "calm/b.jpg", "neutral", 5, 5, 60, 60),
    ]
    if reorder:
        rows[0], rows[1] = (("fa0", *rows[1][1:]), ("fa1", *rows[0][1:]))
    df = pd.DataFrame(rows, columns=["face_id", "image_id", "path", "label", "x", "y", "w", "h"])
    for col in ("x", "y"):
        df[col] += shift
    return df


def quarantine_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"path": ["angry/c.jpg"], "image_id": [C], "reason": ["no_face"]}, dtype=str
    )


def test_parse_round_trip_and_normalisation() -> None:
    text = csv_text(
        f"{A},10 10 40 40,relabel,Negative,ann,2025-01-01T00:00:00Z,happy/a.jpg,looks sad",
        f"{B},,drop,,bob,,calm/b.jpg,",
        f"{C.upper()},,restore,,,,angry\\c.jpg,",
        ",,,,,,,",  # blank rows are ignored
    )
    rows = dec.parse_decisions(text, "d.csv")
    assert [(d.action, d.label, d.box) for d in rows] == [
        ("relabel", "negative", (10, 10, 40, 40)),
        ("drop", "", None),
        ("restore", "", None),
    ]
    assert rows[2].image_id == C and rows[2].path == "angry/c.jpg"
    assert [d.line for d in rows] == [2, 3, 4]
    again = dec.parse_decisions(dec.format_decisions(rows), "d.csv")
    assert again == rows
    assert dec.parse_decisions("", "d.csv") == []
    assert dec.parse_decisions(HEADER + "\n", "d.csv") == []
    minimal = dec.parse_decisions(f"image_id,action\n{A},keep\n", "d.csv")
    assert minimal[0].key == (A, "")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"{A},,relabel,happy,,,,", "d.csv line 3: unknown class 'happy'"),
        (f"{A},,relabel,,,,,", "d.csv line 3: unknown class missing"),
        (f"{A},,dorp,,,,,", "d.csv line 3: unknown action 'dorp'"),
        (f"{A},,drop,positive,,,,", "d.csv line 3: label 'positive' given for action 'drop'"),
        (f"{A},1 2 3,drop,,,,,", "d.csv line 3: box '1 2 3' is not 'x y w h'"),
        (f"{A},1 2 0 4,drop,,,,,", "d.csv line 3: box '1 2 0 4'"),
        (f"{A},1 2 3 4,restore,,,,,", "d.csv line 3: restore applies to a whole image"),
        ("abc,,drop,,,,,", "d.csv line 3: image_id 'abc' is not a sha256"),
        (f"{A},,drop,,,,../../etc/passwd,", "d.csv line 3: path '../../etc/passwd' is outside"),
        (f"{A},,drop,,,,/etc/passwd,", "d.csv line 3: path '/etc/passwd' is outside the data"),
        (f"{A},,drop,,,,C:/x.jpg,", "d.csv line 3: path 'C:/x.jpg' is outside the data"),
        (f"{B},,keep,,,,,", "d.csv line 3: duplicate decision for image"),
        (f"{A},,keep,,,,,,extra", "d.csv line 3: more cells than columns"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_row(row: str, message: str) -> None:
    text = csv_text(f"{B},,drop,,,,,", row)
    with pytest.raises(InputError) as info:
        dec.parse_decisions(text, "d.csv")
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_duplicates_by_key_and_by_overlap() -> None:
    same_face = csv_text(f"{A},10 10 40 40,keep,,,,,", f"{A},12 11 40 40,drop,,,,,")
    with pytest.raises(InputError, match=r"line 3: duplicate decision .* \(first on line 2\)"):
        dec.parse_decisions(same_face, "d.csv")
    other_face = csv_text(f"{A},10 10 40 40,keep,,,,,", f"{A},100 20 50 50,drop,,,,,")
    assert len(dec.parse_decisions(other_face, "d.csv")) == 2
    face_and_image = csv_text(f"{A},10 10 40 40,keep,,,,,", f"{A},,restore,,,,,")
    assert len(dec.parse_decisions(face_and_image, "d.csv")) == 2


def test_bad_header() -> None:
    with pytest.raises(InputError, match=r"d\.csv: missing column 'action'"):
        dec.parse_decisions("image_id,box\n", "d.csv")
    with pytest.raises(InputError, match=r"d\.csv: unknown column 'colour'"):
        dec.parse_decisions("image_id,action,colour\n", "d.csv")


def decided() -> list[dec.Decision]:
    return dec.parse_decisions(
        csv_text(
            f"{A},100 20 50 50,relabel,negative,,,happy/a.jpg,",  # A's second face
            f"{A},,keep,,,,happy/a.jpg,",  # the rest of A
            f"{B},5 5 60 60,not_face,,,,calm/b.jpg,",
            f"{C},,restore,,,,angry/c.jpg,",
            f"{GONE},,drop,,,,sad/gone.jpg,",
            f"{B},300 300 20 20,drop,,,,calm/b.jpg,",  # no such face any more
        ),
        "d.csv",
    )


@pytest.mark.parametrize(("shift", "reorder"), [(0, False), (3, False), (0, True), (4, True)])
def test_keys_survive_a_redetection(shift: int, reorder: bool) -> None:
    """Boxes shifted by a few pixels and face indices swapped: same faces decided."""
    faces = faces_table(shift, reorder)
    res = dec.resolve(decided(), faces, quarantine_table())
    by_box = {
        (int(x) - shift, int(y) - shift): res.by_face[f].action
        for f, x, y in zip(faces["face_id"], faces["x"], faces["y"], strict=True)
    }
    assert by_box == {(100, 20): "relabel", (10, 10): "keep", (5, 5): "not_face"}
    assert res.restore == {C}


def test_vanished_and_unmatched_are_reported_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "review_decisions.csv"
    dec.write_decisions(path, decided())
    before = path.read_text()
    res = dec.resolve(dec.read_decisions(path), faces_table(), quarantine_table())
    assert [d.path for d in res.vanished] == ["sad/gone.jpg"]
    assert [d.box for d in res.unmatched] == [(300, 300, 20, 20)]
    report = res.report()
    assert report["rows"] == 6 and len(report["vanished"]) == 1
    assert report["vanished"][0]["line"] == 6
    assert path.read_text() == before  # resolving never rewrites the file


def test_apply_to_faces_after_label_actions() -> None:
    faces = faces_table()
    issues = pd.DataFrame(
        {
            "face_id": ["fa0", "fa1", "fb0"],
            "suggested_label": ["neutral", "neutral", "positive"],
            "action": ["exclude", "relabel", "flag"],
        }
    )
    out, issue_drop = apply_label_actions(faces, issues)
    res = dec.resolve(decided(), faces, quarantine_table())
    out, drop, reviewed = dec.apply_to_faces(out, issue_drop, res)
    assert list(issue_drop) == [True, False, False]
    # keep overrides validation's exclude; relabel beats validation's relabel; not_face drops
    assert list(drop) == [False, False, True]
    assert list(out["label"]) == ["positive", "negative", "neutral"]
    assert list(out["given_label"]) == ["positive", "positive", "neutral"]
    assert reviewed.all()


def test_restore_takes_images_out_of_quarantine() -> None:
    q = pd.concat(
        [
            quarantine_table(),
            pd.DataFrame({"path": ["happy/a.jpg"], "image_id": [A], "reason": ["crop_missing"]}),
        ],
        ignore_index=True,
    )
    rows = dec.parse_decisions(csv_text(f"{C},,restore,,,,,", f"{A},,restore,,,,,"), "d.csv")
    res = dec.resolve(rows, faces_table(), q)
    left, restored, no_crops = dec.apply_restores(q, faces_table(), res)
    assert left.empty
    assert restored == ["angry/c.jpg", "happy/a.jpg"]
    assert no_crops == ["angry/c.jpg"]  # a no-face image still has nothing to train on


def test_exact_duplicates_at_two_paths_share_the_decision() -> None:
    faces = pd.concat([faces_table(), faces_table().assign(path="copy/a.jpg")], ignore_index=True)
    faces["face_id"] = [f"f{k}" for k in range(len(faces))]
    rows = dec.parse_decisions(csv_text(f"{A},10 10 40 40,drop,,,,,"), "d.csv")
    res = dec.resolve(rows, faces, quarantine_table())
    assert sorted(res.by_face) == ["f0", "f3"]
    assert res.unmatched == []


def test_migrate_restore_list() -> None:
    manifest = pd.DataFrame(
        {"path": ["angry/c.jpg", "happy/a.jpg", "bad/x.jpg"], "id": [C, A, ""]}
    )
    existing = dec.parse_decisions(csv_text(f"{A},,keep,,,,,"), "d.csv")
    new, unmapped, already = dec.migrate_restore_list(
        ["angry/c.jpg", "happy/a.jpg", "bad/x.jpg", "not/there.jpg"],
        manifest, existing, reviewer="migration", time="2025-01-01T00:00:00Z",
    )  # fmt: skip
    assert [(d.image_id, d.action, d.path) for d in new] == [(C, "restore", "angry/c.jpg")]
    assert unmapped == ["bad/x.jpg", "not/there.jpg"]
    assert already == ["happy/a.jpg"]
    with pytest.raises(InputError, match=r"restore.txt entry 1: path '\.\./x' is outside"):
        dec.migrate_restore_list(["../x"], manifest, [], reviewer="m", time="t",
                                 source="restore.txt")  # fmt: skip

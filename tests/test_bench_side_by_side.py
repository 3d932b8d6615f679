"""Scoring and label mapping of benchmarks/bench_side_by_side.py on tiny known cases.

The peers themselves (face-api on Node, the PyPI fer package) are not run here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_side_by_side as sbs

from fer.learning.models.emotions import DEFAULT_EMOTION_CLASSES

CLASSES_OF = dict(DEFAULT_EMOTION_CLASSES)


def seven(**probs: float) -> dict[str, float]:
    """FER-7 probabilities, the unnamed ones 0."""
    return {e: probs.get(e, 0.0) for e in sbs.FER7}


def test_folder_and_peer_label_names_map_to_fer7() -> None:
    assert sbs.emotion_name("Anger") == "angry"
    assert sbs.emotion_name("sadness") == "sad"
    assert sbs.emotion_name("fearful") == "fear"  # face-api's spelling
    assert sbs.emotion_name("surprised") == "surprise"
    assert sbs.emotion_name("contempt") is None
    assert sbs.emotion_name("positive") is None


def test_valence_sums_probabilities_per_class_like_fer_pools_a_7_emotion_model() -> None:
    # neutral is the top emotion, but angry + sad together make the face negative
    probs = seven(neutral=0.4, angry=0.3, sad=0.3)
    assert sbs.top_emotion(probs) == "neutral"
    assert sbs.valence(probs, CLASSES_OF) == "negative"
    assert sbs.valence(seven(happy=0.6, surprise=0.4), CLASSES_OF) == "positive"
    assert sbs.valence(seven(happy=0.45, surprise=0.55), CLASSES_OF) == "negative"


def test_three_class_output_passes_through_and_has_no_top_emotion() -> None:
    probs = {"positive": 0.2, "negative": 0.1, "neutral": 0.7}
    assert sbs.valence(probs, CLASSES_OF) == "neutral"
    assert sbs.top_emotion(probs) is None
    faceapi = {"neutral": 0.0, "happy": 0.1, "sad": 0.0, "angry": 0.0, "fearful": 0.9,
               "disgusted": 0.0, "surprised": 0.0}  # fmt: skip
    assert sbs.top_emotion(faceapi) == "fear"
    assert sbs.valence(faceapi, CLASSES_OF) == "negative"


def test_the_largest_face_decides() -> None:
    small = {"box": [0, 0, 10, 10], "probs": seven(happy=1.0)}
    big = {"box": [50, 50, 40, 30], "probs": seven(sad=1.0)}
    assert sbs.largest_face([small, big]) is big
    assert sbs.largest_face([]) is None
    outcome = sbs.image_outcome("sad", [small, big], CLASSES_OF)
    assert outcome == {
        "truth": "sad", "truth_valence": "negative", "found": True, "n_faces": 2,
        "valence": "negative", "emotion": "sad",
    }  # fmt: skip


def test_score_leaves_surprise_out_of_valence_and_counts_a_miss_as_wrong() -> None:
    face = lambda **p: [{"box": [0, 0, 10, 10], "probs": seven(**p)}]  # noqa: E731
    outcomes = [
        sbs.image_outcome("happy", face(happy=0.9, neutral=0.1), CLASSES_OF),  # right
        sbs.image_outcome("angry", face(sad=0.8, happy=0.2), CLASSES_OF),  # valence right
        sbs.image_outcome("neutral", face(happy=0.7, neutral=0.3), CLASSES_OF),  # wrong
        sbs.image_outcome("fear", [], CLASSES_OF),  # no face: wrong
        sbs.image_outcome("surprise", face(surprise=1.0), CLASSES_OF),  # 7-class only
    ]
    got = sbs.score(outcomes, seven=True)
    assert got["n"] == 5 and got["n_valence"] == 4
    assert got["valence_accuracy"] == 0.5  # 2 of 4
    assert got["valence_accuracy_found"] == pytest.approx(0.6667)  # 2 of 3
    assert got["seven_class_accuracy"] == 0.4  # happy and surprise, of 5
    assert got["found_rate"] == 0.8
    assert sbs.score(outcomes, seven=False)["seven_class_accuracy"] is None


def test_score_of_a_pipeline_that_found_nothing() -> None:
    outcomes = [sbs.image_outcome(e, [], CLASSES_OF) for e in ("happy", "sad")]
    got = sbs.score(outcomes, seven=True)
    assert got["valence_accuracy"] == 0.0
    assert got["valence_accuracy_found"] is None
    assert got["seven_class_accuracy"] == 0.0
    assert got["found_rate"] == 0.0


def test_load_set_reads_emotion_folders_and_spaces_the_limit(tmp_path: Path) -> None:
    for folder, names in {
        "anger": ["a1.jpg", "a2.png", "notes.txt"],
        "happy": ["h1.jpg", "h2.jpg"],
        "contempt": ["c1.jpg"],  # not FER-7: skipped
    }.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"x")
    pairs = sbs.load_set(tmp_path)
    assert [(p.name, e) for p, e in pairs] == [
        ("a1.jpg", "angry"), ("a2.png", "angry"), ("h1.jpg", "happy"), ("h2.jpg", "happy"),
    ]  # fmt: skip
    assert [p.name for p, _ in sbs.load_set(tmp_path, limit=2)] == ["a1.jpg", "h1.jpg"]
    with pytest.raises(SystemExit, match="no <emotion>/<image>"):
        sbs.load_set(tmp_path / "contempt")


def test_timing_and_markdown_table() -> None:
    assert sbs.timing([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "mean": 4.0}
    assert sbs.timing([]) == {"median": None, "mean": None}
    outcomes = [sbs.image_outcome("happy", [{"box": [0, 0, 5, 5], "probs": seven(happy=1)}],
                                  CLASSES_OF)]  # fmt: skip
    row = {"pipeline": "face-api landmarks", **sbs.score(outcomes, seven=True),
           "ms": sbs.timing([12.0]), "ms_note": "per call, warm", "cold_s": 1.25}  # fmt: skip
    doc = {"command": "python x.py", "load_start": "1.00, 1.00, 1.00", "load_end": "1.00",
           "cores": 2, "date": "today", "sets": {"jaffe": [row]}}  # fmt: skip
    table = sbs.markdown(doc)
    assert "| face-api landmarks | 1.000 | 1.000 | 1.000 | 1.000 | 12 | 1.2 |" in table


def test_expression_sets_label_files_by_name() -> None:
    import real_faces

    assert real_faces.jaffe_label("KA.AN1.39.jpg") == "angry"
    assert real_faces.yale_label("subject01.happy") == "happy"
    assert real_faces.yale_label("subject07.surprised") == "surprise"
    assert real_faces.yale_label("subject15.noglasses") == "neutral"
    assert real_faces.yale_label("subject02.leftlight") is None  # side light: left out
    assert real_faces.yale_label("subject03.wink") is None
    assert real_faces.yale_label("readme.txt") is None


def test_student_labelled_web_set_reads_its_legend() -> None:
    """Mixed case folded, contempt and unknown emotions left out, a file listed twice kept
    only when both rows agree."""
    import real_faces

    legend = (
        "user.id,image,emotion\n"
        "1,a.jpg,HAPPINESS\n1,b.jpg,sadness\n2,c.jpg,contempt\n2,d.jpg,Neutral\n"
        "3,e.jpg,anger\n4,e.jpg,fear\n5,d.jpg,neutral\n6,f.jpg,bored\n7,,happiness\n"
    )
    assert real_faces.webexpr_labels(legend) == {"a.jpg": "happy", "b.jpg": "sad",
                                                 "d.jpg": "neutral"}  # fmt: skip

"""Build the real-photo face-detection benchmark set (outside git) from public sources.

Writes ``<out>/images/<type>/<file>`` and ``<out>/truth.json`` (plus ``truth.csv``): one record
per image with its ``type``, ``source``, size, ``n_faces`` and ground-truth ``boxes``
(``[x, y, w, h]`` in pixels, or ``null`` where only the count is known). Nothing here is
committed: the images stay under ``--out`` (a folder of yours outside the repository, DATA_DIR
below).

Image types and sources (repository @ commit, path inside it):

``portrait`` (studio portraits, exactly one face, boxes unknown)
    - JAFFE, 213 x 256×256 grey studio portraits:
      ``fitoplankton/facial-expression-classification-prediction``
      @ ``0235641ef7178718b9035b9f0664f3b7225e4485``, ``jaffe/*.jpg``;
    - Yale faces, 164 x 320×243 grey (GIF, written as PNG):
      ``leecarraher/pattern_recognition`` @ ``b072a1f88e7b5e3356e61b3724615f78ab4194f6``,
      ``yalefaces/subject*``;
    - ``skimage.data.astronaut()`` / ``camera()`` and matplotlib's ``grace_hopper.jpg``.
``web1`` and ``multi`` (web photos with labelled faces)
    Caltech 10k WebFaces (7092 images, 10524 frontal faces marked by eyes, nose and mouth;
    "profile faces or very low resolution faces are not labelled"):
    ``PigeonDan1/face_reco`` @ ``4735d6ba6428f110b96b5b9edcfcfbcdfc72e826``,
    ``Caltech_WebFaces/pic*.jpg`` + ``WebFaces_GroundThruth.txt``. ``multi`` = every image with
    two or more labelled faces (deterministic subsample, ``--n-multi``); ``web1`` = one labelled
    face (subsample, ``--n-web1``). Boxes come from the landmarks (see :func:`landmark_box`).
``noface`` and ``animal`` (no human face; ``animal`` = the mammal classes, :data:`MAMMAL_WNIDS`)
    - ImageNet sample images, one per class: ``EliSchwartz/imagenet-sample-images``
      @ ``bc69043e2862758a1906c6a24a792bb28c6bb2ff``, the animal classes (wnid below
      ``n02666196``, abacus, where the objects start) and the food / landscape / plant / fungus
      classes (``n07`` and up, without the people ``n09835506`` ballplayer, ``n10148035``
      groom, ``n10565667`` scuba diver), minus :data:`NOFACE_EXCLUDE`: the 16 photos that do
      show a human face (every kept image on which SSD at 0.5, with and without the new
      rules, or Haar found anything was looked at by eye). Dogs, cats and primates stay: a
      human-face detector must not answer to them;
    - the no-face ``skimage.data`` photos (:data:`SKIMAGE_NOFACE`).
``fer2013`` (48×48 grey face crops, one face, boxes unknown)
    an evenly spaced subsample (``--n-fer``) of ``<fer2013>/test/<emotion>/*.jpg``.

No 640×490 video-frame set (CK+) was found in a reachable public repository. The ``videos``
sub-command builds a set of real single-person video frames instead (type ``video``, exactly one
face, boxes unknown; see :func:`videos_main`).

Built with the defaults: portrait 380 (JAFFE 213, Yale 164, samples 3), fer2013 400, web1 300,
multi 400 (1487 labelled faces, 1227 of them >= 20 px), noface 269 (ImageNet 251, skimage
18), animal 207 (ImageNet).

Rebuild: bring the five repositories as bare git mirrors to ``--mirrors`` (laid out as
``<mirrors>/<owner>+<name>/repo``) or as plain clones (``<mirrors>/<owner>+<name>`` or
``<mirrors>/<name>``, each must contain the commit), then::

    python benchmarks/real_faces.py --out DATA_DIR/realfaces --mirrors MIRRORS \\
        --fer2013 FER2013_DIR

The ``expressions`` sub-command builds the labelled sets of ``bench_side_by_side.py`` instead
(see :func:`expressions_main`)::

    python benchmarks/real_faces.py expressions --out DATA_DIR/expressions --mirrors MIRRORS

and ``videos`` the single-person video frames, in a set of their own::

    python benchmarks/real_faces.py videos --out DATA_DIR/videoframes --mirrors MIRRORS
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

JAFFE = ("fitoplankton/facial-expression-classification-prediction",
         "0235641ef7178718b9035b9f0664f3b7225e4485")  # fmt: skip
YALE = ("leecarraher/pattern_recognition", "b072a1f88e7b5e3356e61b3724615f78ab4194f6")
WEBFACES = ("PigeonDan1/face_reco", "4735d6ba6428f110b96b5b9edcfcfbcdfc72e826")
IMAGENET = ("EliSchwartz/imagenet-sample-images", "bc69043e2862758a1906c6a24a792bb28c6bb2ff")
# Single-person videos (repository, commit, folder of the clips): GRID corpus samples (360×288,
# a speaker facing the camera, 75 frames), two HDTF interview clips (512×512 close-ups) and the
# real "driving" clips of an expression-transfer project (480–1280 px: faces that pull
# expressions, turn and move, one child). Its ``source/`` clips are left out: some look generated.
VIDEOS = (
    ("rizkiarm/LipNet", "bec592aa1e66378bc7ab33f6110f1c8a431b3b9a", "evaluation/samples"),
    ("OpenTalker/SadTalker", "cd4c0465ae0b54a6f85af57f5c65fec9fe23e7f8", "examples/ref_video"),
    ("KwaiVGI/LivePortrait", "1986663be3b6902605d32200c01f4bfd36cda83d",
     "assets/examples/driving"),
)  # fmt: skip
VIDEO_SUFFIXES = (".mp4", ".mpg", ".avi", ".mov")

# Mammals (furry faces with eyes and a muzzle, the res10 SSD's known false positives): the
# ``animal`` type. Marsupials, marine mammals, dogs to bears, mongoose/meerkat, rabbits and
# rodents, hoofed animals to primates and elephants, pandas.
MAMMAL_WNIDS = (
    ("n01871265", "n01883070"), ("n02066245", "n02077923"), ("n02085620", "n02134418"),
    ("n02137549", "n02138441"), ("n02325366", "n02364673"), ("n02389026", "n02504458"),
    ("n02509815", "n02510455"),
)  # fmt: skip
FIRST_OBJECT_WNID = "n02666196"  # abacus: ImageNet's object classes run from here to n06
PEOPLE_WNIDS = frozenset({"n09835506", "n10148035", "n10565667"})
# Kept ImageNet samples whose photo shows a human face (people holding the animal, ...).
NOFACE_EXCLUDE = frozenset(
    f"{name}.JPEG"
    for name in (
        "n01494475_hammerhead", "n02088466_bloodhound", "n02093859_Kerry_blue_terrier",
        "n02097298_Scotch_terrier", "n02098286_West_Highland_white_terrier", "n02098413_Lhasa",
        "n02102040_English_springer", "n02105641_Old_English_sheepdog",
        "n02107908_Appenzeller", "n02108422_bull_mastiff", "n02111500_Great_Pyrenees",
        "n02113712_miniature_poodle", "n02514041_barracouta", "n02536864_coho",
        "n02641379_gar", "n07714571_head_cabbage",
    )
)  # fmt: skip
SKIMAGE_NOFACE = (
    "brick", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
    "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page",
    "retina", "rocket", "text",
)  # fmt: skip

# Landmark -> box rule (Caltech WebFaces): fitted to the res10 SSD box convention on 247
# unambiguous single-face WebFaces images (SSD score >= 0.9, one box, eye midpoint inside):
# medians w = 2.13 s, h = 2.89 s, centre 0.26 s below the eye midpoint along the eye->mouth
# axis, with s = (eye distance + eye-midpoint-to-mouth distance) / 2 (IQR 0.21 s / 0.31 s).
BOX_W, BOX_H, BOX_DY = 2.13, 2.89, 0.26


@dataclass
class Record:
    """One benchmark image and its truth."""

    path: str
    type: str
    source: str
    width: int
    height: int
    n_faces: int
    boxes: list[list[float]] | None
    note: str = ""
    extra: dict = field(default_factory=dict)


# -- reading the mirrors -------------------------------------------------------------------


def git_dir(mirrors: Path, repo: str) -> Path:
    """Where the git objects of ``owner/name`` live under ``mirrors``."""
    owner_name = repo.replace("/", "+")
    for cand in (
        mirrors / owner_name / "repo",
        mirrors / owner_name / ".git",
        mirrors / owner_name,
        mirrors / repo.split("/")[1] / ".git",
    ):
        if (cand / "objects").is_dir():
            return cand
    raise SystemExit(f"{repo}: no git mirror or clone under {mirrors} (see the docstring)")


class Blobs:
    """Reads files of one commit from a git directory (``git cat-file --batch``)."""

    def __init__(self, gitdir: Path, commit: str) -> None:
        self.gitdir, self.commit = gitdir, commit

    def list(self, prefix: str) -> list[str]:
        """Paths under ``prefix`` (a folder) at the commit, sorted."""
        out = subprocess.run(
            ["git", "--git-dir", str(self.gitdir), "ls-tree", "-r", "--name-only",
             self.commit, "--", prefix],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return sorted(line for line in out.splitlines() if line)

    def read(self, paths: list[str]) -> Iterator[tuple[str, bytes]]:
        """``(path, content)`` for each path, in order."""
        proc = subprocess.Popen(
            ["git", "--git-dir", str(self.gitdir), "cat-file", "--batch"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin and proc.stdout
        try:
            for path in paths:
                proc.stdin.write(f"{self.commit}:{path}\n".encode())
                proc.stdin.flush()
                header = proc.stdout.readline().decode().split()
                if len(header) < 3 or header[1] != "blob":
                    raise SystemExit(f"{self.gitdir}: {path} missing at {self.commit}")
                data = proc.stdout.read(int(header[2]))
                proc.stdout.read(1)  # newline after the content
                yield path, data
        finally:
            proc.stdin.close()
            proc.wait()


# -- pure helpers --------------------------------------------------------------------------


def landmark_box(lx: float, ly: float, rx: float, ry: float, mx: float, my: float) -> list[float]:
    """Face box ``[x, y, w, h]`` from the eye centres and the mouth (see ``BOX_*``)."""
    ex, ey = (lx + rx) / 2, (ly + ry) / 2
    eye_d = math.hypot(rx - lx, ry - ly)
    mouth_d = math.hypot(mx - ex, my - ey)
    s = (eye_d + mouth_d) / 2
    ux, uy = ((mx - ex) / mouth_d, (my - ey) / mouth_d) if mouth_d > 0 else (0.0, 1.0)
    cx, cy = ex + BOX_DY * s * ux, ey + BOX_DY * s * uy
    w, h = BOX_W * s, BOX_H * s
    return [round(cx - w / 2, 1), round(cy - h / 2, 1), round(w, 1), round(h, 1)]


def spaced(items: list, n: int) -> list:
    """``n`` evenly spaced items (all of them when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[round(i * len(items) / n)] for i in range(n)]


def webfaces_truth(text: str) -> dict[str, list[list[float]]]:
    """``{file: [box, ...]}`` from ``WebFaces_GroundThruth.txt`` (eyes, nose, mouth per line)."""
    out: dict[str, list[list[float]]] = defaultdict(list)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 9:
            continue
        lx, ly, rx, ry, _nx, _ny, mx, my = (float(v) for v in parts[1:9])
        out[parts[0]].append(landmark_box(lx, ly, rx, ry, mx, my))
    return dict(out)


def no_human_class(name: str) -> bool:
    """Whether an ImageNet sample (``<wnid>_<label>.JPEG``) is kept as a no-face photo."""
    wnid = name.split("_", 1)[0]
    if name in NOFACE_EXCLUDE or wnid in PEOPLE_WNIDS:
        return False
    return wnid < FIRST_OBJECT_WNID or wnid >= "n07"


def is_mammal(name: str) -> bool:
    """Whether an ImageNet sample's class is a mammal (see :data:`MAMMAL_WNIDS`)."""
    wnid = name.split("_", 1)[0]
    return any(lo <= wnid <= hi for lo, hi in MAMMAL_WNIDS)


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from an encoded image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size


# -- sources -------------------------------------------------------------------------------


def _save(out: Path, rel: str, data: bytes) -> None:
    dest = out / "images" / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)


def _png(rgb_or_grey: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb_or_grey).save(buf, format="PNG")
    return buf.getvalue()


def portraits(mirrors: Path, out: Path) -> list[Record]:
    """JAFFE + Yale + the single-face sample photos of skimage and matplotlib."""
    recs: list[Record] = []
    blobs = Blobs(git_dir(mirrors, JAFFE[0]), JAFFE[1])
    for path, data in blobs.read(blobs.list("jaffe/")):
        rel = f"portrait/jaffe_{Path(path).name}"
        _save(out, rel, data)
        recs.append(Record(rel, "portrait", "jaffe", *image_size(data), 1, None))
    from PIL import Image

    blobs = Blobs(git_dir(mirrors, YALE[0]), YALE[1])
    for path, data in blobs.read([p for p in blobs.list("yalefaces/") if "subject" in p]):
        with Image.open(io.BytesIO(data)) as im:
            grey = np.asarray(im.convert("L"))
        rel = f"portrait/yale_{Path(path).name.replace('.', '_')}.png"
        _save(out, rel, _png(grey))
        recs.append(Record(rel, "portrait", "yale", grey.shape[1], grey.shape[0], 1, None))
    for name, rgb in _sample_photos():
        rel = f"portrait/{name}.png"
        _save(out, rel, _png(rgb))
        recs.append(Record(rel, "portrait", "samples", rgb.shape[1], rgb.shape[0], 1, None))
    return recs


def _sample_photos() -> list[tuple[str, np.ndarray]]:
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        hopper = np.asarray(im.convert("RGB"))
    return [("astronaut", data.astronaut()), ("camera", data.camera()), ("grace_hopper", hopper)]


def webfaces(mirrors: Path, out: Path, n_multi: int, n_web1: int) -> list[Record]:
    """Caltech WebFaces: ``multi`` (2+ labelled faces) and ``web1`` (one labelled face)."""
    blobs = Blobs(git_dir(mirrors, WEBFACES[0]), WEBFACES[1])
    (_, text), = blobs.read(["WebFaces_GroundThruth.txt"])  # fmt: skip
    truth = webfaces_truth(text.decode())
    names = sorted(truth)
    chosen = {
        "multi": spaced([n for n in names if len(truth[n]) >= 2], n_multi),
        "web1": spaced([n for n in names if len(truth[n]) == 1], n_web1),
    }
    recs: list[Record] = []
    for kind, files in chosen.items():
        paths = [f"Caltech_WebFaces/{name}" for name in files]
        for path, data in blobs.read(paths):
            name = Path(path).name
            rel = f"{kind}/webfaces_{name}"
            _save(out, rel, data)
            boxes = truth[name]
            recs.append(Record(rel, kind, "webfaces", *image_size(data), len(boxes), boxes))
    return recs


def nofaces(mirrors: Path, out: Path) -> list[Record]:
    """ImageNet animal/food/landscape/plant samples (minus exclusions) + skimage photos."""
    blobs = Blobs(git_dir(mirrors, IMAGENET[0]), IMAGENET[1])
    paths = [p for p in blobs.list(".") if p.endswith(".JPEG") and no_human_class(p)]
    recs: list[Record] = []
    for path, data in blobs.read(paths):
        kind = "animal" if is_mammal(path) else "noface"
        rel = f"{kind}/imagenet_{path.replace('.JPEG', '.jpg')}"
        _save(out, rel, data)
        recs.append(Record(rel, kind, "imagenet", *image_size(data), 0, []))
    from skimage import data as skdata

    for name in SKIMAGE_NOFACE:
        try:
            img = getattr(skdata, name)()
        except Exception as exc:  # some need a download; we only take the bundled ones
            print(f"  skimage.data.{name}: skipped ({type(exc).__name__})", file=sys.stderr)
            continue
        if img.dtype != np.uint8:
            img = img.astype(np.float64)
            img = (255 * (img - img.min()) / max(1e-9, float(np.ptp(img)))).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        rel = f"noface/skimage_{name}.png"
        _save(out, rel, _png(img))
        recs.append(Record(rel, "noface", "skimage", img.shape[1], img.shape[0], 0, []))
    return recs


def fer2013(root: Path, out: Path, n: int) -> list[Record]:
    """Evenly spaced FER2013 test crops (one face each)."""
    files = sorted((root / "test").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"{root}/test/<emotion>/*.jpg: no FER2013 images found")
    recs: list[Record] = []
    for path in spaced(files, n):
        data = path.read_bytes()
        rel = f"fer2013/{path.parent.name}_{path.name}"
        _save(out, rel, data)
        recs.append(Record(rel, "fer2013", "fer2013", *image_size(data), 1, None))
    return recs


# -- labelled expression sets (bench_side_by_side.py) ---------------------------------------

# Kaggle's FER2013 image folders as first committed (train/ and test/, 35,887 JPEGs): they match
# FER+'s PNGs of the original pixels within 1.6 grey levels. The repository's later commits
# contrast-filter every image in place (18-48 grey levels away) and add augmented copies.
FER2013_IMAGES = ("RecepTahirGunlu/Duygu-Tanima", "8041c66ab014c185bfe459e8e32349fc7b15685a")
CKPLUS48 = ("WuJie1010/Facial-Expression-Recognition.Pytorch",
            "fefe6653f3e09912693a73c54e6a8247adca3090")  # fmt: skip
JAFFE_CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral",
               "SA": "sad", "SU": "surprise"}  # fmt: skip
# CK+48 folders; contempt is not a FER-7 emotion and is left out.
CKPLUS_FOLDERS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                  "sadness": "sad", "surprise": "surprise"}  # fmt: skip
# Yale faces: one image per expression or set-up a subject; the set-ups with a still face and
# even light are neutral. Side lights, sleepy and wink are left out (no FER-7 emotion).
YALE_EXPRESSIONS = {"happy": "happy", "sad": "sad", "surprised": "surprise",
                    "normal": "neutral", "noglasses": "neutral", "glasses": "neutral",
                    "centerlight": "neutral"}  # fmt: skip
# Web photos with expressions labelled by a class of graduate students (most of them LFW's
# 250×250 celebrity faces upscaled to 350×350 grey, some colour web crops): ``data/legend.csv``
# names each file in ``images/`` and its emotion, in mixed case. Contempt is left out (not
# FER-7), and so is a file listed twice with two emotions.
WEBEXPR = ("muxspace/facial_expressions", "5fb9c13afac07c55eae8d25eb6b50af344ad60c9")
WEBEXPR_EMOTIONS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                    "neutral": "neutral", "sadness": "sad", "surprise": "surprise"}  # fmt: skip
EXPRESSION_SETS = ("jaffe", "fer2013", "ckplus", "yale", "webexpr")


def jaffe_label(name: str) -> str | None:
    """FER-7 emotion of a JAFFE file (``KA.AN1.39.jpg`` -> ``angry``), None if not coded."""
    parts = name.split(".")
    return JAFFE_CODES.get(parts[1][:2]) if len(parts) >= 3 else None


def yale_label(name: str) -> str | None:
    """FER-7 emotion of a Yale file (``subject01.happy`` -> ``happy``), None if left out."""
    return YALE_EXPRESSIONS.get(name.rpartition(".")[2]) if name.startswith("subject") else None


def is_private_test(name: str) -> bool:
    """Whether a FER2013 file name is an original PrivateTest image (``PrivateTest_<n>.jpg``;
    the snapshot's augmented copies are ``PrivateTest_<n>.jpg<k>.jpg``)."""
    stem = name.removeprefix("PrivateTest_").removesuffix(".jpg")
    return name.startswith("PrivateTest_") and name.endswith(".jpg") and stem.isdigit()


def ckplus_peaks(paths: list[str]) -> list[str]:
    """The last frame of each CK+ sequence (``S010_004_00000019.png``): CK+48 keeps the last
    three, near-duplicates of one another."""
    last: dict[str, str] = {}
    for path in sorted(paths):
        subject, sequence = Path(path).name.split("_")[:2]
        last[f"{Path(path).parent.name}/{subject}_{sequence}"] = path
    return sorted(last.values())


def webexpr_labels(legend: str) -> dict[str, str]:
    """File name → FER-7 emotion from ``data/legend.csv`` (``user.id,image,emotion``): case
    folded, contempt and unknown emotions left out, a file listed with two emotions left out."""
    seen: dict[str, set[str]] = defaultdict(set)
    for row in csv.DictReader(io.StringIO(legend)):
        emotion = WEBEXPR_EMOTIONS.get((row.get("emotion") or "").strip().lower())
        seen[(row.get("image") or "").strip()].add(emotion or "")
    return {
        name: next(iter(emotions))
        for name, emotions in seen.items()
        if name and len(emotions) == 1 and "" not in emotions
    }


def _labelled_files(name: str, blobs: Blobs) -> list[tuple[str, str]]:
    """``(path in the repository, FER-7 emotion)`` of one expression set."""
    if name == "jaffe":
        pairs = [(p, jaffe_label(Path(p).name)) for p in blobs.list("jaffe/")]
    elif name == "yale":
        pairs = [(p, yale_label(Path(p).name)) for p in blobs.list("yalefaces/")]
    elif name == "fer2013":
        pairs = [(p, Path(p).parent.name) for p in blobs.list("test/")
                 if is_private_test(Path(p).name)]  # fmt: skip
    elif name == "webexpr":
        legend = b"".join(data for _, data in blobs.read(["data/legend.csv"])).decode()
        labels = webexpr_labels(legend)
        pairs = [(p, labels.get(Path(p).name)) for p in blobs.list("images/")]
    else:
        paths = [p for p in blobs.list("CK+48/") if Path(p).parent.name in CKPLUS_FOLDERS]
        pairs = [(p, CKPLUS_FOLDERS[Path(p).parent.name]) for p in ckplus_peaks(paths)]
    return [(p, label) for p, label in pairs if label is not None]


def build_expression_set(name: str, mirrors: Path, out: Path) -> dict:
    """Write ``out/<name>/<emotion>/<file>`` and ``out/<name>/manifest.json``; return it."""
    repo, commit = {"jaffe": JAFFE, "fer2013": FER2013_IMAGES, "ckplus": CKPLUS48,
                    "yale": YALE, "webexpr": WEBEXPR}[name]  # fmt: skip
    blobs = Blobs(git_dir(mirrors, repo), commit)
    pairs = _labelled_files(name, blobs)
    labels = dict(pairs)
    images, counts = [], defaultdict(int)
    for path, data in blobs.read([p for p, _ in pairs]):
        rel = f"{labels[path]}/{Path(path).name}"
        if name == "yale":  # GIF files without a suffix: written as PNG
            rel, data = f"{labels[path]}/{Path(path).name.replace('.', '_')}.png", _yale_png(data)
        dest = out / name / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        width, height = image_size(data)
        images.append({"path": rel, "label": labels[path], "source_path": path,
                       "width": width, "height": height})  # fmt: skip
        counts[labels[path]] += 1
    doc = {"set": name, "repo": repo, "commit": commit, "counts": dict(sorted(counts.items())),
           "images": images}  # fmt: skip
    (out / name / "manifest.json").write_text(json.dumps(doc, indent=1))
    return doc


def _yale_png(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return _png(np.asarray(im.convert("L")))


def expressions_main(argv: list[str]) -> int:
    """``real_faces.py expressions``: the labelled real sets of ``bench_side_by_side.py``.

    ``jaffe``: JAFFE's 213 studio portraits, labelled by their file names (``KA.AN1.39``);
    ``fer2013``: the 3,589 original PrivateTest crops of a Kaggle image-folder snapshot
    (``test/<emotion>/PrivateTest_<n>.jpg``; its augmented copies are skipped); ``ckplus``:
    CK+48 (48 px grey crops of CK+ sequences), the last frame of each sequence, contempt left
    out (not a FER-7 emotion); ``yale``: Yale faces' 320×243 grey portraits of 15 subjects,
    happy, sad, surprised, and neutral (normal, with and without glasses, centre light; side
    lights, sleepy and wink left out); ``webexpr``: ~13,600 web photos (mostly LFW's
    celebrity faces) whose expressions a class of graduate students labelled, with the label
    noise that brings (contempt and twice-listed files left out). Sources are pinned above
    (repository @ commit).
    """
    doc = (expressions_main.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="real_faces.py expressions", description=doc)
    parser.add_argument("--out", type=Path, required=True, help="DATA_DIR: outside the repo")
    parser.add_argument("--mirrors", type=Path, required=True, help="git mirrors or clones")
    parser.add_argument("--sets", nargs="+", default=list(EXPRESSION_SETS),
                        choices=EXPRESSION_SETS)  # fmt: skip
    args = parser.parse_args(argv)
    for name in args.sets:
        doc = build_expression_set(name, args.mirrors, args.out)
        counts = ", ".join(f"{k} {v}" for k, v in doc["counts"].items())
        print(f"{args.out / name}: {len(doc['images'])} images ({counts})")
    return 0


def video_frames(data: bytes, suffix: str, n: int) -> list[tuple[int, np.ndarray]]:
    """``n`` evenly spaced ``(index, RGB frame)`` of an encoded video (all when ``n`` is 0).

    Two passes (count, then decode the kept frames), so a long clip never sits in memory.
    """
    import tempfile

    import cv2

    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        cap = cv2.VideoCapture(tmp.name)
        total = 0
        while cap.grab():
            total += 1
        cap.release()
        if not total:
            raise SystemExit(f"no frame decoded from a {suffix} video: OpenCV lacks its codec")
        keep = set(spaced(list(range(total)), n))
        cap, frames = cv2.VideoCapture(tmp.name), []
        for index in range(total):
            ok, frame = cap.read()
            if not ok:
                break
            if index in keep:
                frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        cap.release()
    return frames


def videos(mirrors: Path, out: Path, per_video: int, keep_clips: bool = False) -> list[Record]:
    """Frames of the single-person clips of :data:`VIDEOS`: type ``video``, one face each
    (and, with ``keep_clips``, the clips themselves under ``<out>/clips/``)."""
    recs: list[Record] = []
    for repo, commit, folder in VIDEOS:
        blobs = Blobs(git_dir(mirrors, repo), commit)
        clips = [p for p in blobs.list(folder) if p.lower().endswith(VIDEO_SUFFIXES)]
        for path, data in blobs.read(clips):
            clip = Path(path)
            if keep_clips:
                dest = out / "clips" / f"{repo.split('/')[1]}_{clip.name}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            for index, rgb in video_frames(data, clip.suffix, per_video):
                rel = f"video/{repo.split('/')[1]}_{clip.stem}_{index:05d}.png"
                _save(out, rel, _png(rgb))
                height, width = rgb.shape[:2]
                source = f"{repo}:{path}"
                extra = {"clip": source, "frame": index}
                recs.append(
                    Record(rel, "video", f"{source}#{index}", width, height, 1, None, extra=extra)
                )
    return recs


def videos_main(argv: list[str]) -> int:
    """``real_faces.py videos``: frames of real single-person videos, one face in each.

    Evenly spaced frames (``--per-video``) of every clip of :data:`VIDEOS`, written as PNG to
    ``<out>/images/video/`` with a ``truth.json`` that ``bench_real_detect.py --data <out>
    --types video`` reads (exactly one face per frame; boxes unknown). ``--keep-clips`` also
    writes the clips, for ``bench_video_faces.py`` (every frame, through ``fer predict``).
    """
    doc = (videos_main.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="real_faces.py videos", description=doc)
    parser.add_argument("--out", type=Path, required=True, help="DATA_DIR: outside the repo")
    parser.add_argument("--mirrors", type=Path, required=True, help="git mirrors or clones")
    parser.add_argument("--per-video", type=int, default=40, help="frames per clip (0 = all)")
    parser.add_argument(
        "--keep-clips", action="store_true", help="also write the clips to <out>/clips/"
    )
    args = parser.parse_args(argv)
    recs = videos(args.mirrors, args.out, args.per_video, args.keep_clips)
    truth = {
        "sources": {repo: {"commit": commit, "folder": folder} for repo, commit, folder in VIDEOS},
        "counts": {"video": len(recs)},
        "images": [asdict(r) for r in recs],
    }
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1))
    clips = len({r.extra["clip"] for r in recs})
    print(f"{args.out}/truth.json: {len(recs)} frames of {clips} clips")
    return 0


# -- main ----------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> dict:
    """Assemble every source under ``args.out``; return the truth document."""
    out: Path = args.out
    recs: list[Record] = []
    recs += portraits(args.mirrors, out)
    recs += webfaces(args.mirrors, out, args.n_multi, args.n_web1)
    recs += nofaces(args.mirrors, out)
    recs += fer2013(args.fer2013, out, args.n_fer)
    counts: dict[str, int] = defaultdict(int)
    for r in recs:
        counts[r.type] += 1
    doc = {
        "sources": {
            "jaffe": {"repo": JAFFE[0], "commit": JAFFE[1]},
            "yale": {"repo": YALE[0], "commit": YALE[1]},
            "webfaces": {"repo": WEBFACES[0], "commit": WEBFACES[1]},
            "imagenet": {"repo": IMAGENET[0], "commit": IMAGENET[1]},
            "fer2013": {"path": str(args.fer2013)},
        },
        "box_rule": {"w": BOX_W, "h": BOX_H, "dy": BOX_DY},
        "counts": dict(counts),
        "images": [asdict(r) for r in recs],
    }
    (out / "truth.json").write_text(json.dumps(doc, indent=1))
    with open(out / "truth.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "type", "source", "width", "height", "n_faces", "boxes"])
        for r in recs:
            boxes = json.dumps(r.boxes) if r.boxes is not None else ""
            writer.writerow([r.path, r.type, r.source, r.width, r.height, r.n_faces, boxes])
    return doc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["expressions"]:
        return expressions_main(argv[1:])
    if argv[:1] == ["videos"]:
        return videos_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="DATA_DIR: outside the repo")
    parser.add_argument("--mirrors", type=Path, required=True, help="git mirrors or clones")
    parser.add_argument("--fer2013", type=Path, required=True, help="FER2013 image folders")
    parser.add_argument("--n-multi", type=int, default=400, help="multi-face images (0 = all)")
    parser.add_argument("--n-web1", type=int, default=300, help="one-face web photos (0 = all)")
    parser.add_argument("--n-fer", type=int, default=400, help="FER2013 crops")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = build(args)
    print(f"{args.out}/truth.json: " + ", ".join(f"{k} {v}" for k, v in doc["counts"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

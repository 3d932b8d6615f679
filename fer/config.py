"""Typed configuration: ``params.yaml`` loaded once into frozen pydantic models.

Every section forbids unknown keys, so a misspelled key fails at load time with one line that
names the file and the key, instead of being silently ignored. Stage functions receive the
section they need; nothing else reads ``params.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fer import CLASSES
from fer.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_TTA_SHIFT = 0.25
"""The largest test-time move, as a fraction of a model's input side (``train.tta_shift``)."""
TtaShift = Annotated[float, Field(ge=0.0, le=MAX_TTA_SHIFT)]
Workers = Annotated[int, Field(ge=0, description="0 means one per CPU core")]


AUDIT_ENV = "FER_PARAMS_AUDIT"
"""Set to a file path to append, per ``fer`` command, the params keys it read (a JSON line):
how tests/test_pipeline_truth.py checks that dvc.yaml declares every key a stage reads."""


class _ParamsAudit:
    """Which params keys a process read: sections register their dotted path at load time."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self.keep: list[BaseModel] = []  # ids stay valid while the sections live
        self.read: set[str] = set()

    def register(self, section: BaseModel, path: str) -> None:
        self.paths[id(section)] = path
        self.keep.append(section)
        for name in type(section).model_fields:
            value = object.__getattribute__(section, name)
            if isinstance(value, BaseModel):
                self.register(value, f"{path}.{_key(section, name)}".lstrip("."))

    def note(self, section: BaseModel, name: str) -> None:
        path = self.paths.get(id(section))
        if path is not None:
            self.read.add(f"{path}.{_key(section, name)}".lstrip("."))


def _key(section: BaseModel, name: str) -> str:
    """The params.yaml key of a field (``validate`` for the field ``validate_``)."""
    return type(section).model_fields[name].alias or name


_AUDIT: _ParamsAudit | None = None


def audit_params() -> _ParamsAudit:
    """Start recording the params keys this process reads (see :data:`AUDIT_ENV`)."""
    global _AUDIT
    _AUDIT = _AUDIT or _ParamsAudit()
    return _AUDIT


class Section(BaseModel):
    """Base for every config section: frozen, strict about keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if (
            _AUDIT is not None
            and not isinstance(value, BaseModel)
            and name in type(self).model_fields
        ):
            _AUDIT.note(self, name)
        return value

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """As pydantic's; under a params audit, every dumped key counts as read."""
        if _AUDIT is not None:
            exclude = kwargs.get("exclude") or ()
            for name in type(self).model_fields:
                if name not in exclude:
                    _note_all(self, name)
        return super().model_dump(**kwargs)


def _note_all(section: BaseModel, name: str) -> None:
    value = object.__getattribute__(section, name)
    if isinstance(value, BaseModel):
        for sub in type(value).model_fields:
            _note_all(value, sub)
    elif _AUDIT is not None:
        _AUDIT.note(section, name)


class SampleConfig(Section):
    """`fer sample`: the synthetic sandbox (DESIGN.md §4)."""

    out: Path = Path("data/sandbox")
    truth: Path = Path("data/sample_truth.csv")
    n: Annotated[int, Field(ge=1)] = 1800
    seed: int = 0
    noise: Fraction = 0.10
    no_face_rate: Fraction = 0.10
    multi_face_rate: Fraction = 0.15
    max_faces: Annotated[int, Field(ge=2, le=8)] = 4
    width: Annotated[int, Field(ge=64, le=4096)] = 320
    height: Annotated[int, Field(ge=64, le=4096)] = 240
    class_weights: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {"positive": 1.0, "negative": 1.0, "neutral": 1.0}
    )
    workers: Workers = 0

    @model_validator(mode="after")
    def _rates(self) -> SampleConfig:
        if self.no_face_rate + self.multi_face_rate > 1:
            raise ValueError("no_face_rate + multi_face_rate must be at most 1")
        unknown = set(self.class_weights) - set(CLASSES)
        if unknown:
            raise ValueError(f"class_weights: unknown class {sorted(unknown)[0]!r}")
        return self


class IngestConfig(Section):
    """`fer ingest`: raw tree to manifest."""

    raw_dir: Path = Path("data/sandbox")
    manifest: Path = Path("data/manifest.parquet")
    unknown_folders: Literal["error", "ignore"] = "error"
    max_pixels: Annotated[int, Field(ge=1)] = 89_478_485
    min_side: Annotated[int, Field(ge=1)] = 16
    usage_pattern: str | None = None
    workers: Workers = 0

    @field_validator("usage_pattern")
    @classmethod
    def _one_group(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            import re

            try:
                groups = re.compile(pattern).groups
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
            if groups != 1:
                raise ValueError("needs exactly one (group), capturing the usage")
        return pattern


class ImportConfig(Section):
    """`fer import fer2013`: FER2013 emotion names to expression folders of the taxonomy."""

    fer2013: dict[str, str] = Field(
        default_factory=lambda: {
            "angry": "angry",
            "disgust": "disgust",
            "fear": "frightened",
            "happy": "happy",
            "sad": "heartbroken",
            "surprise": "awe",
            "neutral": "neutral",
        }
    )
    ferplus_contempt: str = "distaste"
    """FER+'s eighth emotion (not in FER2013): the expression folder its votes count for."""


class CropConfig(Section):
    """How a detected face becomes a classifier input (the face recipe of detect's crops).

    ``box: landmarks`` frames the face by face-api's 68 landmarks instead of the detector's
    box (``margin`` then grows the landmarks' box); ``rotate`` also levels the eyes.
    """

    policy: Literal["all", "largest", "skip"] = "all"
    box: Literal["detector", "landmarks"] = "detector"
    rotate: bool = False
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    square: bool = True
    size: Annotated[int, Field(ge=63, le=512)] = 64
    color: Literal["rgb", "gray"] = "rgb"

    @model_validator(mode="after")
    def _rotate_needs_landmarks(self) -> CropConfig:
        if self.rotate and self.box != "landmarks":
            raise ValueError("rotate: true needs box: landmarks (the eyes come from them)")
        return self


class DetectorSettings(Section):
    """What a detector finds: its backend, model file, thresholds and resizing.

    The one object behind ``fer detect``, ``fer predict`` and the MLflow pyfunc: a trained
    model stores the settings it was trained with, and both ``fer predict`` and the pyfunc
    detect with those (README: which settings win).
    """

    backend: Literal["ssd", "haar", "yunet", "retinaface"] = "ssd"
    model_path: Path | None = None
    min_confidence: Fraction = 0.75
    min_confidence_next: Fraction = 0.4
    min_face_px: Annotated[int, Field(ge=1)] = 20
    max_aspect: Annotated[float, Field(ge=1.0)] = 2.0
    nms_iou: Fraction = 0.3
    min_inside: Fraction = 0.7
    max_nested: Fraction = 0.5
    """A further face with more than this share of its box inside a better face is dropped."""
    drop_edge_copies: bool = True
    """Drop a further face that overlaps a better one and reaches the frame's edge."""
    pad: Annotated[float, Field(ge=0.0, le=2.0)] = 0.5
    pad_retry: bool = True
    """ssd: no face in an image that was not bordered: look once more inside the ``pad`` border."""
    upscale_below: Annotated[int, Field(ge=0)] = 160
    max_side: Annotated[int, Field(ge=64)] = 1280
    equalize: bool = True
    """haar only: equalise the grey image's histogram before the cascade (PyPI fer does not)."""

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> DetectorSettings:
        """Settings saved with a model (keys of older versions that are not settings ignored)."""
        return cls(**{k: v for k, v in stored.items() if k in cls.model_fields})


class DetectConfig(DetectorSettings):
    """`fer detect`: face localization (the detector settings, plus how the stage runs)."""

    mode: Literal["detect", "precropped"] = "detect"
    workers: Workers = 0
    executor: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    batch_size: Annotated[int, Field(ge=1)] = 64
    faces: Path = Path("data/faces.parquet")
    images: Path = Path("data/detections.parquet")
    crops_dir: Path = Path("data/faces")
    cache_dir: Path = Path(".fer_cache/detect")
    metrics: Path = Path("metrics/detect.json")
    details: Path = Path("metrics/details/detect.json")
    iou_threshold: Fraction = 0.5
    crop: CropConfig = CropConfig()

    def detector(self) -> DetectorSettings:
        """The detector settings alone (what a model carries; the detection cache key)."""
        return DetectorSettings(**{k: getattr(self, k) for k in DetectorSettings.model_fields})


class ExpectationLevels(Section):
    """Whether a failed expectation stops the pipeline (`blocking`) or only warns."""

    columns: Literal["blocking", "warning"] = "blocking"
    labels: Literal["blocking", "warning"] = "blocking"
    dimensions: Literal["blocking", "warning"] = "warning"
    rejected_rate: Literal["blocking", "warning"] = "blocking"
    no_face_rate: Literal["blocking", "warning"] = "warning"
    multi_face_rate: Literal["blocking", "warning"] = "warning"
    class_balance: Literal["blocking", "warning"] = "warning"
    crops_exist: Literal["blocking", "warning"] = "blocking"


class ValidateConfig(Section):
    """`fer validate`: the data gate, quarantine, label issues, duplicates."""

    out_dir: Path = Path("data/validation")
    metrics: Path = Path("metrics/validate.json")
    details: Path = Path("metrics/details/validate.json")
    min_width: Annotated[int, Field(ge=1)] = 32
    min_height: Annotated[int, Field(ge=1)] = 32
    max_width: Annotated[int, Field(ge=1)] = 20000
    max_height: Annotated[int, Field(ge=1)] = 20000
    max_rejected_rate: Fraction = 0.05
    max_no_face_rate: Fraction = 0.25
    max_multi_face_rate: Fraction = 0.40
    min_class_fraction: Fraction = 0.10
    max_class_fraction: Fraction = 0.70
    levels: ExpectationLevels = ExpectationLevels()
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    cv_epochs: Annotated[int, Field(ge=1)] = 8
    seed: int = 0
    label_action: Literal["flag", "exclude", "relabel"] = "exclude"
    relabel_threshold: Fraction = 0.9
    max_exclude_fraction: Fraction = 0.15
    min_auditor_accuracy: Fraction = 0.6
    max_auditor_ece: Fraction = 0.15
    teacher: Literal["none", "minixception", "faceexpr"] = "none"
    teacher_weight: Fraction = 0.5
    near_duplicate_distance: Annotated[int, Field(ge=0, le=64)] = 4
    near_duplicate_rms: Annotated[float, Field(ge=0, le=255)] = 8.0
    cv_input_size: Annotated[int, Field(ge=16, le=128)] = 32


class SplitConfig(Section):
    """`fer split`: group-aware stratified train/val/test split, or the dataset's own."""

    out: Path = Path("data/splits.parquet")
    strategy: Literal["random", "given"] = "random"
    given: dict[str, Literal["train", "val", "test"]] = Field(
        default_factory=lambda: {"training": "train", "publictest": "val", "privatetest": "test"}
    )
    given_clean: list[Literal["train", "val", "test"]] = Field(default_factory=lambda: ["train"])
    train: Fraction = 0.7
    val: Fraction = 0.15
    test: Fraction = 0.15
    seed: int = 0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1 (got {total:g})")
        return self


class ReviewConfig(Section):
    """`fer review`: the label-review page and the decisions file it writes (read by split)."""

    decisions: Path = Path("review_decisions.csv")
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    page_size: Annotated[int, Field(ge=1, le=500)] = 48
    thumb_size: Annotated[int, Field(ge=32, le=256)] = 96


Architecture = Literal["alexnet", "baseline", "resnet18", "minixception", "faceexpr"]
"""Architectures fer can build (fer/learning/models registers one module for each)."""
ENSEMBLE = "ensemble"
"""``models.<name>.arch: ensemble``: packaged models read each face together (no training)."""


class TrainConfig(Section):
    """`fer train`: the original project's defaults, plus the usual knobs."""

    model: str = "alexnet"
    models: list[str] = Field(default_factory=lambda: ["alexnet", "baseline"], min_length=1)
    out_dir: Path = Path("models")
    batch_size: Annotated[int, Field(ge=1)] = 64
    epochs: Annotated[int, Field(ge=1)] = 50
    lr: Annotated[float, Field(gt=0)] = 0.001
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    schedule: Literal["none", "cosine", "step"] = "cosine"
    early_stopping_patience: Annotated[int, Field(ge=0, description="0 disables")] = 10
    class_balance: Literal["none", "weights", "sampler"] = "weights"
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    labels: Literal["given", "ferplus_majority", "ferplus_soft"] = "given"
    """What to train on: the split's labels, or FER+'s crowd votes (majority class, or the
    vote distribution over the classes as soft targets); FER+ needs votes in the manifest."""
    tta_flip: bool = False
    tta_shift: TtaShift = 0.0
    """Test-time views (stored in ``model.pt``, so evaluate, predict and serving agree):
    ``tta_flip`` also reads the mirrored face; ``tta_shift`` also reads it moved left, right, up
    and down by this fraction of the model's input side. Probabilities are averaged."""
    augment: bool = True
    flip: bool = True
    rotation_deg: Annotated[float, Field(ge=0, le=45)] = 10.0
    crop_jitter: Fraction = 0.1
    color_jitter: Fraction = 0.2
    seed: int = 0
    threads: Workers = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    cache_dir: Path = Path(".fer_cache/train")


class ModelSpec(Section):
    """Per-architecture options (the `models:` section).

    ``pretrained`` (minixception, faceexpr): start from the packaged real-face weights that
    ``fer weights`` fetched, never downloaded at run time. ``head``: ``mapped`` keeps the
    7-emotion layer and pools its logits into the 3 classes (``import.fer2013`` + ``taxonomy``);
    ``new`` puts a fresh 3-way layer in its place; ``auto`` is ``mapped`` when pretrained, else
    ``new``. ``arch: ensemble``: ``members`` (``pretrained:NAME``) read each face, each cut by
    its own recipe (``flip``: and mirrored; ``shift``: and moved, as ``train.tta_shift``),
    their probabilities mixed by ``weights``, or by the ``weight_step`` grid weights that read
    the validation split best when ``weights`` is null.
    """

    arch: Architecture | Literal["ensemble"] | None = None
    pretrained_path: Path | None = None
    pretrained: bool = False
    head: Literal["auto", "mapped", "new"] = "auto"
    epochs: Annotated[int, Field(ge=0)] | None = None
    lr: Annotated[float, Field(gt=0)] | None = None
    batch_size: Annotated[int, Field(ge=1)] | None = None
    freeze: list[str] = Field(default_factory=list)
    dropout: Fraction = 0.5
    width: Annotated[int, Field(ge=1)] = 32
    members: list[str] = Field(default_factory=list)
    weights: list[Annotated[float, Field(ge=0)]] | None = None
    weight_step: Annotated[float, Field(gt=0, le=1)] = 0.1
    flip: bool = False
    shift: TtaShift = 0.0

    @model_validator(mode="after")
    def _ensemble_fields(self) -> ModelSpec:
        if self.arch != ENSEMBLE:
            if self.members or self.weights is not None:
                raise ValueError("members and weights belong to an entry with arch: ensemble")
            return self
        if len(self.members) < 2 or any(not m.startswith("pretrained:") for m in self.members):
            raise ValueError(
                "arch: ensemble needs two or more members, each a packaged model "
                "(pretrained:NAME); combine trained models with `fer ensemble`"
            )
        if self.weights is not None and (
            len(self.weights) != len(self.members) or sum(self.weights) <= 0
        ):
            raise ValueError("weights: one non-negative number per member, sum > 0 (or null: "
                             "fitted on the validation split)")  # fmt: skip
        return self

    def resolved_head(self) -> Literal["mapped", "new"]:
        """``head`` with ``auto`` resolved: ``mapped`` when pretrained, else ``new``."""
        if self.head == "auto":
            return "mapped" if self.pretrained else "new"
        return self.head

    def for_rebuild(self) -> ModelSpec:
        """The spec that rebuilds a trained network's structure without reading weight files.

        What ``model.pt`` should store: the same layers (head resolved), nothing to load.
        """
        return self.model_copy(
            update={"pretrained": False, "pretrained_path": None, "head": self.resolved_head()}
        )

    def architecture(self, name: str) -> str:
        """What to build for the entry ``name``: ``arch``, else the entry's own name."""
        return self.arch or name

    @property
    def is_ensemble(self) -> bool:
        """An entry of packaged models read together (``arch: ensemble``)."""
        return self.arch == ENSEMBLE


class EvaluateConfig(Section):
    """`fer evaluate`: test-split metrics, plots and galleries."""

    metrics_dir: Path = Path("metrics")
    details_dir: Path = Path("metrics/details")
    plots_dir: Path = Path("plots")
    gallery_size: Annotated[int, Field(ge=0)] = 24
    without: list[str] = Field(default_factory=list)


class ReportConfig(Section):
    """`fer report`: the per-model comparison read from the metrics, details and plots."""

    out_dir: Path = Path("reports")


class PredictConfig(Section):
    """`fer predict`: images, folders and video."""

    model: str = "models:/fer-classifier@champion"
    fallback: str | None = None
    out_dir: Path = Path("predictions")
    batch_size: Annotated[int, Field(ge=1)] = 64
    detect_every: Annotated[int, Field(ge=1)] = 1
    detect_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"


class ApiConfig(Section):
    """`fer api`: the HTTP endpoint of a model, and the limits it enforces on requests."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1)] = 1
    max_request_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    min_image_side: Annotated[int, Field(ge=1)] = 16
    max_rows: Annotated[int, Field(ge=1)] = 32
    max_concurrency: Annotated[int, Field(ge=1)] = 32
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    image_dir: Path | None = None


class TrackingConfig(Section):
    """MLflow: where runs, artifacts and the registry live."""

    uri: str = "sqlite:///mlflow.db"
    artifact_location: Path = Path("mlruns")
    experiment: str = "fer"
    registered_model: str = "fer-classifier"
    alias: str = "champion"
    enabled: bool = True


class Config(Section):
    """The whole ``params.yaml``."""

    taxonomy: dict[Literal["positive", "negative", "neutral"], list[str]]
    sample: SampleConfig = SampleConfig()
    ingest: IngestConfig = IngestConfig()
    import_: ImportConfig = Field(default_factory=ImportConfig, alias="import")
    detect: DetectConfig = DetectConfig()
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    split: SplitConfig = SplitConfig()
    review: ReviewConfig = ReviewConfig()
    train: TrainConfig = TrainConfig()
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    evaluate: EvaluateConfig = EvaluateConfig()
    report: ReportConfig = ReportConfig()
    predict: PredictConfig = PredictConfig()
    api: ApiConfig = ApiConfig()
    tracking: TrackingConfig = TrackingConfig()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _taxonomy(self) -> Config:
        missing = [c for c in CLASSES if not self.taxonomy.get(c)]
        if missing:
            raise ValueError(f"taxonomy: class {missing[0]!r} has no expression folders")
        seen: dict[str, str] = {}
        for cls, names in self.taxonomy.items():
            for name in names:
                key = name.strip().lower()
                if key in seen and seen[key] != cls:
                    raise ValueError(
                        f"taxonomy: expression {name!r} is in both {seen[key]!r} and {cls!r}"
                    )
                seen[key] = cls
        return self

    @property
    def truth(self) -> Path | None:
        """The sandbox's truth CSV when the images are the sandbox's, else None.

        Ground truth exists only for what `fer sample` rendered, so it is derived rather than
        set: scoring against truth happens exactly when ``ingest.raw_dir`` is ``sample.out``.
        """
        if self.ingest.raw_dir.resolve() == self.sample.out.resolve():
            return self.sample.truth
        return None

    @model_validator(mode="after")
    def _known_models(self) -> Config:
        import typing

        architectures = typing.get_args(Architecture)
        for key, names in (
            ("train.model", [self.train.model]),
            ("train.models", self.train.models),
        ):
            for name in names:
                spec = self.models.get(name)
                if name not in architectures and (spec is None or spec.arch is None):
                    raise ValueError(
                        f"{key}: unknown model {name!r} (an architecture: "
                        f"{', '.join(architectures)}; or a `models:` entry naming its arch)"
                    )
        return self

    def architecture(self, name: str) -> str:
        """The architecture behind a model name of ``train.models``."""
        return self.model_spec(name).architecture(name)

    def model_name(self, given: str | None) -> str:
        """``--model`` (else ``train.model``), checked: an architecture or a `models:` entry.

        Raises:
            ConfigError: neither (the message lists what is accepted).
        """
        import typing

        name = (given or self.train.model).strip()
        architectures = typing.get_args(Architecture)
        if self.architecture(name) not in (*architectures, ENSEMBLE):
            known = sorted({*architectures, *self.train.models, *self.models})
            raise ConfigError(f"--model: unknown model {name!r} (available: {', '.join(known)})")
        return name

    def model_spec(self, name: str) -> ModelSpec:
        """Options of one architecture; defaults when the `models:` section omits it."""
        if _AUDIT is not None:
            _AUDIT.read.add(f"models.{name}")
        models = object.__getattribute__(self, "models")  # one entry is read, not the section
        return models.get(name, ModelSpec())


def load_config(path: str | Path = DEFAULT_PARAMS) -> Config:
    """Load and validate ``params.yaml``.

    Raises:
        ConfigError: one line naming the file and the first offending key.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read params file ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    cfg = config_from_dict(raw, source=str(path))
    _check_dvc_keys(path, raw, cfg)
    return cfg


def _check_dvc_keys(path: Path, raw: dict[str, Any], cfg: Config) -> None:
    """Where DVC runs the stages (a ``dvc.yaml`` beside the params file), every key a stage
    lists must be in the file: DVC refuses a missing one, so fer does not default it either.

    Raises:
        ConfigError: the first missing key, naming the stage that reads it.
    """
    import yaml

    dvc_file = path.parent / "dvc.yaml"
    if path.name != "params.yaml" or not dvc_file.is_file():
        return
    try:
        stages = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("stages", {})
    except (OSError, yaml.YAMLError):
        return  # DVC reports a broken dvc.yaml itself
    for name, stage in stages.items():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        # Read around the params audit: checking the file is not a stage reading a key.
        models = object.__getattribute__(object.__getattribute__(cfg, "train"), "models")
        items = models if isinstance(stage, dict) and "foreach" in stage else [None]
        for item in items:
            for key in body.get("params", []) if isinstance(body, dict) else []:
                if not isinstance(key, str):
                    continue
                key = key.replace("${item}", item or "")
                if not _has_key(raw, key):
                    where = f"{name}@{item}" if item else name
                    raise ConfigError(
                        f"{path}: {key}: missing (dvc.yaml's stage {where!r} reads it, and DVC "
                        "refuses a missing key; copy it from the shipped params.yaml)"
                    )


def _has_key(raw: dict[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def config_from_dict(raw: dict[str, Any], source: str = "params") -> Config:
    """Validate a params mapping (e.g. a test's shrunk config)."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None
    if _AUDIT is not None:
        _AUDIT.register(cfg, "")
    return cfg


def _first_error(exc: ValidationError) -> str:
    """One readable line for the first validation error: dotted key, reason, given value."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after",))
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling)"
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"

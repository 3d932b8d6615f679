"""Typed configuration: ``params.yaml`` loaded once into frozen pydantic models.

Every section forbids unknown keys, so a misspelled key fails at load time with one line that
names the file and the key, instead of being silently ignored. Stage functions receive the
section they need; nothing else reads ``params.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fer import CLASSES
from fer.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Workers = Annotated[int, Field(ge=0, description="0 means one per CPU core")]


class Section(BaseModel):
    """Base for every config section: frozen, strict about keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SampleConfig(Section):
    """`fer sample`: the synthetic sandbox (DESIGN.md §4)."""

    out: Path = Path("data/raw")
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

    raw_dir: Path = Path("data/raw")
    manifest: Path = Path("data/manifest.parquet")
    unknown_folders: Literal["error", "ignore"] = "error"
    max_pixels: Annotated[int, Field(ge=1)] = 89_478_485
    workers: Workers = 0


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


class CropConfig(Section):
    """How a detected face becomes a classifier input."""

    policy: Literal["all", "largest", "skip"] = "all"
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    square: bool = True
    size: Annotated[int, Field(ge=63, le=512)] = 64
    color: Literal["rgb", "gray"] = "rgb"


class DetectConfig(Section):
    """`fer detect`: face localization."""

    backend: str = "ssd"
    model_path: Path | None = None
    min_confidence: Fraction = 0.75
    min_confidence_next: Fraction = 0.4
    min_face_px: Annotated[int, Field(ge=1)] = 20
    max_aspect: Annotated[float, Field(ge=1.0)] = 2.0
    nms_iou: Fraction = 0.3
    min_inside: Fraction = 0.7
    pad: Annotated[float, Field(ge=0.0, le=2.0)] = 0.5
    upscale_below: Annotated[int, Field(ge=0)] = 160
    max_side: Annotated[int, Field(ge=64)] = 1280
    workers: Workers = 0
    executor: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    batch_size: Annotated[int, Field(ge=1)] = 64
    faces: Path = Path("data/faces.parquet")
    images: Path = Path("data/detections.parquet")
    crops_dir: Path = Path("data/faces")
    cache_dir: Path = Path(".fer_cache/detect")
    truth: Path | None = Path("data/sample_truth.csv")
    metrics: Path = Path("metrics/detect.json")
    iou_threshold: Fraction = 0.5
    crop: CropConfig = CropConfig()


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
    truth: Path | None = Path("data/sample_truth.csv")
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
    near_duplicate_distance: Annotated[int, Field(ge=0, le=64)] = 4
    near_duplicate_rms: Annotated[float, Field(ge=0, le=255)] = 8.0
    restore_list: Path | None = Path("quarantine_restore.txt")
    cv_input_size: Annotated[int, Field(ge=16, le=128)] = 32


class SplitConfig(Section):
    """`fer split`: group-aware stratified train/val/test split."""

    out: Path = Path("data/splits.parquet")
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
    augment: bool = True
    flip: bool = True
    rotation_deg: Annotated[float, Field(ge=0, le=45)] = 10.0
    crop_jitter: Fraction = 0.1
    color_jitter: Fraction = 0.2
    seed: int = 0
    threads: Workers = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: Path = Path(".fer_cache/train")


class ModelSpec(Section):
    """Per-architecture options (the `models:` section)."""

    pretrained_path: Path | None = None
    dropout: Fraction = 0.5
    width: Annotated[int, Field(ge=1)] = 32


class EvaluateConfig(Section):
    """`fer evaluate`: test-split metrics, plots and galleries."""

    metrics_dir: Path = Path("metrics")
    plots_dir: Path = Path("plots")
    truth: Path | None = Path("data/sample_truth.csv")
    gallery_size: Annotated[int, Field(ge=0)] = 24


class PredictConfig(Section):
    """`fer predict`: images, folders and video."""

    model: str = "models:/fer-classifier@champion"
    out_dir: Path = Path("predictions")
    batch_size: Annotated[int, Field(ge=1)] = 64
    detect_every: Annotated[int, Field(ge=1)] = 1


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
    train: TrainConfig = TrainConfig()
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    evaluate: EvaluateConfig = EvaluateConfig()
    predict: PredictConfig = PredictConfig()
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

    def model_spec(self, name: str) -> ModelSpec:
        """Options of one architecture; defaults when the `models:` section omits it."""
        return self.models.get(name, ModelSpec())


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
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict[str, Any], source: str = "params") -> Config:
    """Validate a params mapping (e.g. a test's shrunk config)."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


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

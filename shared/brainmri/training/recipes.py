"""Training configuration and the named recipes that fill its defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from brainmri.errors import ConfigurationError
from brainmri.framing import CropMode

if TYPE_CHECKING:
    from brainmri.training.augment import AugmentConfig

#: The names of :data:`RECIPES`, for the API's and the settings' validation (a test keeps the
#: two in step).
RecipeName = Literal["simple", "strong", "shipped"]

#: The training options a train job may set (``POST /v1/jobs/train``, ``brainmri submit
#: train``); everything else comes from the recipe or the server's settings.
TRAIN_OPTIONS = (
    "arch",
    "epochs",
    "img_size",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "use_mixup",
    "drop_rate",
    "crop",
    "invert_prob",
    "head_crop_prob",
    "ema_decay",
    "seed",
)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; saved as ``train_config.json`` next to the checkpoints."""

    recipe: str = "simple"
    arch: str = "resnet18"
    img_size: int = 224
    in_chans: int = 3
    resize: Literal["letterbox", "squash"] = "letterbox"
    crop: CropMode = "none"  # head: crop to the head box first (preprocess.py)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.0
    use_mixup: bool = False  # MixUp *and* CutMix, alternating per mixed batch
    mix_prob: float = 0.5
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    augment: Literal["light", "strong"] = "light"
    drop_rate: float = 0.0
    # Share of training slices whose head is intensity-inverted (RandomForegroundInversion):
    # an attempt to stop the model reading the class from the MR sequence. 0 = off.
    invert_prob: float = 0.0
    # Share of training slices cropped to the head box (RandomHeadCrop), so that how the data
    # frames each class stops being a reliable cue. 0 = off; needs crop="none".
    head_crop_prob: float = 0.0
    grad_clip: float = 2.0
    ema_decay: float = 0.0  # per-step decay of the weight average; 0 trains without one
    class_weighted: bool = True
    early_stop_patience: int = 6
    # Wall-clock minutes for the epoch loop; 0 = no limit. With a limit, ``epochs`` is the most
    # the run may do: from the second epoch on, the cosine schedule's length is re-fitted to
    # the measured epoch times so that it still ends (annealed) inside the budget, instead of
    # the run being cut off at a high learning rate by whoever holds the machine.
    time_budget_minutes: float = 0.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    device: str = "auto"
    seed: int = 42
    num_workers: int = 0
    decode_workers: int = 2
    eval_batch_size: int = 64
    cache_scale: float = 1.15
    calib_frac: float = 0.5
    threshold_policy: str = "sensitivity:0.995"
    init_from: str | None = None  # a bundle folder whose weights start the run (fine-tuning)

    @property
    def cache_size(self) -> int:
        """Side of the decoded training cache: the whole slice at a little more than the input
        size, so random crops are resampled from finer pixels."""
        return round(self.img_size * self.cache_scale)

    @property
    def augment_config(self) -> AugmentConfig:
        from brainmri.training.augment import LIGHT, STRONG  # torchvision: import on use

        base = STRONG if self.augment == "strong" else LIGHT
        return replace(base, invert_p=self.invert_prob, head_crop_p=self.head_crop_prob)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


RECIPES: dict[str, dict[str, Any]] = {
    # The original train_classifier.py: resnet18 at 224 px with light augmentation.
    "simple": {
        "arch": "resnet18",
        "img_size": 224,
        "epochs": 10,
        "batch_size": 32,
        "lr": 3e-4,
        "weight_decay": 1e-4,
        "augment": "light",
        "label_smoothing": 0.0,
        "use_mixup": False,
    },
    # The original train_classifier_v2.py, done properly: resnet34, strong augmentation,
    # label smoothing, MixUp + CutMix that both run.
    "strong": {
        "arch": "resnet34",
        "img_size": 224,
        "epochs": 12,
        "batch_size": 24,
        "lr": 5e-4,
        "weight_decay": 0.05,
        "augment": "strong",
        "label_smoothing": 0.1,
        "use_mixup": True,
        "drop_rate": 0.2,
    },
    # The recipe of the shipped default model (its MODEL_CARD.md; a test checks this against
    # the provenance in its metadata.json): resnet18 from scratch at 176 px, a weight average,
    # head inversion against the MR-sequence shortcut. A scheduled retrain with it repeats on
    # new data what made production, so the promotion gate compares like with like.
    "shipped": {
        "arch": "resnet18",
        "img_size": 176,
        "epochs": 36,
        "batch_size": 32,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 2.0,
        "augment": "light",
        "label_smoothing": 0.05,
        "use_mixup": False,
        "drop_rate": 0.1,
        "invert_prob": 0.2,
        "ema_decay": 0.998,
        "early_stop_patience": 0,
    },
}


def make_config(recipe: str, **overrides: Any) -> TrainConfig:
    """Recipe defaults, then every override that is not None (CLI flags left unset)."""
    if recipe not in RECIPES:
        raise ConfigurationError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    config = TrainConfig(recipe=recipe, **RECIPES[recipe])
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(given) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ConfigurationError(f"unknown training option(s): {sorted(unknown)}")
    config = replace(config, **given)
    for name in ("mix_prob", "invert_prob", "head_crop_prob"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigurationError(f"{name} must be between 0 and 1, got {getattr(config, name)}")
    if config.head_crop_prob and config.crop == "head":
        raise ConfigurationError(
            "head_crop_prob needs crop 'none': with crop 'head' every slice is already cropped"
        )
    return config


def train_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """A train job's overrides for :func:`make_config`, with the seed always set.

    The same seed drives the dataset split and the trainer, so a run is reproducible from it;
    a seed of 0 is a seed like any other (``is None``, not falsiness, picks the default). The
    API builds the config from these at submission too, so an option the recipe cannot take
    is a 422 then, not a failed job later.
    """
    options = {key: params.get(key) for key in TRAIN_OPTIONS}
    if options["seed"] is None:
        options["seed"] = TrainConfig.seed
    return options

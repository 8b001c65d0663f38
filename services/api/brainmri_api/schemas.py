"""Request and response models (kept apart from the ORM tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from brainmri import DISCLAIMER
from brainmri.db.models import Job
from brainmri.framing import CropMode
from brainmri.jobs.artifacts import artifact_url
from brainmri.training.recipes import RecipeName


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code, e.g. `unsupported_format`.")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class JobLinks(BaseModel):
    self: str
    cancel: str
    artifacts: dict[str, str] = Field(default_factory=dict)


class JobCreated(BaseModel):
    job_id: str
    status: str
    links: JobLinks
    disclaimer: str = DISCLAIMER


class JobPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    job_id: str
    kind: Literal["predict", "evaluate", "train"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float
    progress_detail: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    model_version: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    links: JobLinks
    waiting_reason: str | None = Field(
        None,
        description="Set on a queued job, when read on its own, if no live worker consumes its "
        "queue: it waits until one starts.",
    )
    disclaimer: str = DISCLAIMER


class JobList(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="`s3://bucket/prefix/` or a local folder under an allowed "
        "root, holding class-named subfolders."
    )
    tta: bool = False
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    # The upper bound is a setting (BRAINMRI_MAX_EVAL_IMAGES), so the evaluate route checks it:
    # this model cannot see the app's settings.
    limit: int = Field(
        0,
        ge=0,
        description="Score at most this many images, balanced across classes (0: all). At most "
        "`BRAINMRI_MAX_EVAL_IMAGES` (a larger limit is a 422).",
    )


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(
        description="`s3://bucket/prefix/` of class folders, an S3 CSV "
        "manifest, or a local folder under an allowed root."
    )
    recipe: RecipeName = Field(
        "simple",
        description="`simple`, `strong`, or `shipped`: the recipe of the shipped default model "
        "(its model card).",
    )
    arch: str | None = None
    epochs: int | None = Field(None, ge=1, le=500)
    img_size: int | None = Field(None, ge=32, le=1024)
    batch_size: int | None = Field(None, ge=1, le=1024)
    lr: float | None = Field(None, gt=0, le=1)
    weight_decay: float | None = Field(None, ge=0, le=1)
    warmup_epochs: float | None = Field(
        None, ge=0, le=100, description="Epochs of linear learning-rate warm-up before the cosine."
    )
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    use_mixup: bool | None = None
    drop_rate: float | None = Field(None, ge=0, lt=1, description="Dropout before the classifier.")
    crop: CropMode | None = Field(
        None,
        description="`head`: crop every slice to the head's box before the letterbox, in "
        "training and in the bundle's inference (the model card explains the framing cue).",
    )
    invert_prob: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of training slices whose head is intensity-inverted, so the model "
        "cannot read the class from the MR sequence alone.",
    )
    head_crop_prob: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of training slices cropped to the head box (needs `crop` `none`); "
        "inference stays whole-slice.",
    )
    ema_decay: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Per-step decay of the weight average that is evaluated and shipped; 0 "
        "trains without one.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="Seed of the split and of training (default 42). 0 to 2^32-1: the range "
        "NumPy's and PyTorch's seeding accept.",
    )
    time_budget_minutes: float | None = Field(
        None,
        gt=0,
        description="Wall-clock minutes for the epoch loop: `epochs` becomes the most it may "
        "run, and the learning-rate schedule is fitted to end inside the budget. At most the "
        "train time limit's budget share (`BRAINMRI_TRAIN_TIME_LIMIT` x "
        "`BRAINMRI_TRAIN_BUDGET_SHARE`), which also applies when this is left out.",
    )
    val_frac: float = Field(0.15, gt=0, lt=0.5)
    test_frac: float = Field(0.15, gt=0, lt=0.5)
    auto_promote: bool = Field(True, description="Promote if the gate in settings is passed.")


class LegacyPredictResponse(BaseModel):
    """The original ``POST /predict`` answer, plus ``job_id`` and a few additive fields."""

    model_config = ConfigDict(protected_namespaces=())

    has_tumor: bool
    tumor_probability: float
    classification: str
    segmentation_available: bool = False
    tumor_volume_ml: float | None = None
    notes: str
    job_id: str
    class_probs: dict[str, float]
    threshold: float
    model_version: str | None
    cam_url: str | None = None


class LegacyMetricsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: str | None = None
    paths: list[str] | None = Field(None, max_length=10000)
    recursive: bool = True
    img_limit: int = Field(0, ge=0)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    return_predictions: bool = False
    max_predictions: int = Field(50, ge=0, le=10000)
    tta: bool = False


class LegacySample(BaseModel):
    path: str
    pred_class: str
    tumor_prob: float
    true_class: str | None


class LegacyMetricsResponse(BaseModel):
    n_total: int
    n_scored: int
    n_labeled: int
    acc_multiclass: float | None
    acc_binary: float | None
    cm_multiclass: list[list[int]]
    cm_binary: list[list[int]]
    suggested_threshold_by_YoudenJ: float | None  # noqa: N815 - the original field name
    best_J: float | None  # noqa: N815 - the original field name
    notes: str
    samples: list[LegacySample] = Field(default_factory=list)
    job_id: str
    threshold: float
    model_version: str | None


def job_links(job: Job) -> JobLinks:
    base = f"/v1/jobs/{job.id}"
    return JobLinks(
        self=base,
        cancel=f"{base}/cancel",
        artifacts={name: artifact_url(job.id, name) for name in sorted(job.artifacts or {})},
    )


PUBLIC_PARAMS = (
    "tta",
    "cam",
    "threshold",
    "source",
    "limit",
    "filename",
    "recursive",
    "recipe",
    "arch",
    "epochs",
    "img_size",
    "dataset",
    "auto_promote",
)


def job_public(job: Job, *, waiting_reason: str | None = None) -> JobPublic:
    return JobPublic(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        progress=job.progress,
        progress_detail=job.progress_detail,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        model_version=job.model_version,
        params={k: v for k, v in (job.params or {}).items() if k in PUBLIC_PARAMS},
        result=job.result,
        error=job.error,
        attempts=job.attempts,
        links=job_links(job),
        waiting_reason=waiting_reason,
    )


class ModelPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    version: str
    name: str
    arch: str
    stage: Literal["candidate", "production", "archived"]
    metrics: dict[str, Any]
    headline: dict[str, Any] = Field(
        default_factory=dict,
        description="The figures listings show (macro_f1, acc_multiclass, sensitivity, "
        "specificity, roc_auc_binary, ece) and their `source`: the held-out test split of a "
        "train job, or, for a bundle registered as shipped, its validation and calibration "
        "halves. Research figures, not a device's performance claim.",
    )
    data_fingerprint: str | None
    training_job_id: str | None
    stage_reason: str | None
    created_at: datetime
    promoted_at: datetime | None
    promoted_by: str | None
    versus_production: dict[str, Any] | None = Field(
        None,
        description="Headline metrics next to the current production version's; for a "
        "trained candidate also production's figures on the same test images and "
        "`paired_on_same_test`, the paired-bootstrap difference the promotion gate used.",
    )
    disclaimer: str = DISCLAIMER  # these metrics describe a research model, never a device


class ModelList(BaseModel):
    items: list[ModelPublic]
    production: str | None
    disclaimer: str = DISCLAIMER


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)

"""The documented shape of each job kind's ``result``, as API clients read it.

Why models that nothing validates at run time: results are stored as JSON on the job row and
served as they were written, so a job finished by an older release keeps answering even if a
field was added since; refusing it would turn an old job's GET into a 500. These models are
the contract instead: the OpenAPI document publishes them (``GET /v1/jobs/{id}`` says its
``result`` is one of them, by ``kind``), and the service tests check that real results from
real workers match them exactly - no missing field, no undocumented one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from brainmri.imaging.inputs import InputKind

_STRICT = ConfigDict(extra="forbid", protected_namespaces=())


class InputFacts(BaseModel):
    """What was read, without identifiers. Images add ``width``, ``height`` and ``mode``;
    DICOM adds the series' modality, size, selected slices, spacing and photometric
    interpretation."""

    model_config = ConfigDict(extra="allow")

    kind: InputKind


class PredictResult(BaseModel):
    """A predict job's result (the upload's classification, with links to its images)."""

    model_config = _STRICT

    class_probs: dict[str, float] = Field(description="Calibrated probability of each class.")
    predicted_class: str
    tumor_prob: float = Field(description="1 - P(no_tumor).")
    threshold: float = Field(description="What `tumor_prob` was compared with (see Threshold).")
    has_tumor: bool = Field(description="`tumor_prob >= threshold`: flag for a reader.")
    model_version: str
    tta: bool
    n_slices: int = Field(description="Slices scored (DICOM `middle_k` mode averages several).")
    slice_tumor_probs: list[float] | None = Field(
        None, description="`tumor_prob` of each scored slice; only when more than one."
    )
    cam_url: str | None = Field(description="Grad-CAM overlay; null when `cam` was false.")
    input_url: str = Field(description="The slice that was shown to the model, as a PNG.")
    input: InputFacts


class ClassMetrics(BaseModel):
    model_config = _STRICT

    precision: float
    recall: float
    f1: float
    support: int


class FileError(BaseModel):
    model_config = _STRICT

    path: str
    code: str = Field(description="The error code the file would get as an upload.")


class EvaluateResult(BaseModel):
    """An evaluate job's result: the report summary; `eval_report.json` holds all of it."""

    model_config = _STRICT

    n: int = Field(description="Labelled images scored (the metrics' denominator).")
    n_total: int = Field(description="Images listed.")
    n_scored: int
    n_labeled: int
    n_failed: int = Field(description="Images that could not be read; see `errors`.")
    class_names: list[str]
    acc_multiclass: float | None
    macro_f1: float | None
    per_class: dict[str, ClassMetrics] | None
    cm_multiclass: list[list[int]] | None = Field(description="Rows true, columns predicted.")
    threshold: float
    acc_binary: float | None
    sensitivity: float | None
    specificity: float | None
    cm_binary: list[list[int]] | None
    roc_auc_binary: float | None = Field(description="Tumour vs no tumour.")
    ap_binary: float | None
    best_threshold_by_YoudenJ: float | None  # noqa: N815 - the original report's spelling
    best_J: float | None  # noqa: N815
    ece: float | None = Field(description="Expected calibration error (15 bins).")
    model_version: str
    tta: bool
    artifacts: dict[str, str] = Field(description="Artifact name -> URL (plots, CSVs, report).")
    errors: list[FileError] = Field(description="The first 100 unreadable files.")


class TrainResult(BaseModel):
    """A train job's result: the version it registered and how it compares with production
    on the job's own held-out test split."""

    model_config = _STRICT

    model_version: str
    stage: Literal["candidate", "production", "archived"]
    promoted: bool = Field(description="Whether the promotion gate made it production.")
    gate: str | None = Field(description="The gate's reason, in words.")
    stage_reason: str | None
    test_metrics: dict[str, Any] | None = Field(description="On the held-out test split.")
    production_metrics: dict[str, Any] | None = Field(
        description="The production model on the same test split."
    )
    production_version: str | None
    best_epoch: int | None
    source_fingerprint: str | None
    artifacts: dict[str, str]
    epochs_requested: int | None = None
    epochs_run: int | None = None
    time_budget_minutes: float | None = None
    training_seconds: float | None = None
    split: dict[str, dict[str, int]] | None = Field(None, description="Images per split and class.")
    duplicates_dropped: int | None = None
    recovered: str | None = Field(
        None,
        description="Set when an earlier attempt had registered the model but could not "
        "record it: the job reports that version instead of training again.",
    )


RESULT_MODELS: dict[str, type[BaseModel]] = {
    "predict": PredictResult,
    "evaluate": EvaluateResult,
    "train": TrainResult,
}

"""The one settings object every service reads.

All configuration comes from environment variables with the ``BRAINMRI_`` prefix (plus the
original service's ``TUMOR_THRESH``). Backends are chosen by URL: ``sqlite:///`` vs
``postgresql+psycopg2://`` for the database, ``file://`` vs ``s3://`` for the object store,
``filesystem://`` vs ``redis://`` for the Celery broker. Leaving the URLs unset gives embedded
mode: everything lives under ``BRAINMRI_DATA_DIR``.

The README's settings table is generated from the field descriptions here
(``brainmri settings --markdown``) and a test keeps the two in step.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from brainmri.errors import ConfigurationError
from brainmri.training.recipes import RecipeName

Device = Literal["auto", "cpu", "cuda", "mps"]
#: ``Device`` as a tuple, for argparse ``choices``.
DEVICES: tuple[str, ...] = get_args(Device)
InferenceBackendName = Literal["auto", "eager", "bf16", "onnx"]
#: The same names as a tuple, for argparse ``choices`` (one list, not a copy per CLI).
INFERENCE_BACKENDS: tuple[str, ...] = get_args(InferenceBackendName)
DicomSliceMode = Literal["center", "middle_k"]

#: Values that must never reach production: they are the documented examples.
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "minioadmin", "secret", "password"})
#: A secret containing one of these (any case) is a placeholder someone forgot to replace;
#: the shipped examples are long enough to pass every length check, so exact matching missed
#: them (``dev-admin-key-change-me``).
PLACEHOLDER_MARKERS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "replace_me",
    "placeholder",
)
#: The example API keys shipped in ``.env.example`` and the Kubernetes dev overlay.
SHIPPED_EXAMPLE_KEYS = frozenset({"dev-admin-key-change-me", "dev-user-key-change-me"})
#: Prefix of every setting's environment variable.
ENV_PREFIX = "BRAINMRI_"
#: Registry model names: one safe object-store path segment, as wide as the registry column.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def is_placeholder_secret(value: str | None) -> bool:
    """True for a documented example value, or anything that still carries a placeholder marker."""
    lowered = (value or "").strip().lower()
    if not lowered:
        return False
    return (
        lowered in PLACEHOLDER_SECRETS
        or lowered in SHIPPED_EXAMPLE_KEYS
        or any(marker in lowered for marker in PLACEHOLDER_MARKERS)
        or (lowered.startswith("<") and lowered.endswith(">"))  # a template's <PASSWORD>
    )


def url_password(url: str | None) -> str | None:
    """The (decoded) password in a connection URL, or None when it has none."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL the drivers could use either; they report it themselves
        return None
    return unquote(password) if password else None


def api_key_values(spec: str) -> list[tuple[str, str]]:
    """``(key, role)`` pairs of ``key:role,key:role`` (the format ``KeyRing`` reads)."""
    pairs = []
    for entry in (part.strip() for part in spec.split(",")):
        if entry:
            key, _, role = entry.rpartition(":")
            pairs.append((key, role))
    return pairs


class Settings(BaseSettings):
    """Service configuration. One instance per process; see :func:`get_settings`."""

    # env_ignore_empty: ``NAME=`` (an uncommented ``.env.example`` line, a compose
    # ``${NAME:-}``) means "not set" and keeps the default; without it an empty value failed
    # number parsing and crashed every process, and an empty path silently became ``.``.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,
    )

    # --- deployment -----------------------------------------------------------------------
    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses placeholder secrets and auto-generated API keys.",
    )
    data_dir: Path = Field(
        Path("var"),
        description="Embedded-mode home: SQLite file, local object store, broker spool, API key.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Unset: `sqlite:///<data_dir>/brainmri.db` (embedded).",
    )
    object_store_url: str | None = Field(
        None,
        description="`s3://bucket[/prefix]` or `file:///abs/path`. Unset: `<data_dir>/objects`.",
    )
    s3_endpoint: str = Field("127.0.0.1:9000", description="S3/MinIO endpoint `host:port`.")
    s3_access_key: str | None = Field(None, description="S3 access key.")
    s3_secret_key: str | None = Field(None, description="S3 secret key.")
    s3_secure: bool = Field(False, description="Use HTTPS for the S3 endpoint.")
    s3_region: str | None = Field(None, description="S3 region (optional for MinIO).")
    broker_url: str | None = Field(
        None,
        description="Celery broker. Unset: kombu `filesystem://` spool under `<data_dir>/broker`.",
    )
    broker_poll_interval: float = Field(
        0.05, description="Polling interval (s) of the embedded filesystem broker.", gt=0
    )

    # --- model and inference ----------------------------------------------------------------
    model_dir: Path | None = Field(
        None, description="Model bundle folder for the CLI and a fresh registry. Unset: shipped."
    )
    model_name: str = Field(
        "brainmri",
        pattern=MODEL_NAME_PATTERN,
        description="Registry name of the served model.",
    )
    tumor_thresh: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("BRAINMRI_TUMOR_THRESH", "TUMOR_THRESH", "tumor_thresh"),
        description="Operating threshold on `tumor_prob` (env `TUMOR_THRESH` also read). "
        "Unset: the bundle's validated default (0.22 if the bundle has none). "
        "A request's `threshold` beats it.",
    )
    device: Device = Field("auto", description="`auto`, `cpu`, `cuda` or `mps`.")
    inference_backend: InferenceBackendName = Field(
        "auto",
        description="`auto` (bf16 autocast on CUDA and AMX CPUs, else fp32), `eager` (fp32), "
        "`bf16` (also ~1.9x faster than fp32 on AVX512-BF16 CPUs; refused on CPUs without "
        "bf16 instructions, where it would be emulated and slower) or `onnx` (ONNX Runtime).",
    )
    inference_batch_size: int = Field(32, ge=1, le=1024, description="Images per forward pass.")
    decode_workers: int = Field(2, ge=1, le=64, description="Threads decoding images in parallel.")
    dicom_slice_mode: DicomSliceMode = Field(
        "center", description="`center` slice (original behaviour) or `middle_k` averaged."
    )
    dicom_middle_k: int = Field(5, ge=1, le=64, description="Slices scored in `middle_k` mode.")

    # --- input limits (every limit is a setting) ----------------------------------------------
    max_upload_bytes: int = Field(64 * 1024**2, ge=1, description="Largest accepted upload.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest decoded image (width x height) - bomb guard."
    )
    max_tiff_pages: int = Field(16, ge=1, description="Most pages a TIFF may have.")
    zip_max_members: int = Field(2000, ge=1, description="Most members in a DICOM zip.")
    max_dicom_frames: int = Field(
        2000,
        ge=1,
        description="Most slices a DICOM upload may hold, as frames of one object or in a zip.",
    )
    max_dicom_object_pixels: int = Field(
        2000 * 512 * 512,
        ge=1,
        description="Most pixels one DICOM object may decode to (rows x columns x frames x "
        "samples) - bomb guard for multi-frame objects; the default fits "
        "`BRAINMRI_MAX_DICOM_FRAMES` frames of 512 x 512, and each frame is also held to "
        "`BRAINMRI_MAX_IMAGE_PIXELS`.",
    )
    zip_max_total_bytes: int = Field(
        1024**3, ge=1, description="Most bytes a zip may decompress to in total."
    )
    zip_max_ratio: float = Field(
        200.0, gt=1, description="Largest allowed uncompressed/compressed ratio of a zip."
    )
    max_eval_images: int = Field(20000, ge=1, description="Most images one evaluation may score.")
    max_source_files: int = Field(
        200_000,
        ge=1,
        description="Most files an evaluation source may list (before a `limit` samples "
        "them); a larger folder or prefix is refused instead of being listed into memory.",
    )
    upload_decode_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Uploads are validated and de-identified in child processes, and workers "
        "decode job inputs in such children (`BRAINMRI_WORKER_DECODE_SANDBOX`); a decode "
        "taking longer is stopped (an upload gets 422, a job's file gets its own error).",
    )
    upload_sandbox_processes: int = Field(
        2,
        ge=1,
        le=32,
        description="The API's decode child processes (workers: `BRAINMRI_DECODE_WORKERS`).",
    )
    upload_sandbox_memory_mb: int = Field(
        2048,
        ge=0,
        description="Address-space cap of each decode child, the API's and the workers' (0: none).",
    )
    upload_sandbox_confine: bool = Field(
        True,
        description="Confine decode children, the API's and the workers': no environment; no "
        "files but Python's and brainmri's code and a scratch folder, no TCP (Linux Landlock); "
        "no new socket of any kind (seccomp). Where the kernel cannot, the process logs a "
        "warning and decodes unconfined. Off only to debug a decoder.",
    )
    decode_child_max_tasks: int = Field(
        1000,
        ge=1,
        description="Decodes one decode child runs before a fresh one replaces it (C decoders "
        "may leak or fragment memory; a replacement costs about 0.3 s of start-up, which "
        "bulk decoding in a job waits for).",
    )
    worker_decode_sandbox: bool = Field(
        True,
        description="Workers decode job inputs (uploads again, evaluation folders, training "
        "data) in the same kind of child processes as the API's uploads, "
        "`BRAINMRI_DECODE_WORKERS` of them, under the `BRAINMRI_UPLOAD_DECODE_TIMEOUT_SECONDS`, "
        "`BRAINMRI_UPLOAD_SANDBOX_MEMORY_MB` and `BRAINMRI_UPLOAD_SANDBOX_CONFINE` rules: "
        "files in an S3 prefix reach the decoders without passing the API. Off: workers decode "
        "in their own threads, unconfined.",
    )

    # --- API -----------------------------------------------------------------------------
    api_keys: str = Field(
        "",
        description="API keys as `key:role,key:role` (roles `user`, `admin`). Unset in "
        "embedded mode: one admin key is generated on first start, printed once and kept in "
        "`<data_dir>/api_key`.",
    )
    allowed_roots: str = Field(
        "",
        description="Comma-separated local folders and `s3://bucket/prefix/` roots that "
        "evaluation, training and `POST /metrics` may read. Anything else is refused (400).",
    )
    max_active_jobs_per_key: int = Field(
        100,
        ge=0,
        description="Queued plus running jobs one API key may have at once; one more is "
        "refused with 429 and `Retry-After` (the CLI waits and retries). 0: no limit.",
    )
    legacy_wait_seconds: float = Field(
        60.0, gt=0, description="How long `POST /predict` and `POST /metrics` wait for their job."
    )
    log_level: str = Field("INFO", description="Log level of the services.")
    log_format: Literal["json", "text"] = Field("json", description="Structured JSON or text logs.")

    # --- jobs ----------------------------------------------------------------------------
    worker_queues: str = Field(
        "predict,evaluate", description="Queues a worker consumes (embedded mode adds `train`)."
    )
    job_heartbeat_seconds: float = Field(
        5.0, gt=0, description="Running jobs heartbeat this often."
    )
    job_stale_after_seconds: float = Field(
        60.0, gt=0, description="A running job without a heartbeat this long is requeued."
    )
    reaper_interval_seconds: float = Field(
        15.0, gt=0, description="How often workers look for stale jobs."
    )
    artifact_sweep_interval_seconds: float = Field(
        3600.0,
        ge=0,
        description="How often a worker removes stored files that nothing references (job "
        "artifacts left by store outages and killed workers; half-uploaded model bundles and "
        "uploads of jobs never recorded, once last written longer ago than this); 0 turns the "
        "sweep off.",
    )
    job_max_attempts: int = Field(
        3, ge=1, description="Crashed attempts before a job is marked failed (poison jobs)."
    )
    requeue_queued_after_seconds: float = Field(
        600.0,
        gt=0,
        description="Re-send a job still `queued` after this long (lost broker message).",
    )
    predict_time_limit: int = Field(300, ge=1, description="Hard time limit (s) of a predict job.")
    evaluate_time_limit: int = Field(
        14400, ge=1, description="Hard time limit (s) of an evaluate job."
    )
    train_time_limit: int = Field(172800, ge=1, description="Hard time limit (s) of a train job.")
    train_budget_share: float = Field(
        0.8,
        gt=0,
        le=0.95,
        description="Share of the train time limit that a train job's epoch loop may use; the "
        "rest is kept for download, evaluation and registration. A run that would not fit is "
        "fitted to it (annealed early), not killed by the limit.",
    )
    broker_visibility_timeout_seconds: int | None = Field(
        None,
        ge=1,
        description="Redis visibility timeout. Unset: longer than the longest job's "
        "time limit, so a running job is never redelivered (the job claim guards it anyway).",
    )
    storage_max_retries: int = Field(
        5, ge=0, description="Retries with exponential backoff for object-store outages."
    )
    model_check_seconds: float = Field(
        2.0, gt=0, description="Workers check the registry for a new production model this often."
    )

    # --- trainer, registry and scheduled retraining --------------------------------------
    promotion_min_macro_f1_gain: float = Field(
        0.005,
        description="Auto-promote only if the candidate's held-out macro-F1 beats "
        "production's by at least this much ...",
    )
    promotion_max_sensitivity_drop: float = Field(
        0.0,
        ge=0,
        description="... and its tumor sensitivity at the operating threshold is not "
        "lower than production's by more than this.",
    )
    promotion_require_clear_gain: bool = Field(
        True,
        description="... and the 95% paired-bootstrap interval of the macro-F1 gain (whole "
        "near-duplicate groups, as `brainmri compare`) lies above zero, so noise is never "
        "promoted.",
    )
    retrain_schedule: str = Field(
        "", description="Cron expression (`m h dom mon dow`, UTC) for retrain checks; empty: off."
    )
    retrain_dataset: str = Field(
        "", description="Dataset source the scheduled retrain reads (must be an allowed root)."
    )
    retrain_recipe: RecipeName = Field(
        "shipped",
        description="Recipe of scheduled retrains: `shipped` (the default model's own), "
        "`simple` or `strong`.",
    )
    retrain_epochs: int | None = Field(None, ge=1, description="Epochs of scheduled retrains.")
    retrain_time_budget_minutes: float | None = Field(
        None,
        gt=0,
        description="Wall-clock minutes for the epoch loop of scheduled retrains (as "
        "`brainmri train --time_budget_minutes`); unset: the train time limit's budget share.",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("retrain_schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        """Checked when settings load, so a typo stops every process with one line at start-up
        instead of surfacing only in the beat process, or never."""
        if value.strip():
            from brainmri.jobs.schedule import parse_cron

            try:
                parse_cron(value)
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        """Production must not start on the shipped example secrets. Messages name the
        setting only: a secret is never printed, not even a placeholder one."""
        if self.environment != "production":
            return self
        if is_placeholder_secret(self.s3_secret_key):
            raise ConfigurationError(
                "BRAINMRI_S3_SECRET_KEY is a documented placeholder; set a real secret"
            )
        for name, url in (
            ("BRAINMRI_DATABASE_URL", self.database_url),
            ("BRAINMRI_BROKER_URL", self.broker_url),
        ):
            if is_placeholder_secret(url_password(url)):
                raise ConfigurationError(
                    f"the password in {name} is a documented placeholder; set a real password"
                )
        for number, (key, _role) in enumerate(api_key_values(self.api_keys), start=1):
            if is_placeholder_secret(key):
                raise ConfigurationError(
                    f"BRAINMRI_API_KEYS entry {number} is a documented placeholder key; "
                    "generate real keys, e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        return self

    @model_validator(mode="after")
    def _retrain_budget_fits_the_time_limit(self) -> Settings:
        problem = self.train_budget_problem(
            "BRAINMRI_RETRAIN_TIME_BUDGET_MINUTES", self.retrain_time_budget_minutes
        )
        if problem:
            raise ConfigurationError(problem)
        return self

    # --- derived values -------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'brainmri.db'}"

    @property
    def resolved_object_store_url(self) -> str:
        return self.object_store_url or (self.data_dir / "objects").as_uri()

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def embedded(self) -> bool:
        """True when no external broker is configured: the API starts its own worker."""
        return self.resolved_broker_url.startswith("filesystem://")

    @property
    def broker_spool_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def api_key_file(self) -> Path:
        return self.data_dir / "api_key"

    @property
    def allowed_root_list(self) -> list[str]:
        return [root.strip() for root in self.allowed_roots.split(",") if root.strip()]

    @property
    def worker_queue_list(self) -> list[str]:
        return [queue.strip() for queue in self.worker_queues.split(",") if queue.strip()]

    @property
    def worker_alive_within(self) -> timedelta:
        """A worker silent this long is presumed gone: the job staleness window, and never
        under two reaper intervals (its reports come once per interval)."""
        return timedelta(
            seconds=max(self.job_stale_after_seconds, 2 * self.reaper_interval_seconds)
        )

    @property
    def broker_visibility_timeout(self) -> int:
        """Longer than the longest task, so Redis never redelivers a task that is running."""
        if self.broker_visibility_timeout_seconds is not None:
            return self.broker_visibility_timeout_seconds
        return max(self.predict_time_limit, self.evaluate_time_limit, self.train_time_limit) + 600

    @property
    def train_budget_ceiling_minutes(self) -> float:
        """The longest epoch loop a train job may ask for: its share of the hard time limit."""
        return self.train_time_limit * self.train_budget_share / 60.0

    def train_budget_problem(self, name: str, minutes: float | None) -> str | None:
        """Why a requested epoch-loop budget cannot be had, or None when it fits. One rule for
        the API's train requests and the scheduled-retrain setting; each raises its own error."""
        if minutes is None or minutes <= self.train_budget_ceiling_minutes:
            return None
        return (
            f"{name}={minutes:g} exceeds the {self.train_budget_ceiling_minutes:g} minutes a "
            "train job may train (BRAINMRI_TRAIN_TIME_LIMIT x BRAINMRI_TRAIN_BUDGET_SHARE)"
        )

    @property
    def resolved_model_dir(self) -> Path:
        from brainmri.models.bundle import default_bundle_dir

        return self.model_dir or default_bundle_dir()


#: Words in a setting's name that mark a value never to be echoed in an error message.
_SECRET_WORDS = ("key", "secret", "password", "url")


def env_names(name: str, field: FieldInfo) -> list[str]:
    """Environment variables that set a field, in the order pydantic-settings reads them (the
    first one set wins): ``BRAINMRI_<NAME>``, then upper-case alias choices (``TUMOR_THRESH``).
    One list for the settings docs and for error messages, so both name the same variables."""
    names = [f"{ENV_PREFIX}{name.upper()}"]
    alias = field.validation_alias
    for choice in getattr(alias, "choices", []) or []:
        if isinstance(choice, str) and choice.isupper() and choice not in names:
            names.append(choice)
    return names


def _field_of(location: object) -> str | None:
    """The Settings field an error location points at: a field name or one of its aliases."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else ()
        if location == name or location in choices:
            return name
    return None


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each bad environment variable, its value and what is wrong with it.

    pydantic reports the field or its *first* alias (``BRAINMRI_TUMOR_THRESH`` for a bad
    ``TUMOR_THRESH``), so the variable is looked up in the environment instead: the message
    must name what the user actually set. Values of secret-looking settings are not shown.
    """
    # Empty values are ignored (env_ignore_empty), so they cannot be the culprit.
    set_names = {name.upper() for name, value in os.environ.items() if value}
    problems = []
    for error in exc.errors():
        location = error["loc"][0] if error["loc"] else None
        field = _field_of(location)
        if field is None:
            problems.append(f"{location or 'settings'}: {error['msg']}")
            continue
        names = env_names(field, Settings.model_fields[field])
        variable = next((name for name in names if name in set_names), names[0])
        shown = "" if any(word in field for word in _SECRET_WORDS) else f"={error['input']!r:.60}"
        problems.append(f"{variable}{shown}: {error['msg']}")
    return "invalid setting " + "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once.

    A bad value becomes a :class:`ConfigurationError` with one readable line, which the CLI
    prints (exit 2) and services fail on, instead of a pydantic traceback naming an alias.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_settings_error(exc)) from None

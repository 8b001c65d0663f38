"""Remote commands: ``brainmri submit|jobs|models`` talk to a running API over HTTP.

They use :mod:`brainmri.client` and need no model, database or GPU on this machine. The server
and key come from ``--url``/``--key`` or the client-side environment variables
``BRAINMRI_URL``/``BRAINMRI_API_KEY`` (the server never reads these). ``--json`` prints the
API's objects for scripts; otherwise output is a short table or summary. ``--wait`` follows a
job with a progress bar on stderr and exits 1 when it fails or is cancelled, so a shell script
can rely on the exit status; refused requests exit 2 with the API's error code and message.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from brainmri.cli.common import EPILOG, add_flag, fail, print_json, unit_interval
from brainmri.client import (
    DEFAULT_URL,
    KEY_ENV,
    URL_ENV,
    BrainMRIClient,
    ClientError,
    Job,
    job_failed,
)
from brainmri.framing import CROP_MODES
from brainmri.progress import progress_bar
from brainmri.registry.headline import HEADLINE_KEYS, SOURCE_TEST, SOURCE_VALIDATION
from brainmri.training.recipes import TRAIN_OPTIONS, RecipeName

EXIT_JOB_FAILED = 1
EXIT_REFUSED = 2
JOB_KINDS = ("predict", "evaluate", "train")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
# The short column text for each headline source the API names.
# Keyed by a headline's "source", which a listing may lack (None): looked up with a default.
METRIC_SOURCES: dict[str | None, str] = {SOURCE_TEST: "test", SOURCE_VALIDATION: "val"}
CONNECTION_HELP = (
    f"Talks to a running brainmri API. Server: --url or {URL_ENV} (default {DEFAULT_URL}). "
    f"API key: --key or {KEY_ENV} (prefer the variable: a --key shows in the process list). "
    "Both are client-side variables; the server does not read them."
)


# --- argument plumbing ---------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    """Options every remote command shares (a parent parser, so each leaf lists them)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument("--url", default=None, help=f"API base URL (env {URL_ENV})")
    group.add_argument("--key", default=None, help=f"API key (env {KEY_ENV})")
    group.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)"
    )
    group.add_argument("--json", action="store_true", help="print JSON for scripts")
    return common


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the job to its end (progress bar on stderr); exit 1 if it fails or is "
        "cancelled",
    )
    add_flag(
        parser,
        "wait_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --wait: give up waiting after this long (the job keeps running)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _leaf(
    subparsers: argparse._SubParsersAction,
    name: str,
    common: argparse.ArgumentParser,
    help_text: str,
    description: str,
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help_text,
        description=f"{description} {CONNECTION_HELP}",
        epilog=EPILOG,
        parents=[common],
    )


def _group(
    subparsers: argparse._SubParsersAction, name: str, help_text: str
) -> argparse._SubParsersAction:
    parser = subparsers.add_parser(
        name, help=help_text, description=f"{help_text}. {CONNECTION_HELP}", epilog=EPILOG
    )
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def register(subparsers: argparse._SubParsersAction) -> None:
    common = _common_options()
    _register_submit(_group(subparsers, "submit", "submit a job to a remote brainmri API"), common)
    _register_jobs(_group(subparsers, "jobs", "list, show, follow and cancel remote jobs"), common)
    _register_models(_group(subparsers, "models", "the remote model registry"), common)


def _register_submit(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    predict = _leaf(
        sub,
        "predict",
        common,
        "upload images, .dcm files or DICOM zips for prediction (one job per FILE)",
        "Uploads each FILE as its own predict job. With --json it prints a list with one "
        "entry per FILE: the created job, or with --wait the finished job.",
    )
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE")
    predict.add_argument("--tta", action="store_true", help="test-time augmentation")
    predict.add_argument("--no-cam", action="store_true", help="skip the Grad-CAM overlay")
    predict.add_argument(
        "--threshold", type=unit_interval, default=None, help="operating threshold (0-1)"
    )
    predict.add_argument(
        "--cam-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --wait: save each job's cam.png here as <job id>.png",
    )
    _wait_options(predict)
    predict.set_defaults(handler=run_submit_predict)

    evaluate = _leaf(
        sub,
        "evaluate",
        common,
        "evaluate the production model on a server-side folder or S3 prefix",
        "SOURCE is a folder under one of the server's BRAINMRI_ALLOWED_ROOTS or an "
        "s3://bucket/prefix/, holding class-named subfolders.",
    )
    evaluate.add_argument("source", metavar="SOURCE")
    evaluate.add_argument("--limit", type=int, default=0, help="at most N images (0: all)")
    evaluate.add_argument("--tta", action="store_true", help="test-time augmentation")
    evaluate.add_argument(
        "--threshold", type=unit_interval, default=None, help="operating threshold (0-1)"
    )
    _wait_options(evaluate)
    evaluate.set_defaults(handler=run_submit_evaluate)

    train = _leaf(
        sub,
        "train",
        common,
        "train a candidate model on the server (admin key)",
        "Trains on a duplicate-aware split of DATASET, evaluates the candidate against "
        "production on the same held-out images and promotes it if it passes the gate. Unset "
        "options keep the recipe's defaults.",
    )
    train.add_argument("--dataset", required=True, metavar="D", help="folder, s3:// prefix or CSV")
    train.add_argument("--recipe", choices=get_args(RecipeName), default="simple")
    train.add_argument("--arch", default=None)
    train.add_argument("--epochs", type=int, default=None)
    add_flag(train, "img_size", type=int, default=None)
    add_flag(train, "batch_size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    add_flag(train, "weight_decay", type=float, default=None)
    add_flag(train, "label_smoothing", type=float, default=None)
    train.add_argument(
        "--mixup",
        dest="use_mixup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="MixUp/CutMix (default: the recipe's choice)",
    )
    add_flag(train, "warmup_epochs", type=float, default=None)
    add_flag(train, "drop_rate", type=float, default=None)
    train.add_argument(
        "--crop",
        choices=CROP_MODES,
        default=None,
        help="head: crop every slice to the head box, in training and in the bundle",
    )
    add_flag(
        train,
        "invert_prob",
        type=float,
        default=None,
        metavar="P",
        help="share of training slices with the head intensity-inverted",
    )
    add_flag(
        train,
        "head_crop_prob",
        type=float,
        default=None,
        metavar="P",
        help="share of training slices cropped to the head box (needs --crop none)",
    )
    add_flag(
        train,
        "ema_decay",
        type=float,
        default=None,
        metavar="D",
        help="per-step decay of the weight average (0: none)",
    )
    train.add_argument("--seed", type=int, default=None)
    add_flag(
        train,
        "time_budget_minutes",
        type=float,
        default=None,
        metavar="M",
        help="wall-clock minutes for the epoch loop; --epochs becomes the most it may run",
    )
    add_flag(train, "val_frac", type=float, default=None)
    add_flag(train, "test_frac", type=float, default=None)
    add_flag(train, "no_auto_promote", action="store_true", help="register but never auto-promote")
    _wait_options(train)
    train.set_defaults(handler=run_submit_train)


def _register_jobs(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    listing = _leaf(sub, "list", common, "list jobs, newest first", "Lists your jobs.")
    listing.add_argument("--kind", choices=JOB_KINDS, default=None)
    listing.add_argument("--status", choices=JOB_STATUSES, default=None)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    listing.set_defaults(handler=run_jobs_list)

    show = _leaf(sub, "show", common, "show one job and its result", "Shows one job.")
    show.add_argument("job_id", metavar="ID")
    show.set_defaults(handler=run_jobs_show)

    wait = _leaf(
        sub, "wait", common, "follow a job to its end", "Exit 1 if it fails or is cancelled."
    )
    wait.add_argument("job_id", metavar="ID")
    add_flag(wait, "wait_timeout", type=float, default=None, metavar="SECONDS")
    wait.add_argument("--quiet", action="store_true", help="no progress bar")
    wait.set_defaults(handler=run_jobs_wait, wait=True)

    cancel = _leaf(
        sub,
        "cancel",
        common,
        "cancel a queued or running job",
        "Queued jobs stop at once, running ones at their next check; --wait follows the job "
        "until it has stopped (exit 0 when it ended cancelled).",
    )
    cancel.add_argument("job_id", metavar="ID")
    _wait_options(cancel)
    cancel.set_defaults(handler=run_jobs_cancel)

    retry = _leaf(
        sub,
        "retry",
        common,
        "run again a job that failed with a retryable error",
        "Only failed jobs whose error is marked retryable (an object-store or broker outage) "
        "can run again; --wait follows it to its end.",
    )
    retry.add_argument("job_id", metavar="ID")
    _wait_options(retry)
    retry.set_defaults(handler=run_jobs_retry)

    artifact = _leaf(
        sub,
        "artifact",
        common,
        "download a job artifact (cam.png, eval_report.json, predictions.csv, plots)",
        "Writes the artifact to --output (default: its own name in this folder).",
    )
    artifact.add_argument("job_id", metavar="ID")
    artifact.add_argument("name", metavar="NAME")
    artifact.add_argument("-o", "--output", type=Path, default=None)
    artifact.set_defaults(handler=run_jobs_artifact)


def _register_models(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    listing = _leaf(
        sub, "list", common, "registered versions and their metrics", "Lists model versions."
    )
    listing.set_defaults(handler=run_models_list)

    promote = _leaf(
        sub, "promote", common, "make a version production (admin key)", "Promotes VERSION."
    )
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--reason", default=None, help="recorded with the promotion")
    promote.set_defaults(handler=run_models_promote)

    rollback = _leaf(
        sub,
        "rollback",
        common,
        "return production to the previous version (admin key)",
        "Rolls model NAME (e.g. brainmri) back to its previously promoted version.",
    )
    rollback.add_argument("name", metavar="NAME")
    rollback.set_defaults(handler=run_models_rollback)


# --- output helpers --------------------------------------------------------------------------


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[BrainMRIClient]:
    with BrainMRIClient(
        args.url, args.key, timeout=args.timeout, on_busy=BusyNotice().__call__
    ) as client:
        yield client


class BusyNotice:
    """Tells the user, on stderr, why a submission is waiting: the first time the server says
    the key is at its active-job limit, then at most once a minute while it still does."""

    EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        self._last: float | None = None

    def __call__(self, error: ClientError, delay: float) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.EVERY_SECONDS:
            return
        self._last = now
        print(
            f"server busy for this key: {error.message}; retrying every {delay:g} s",
            file=sys.stderr,
        )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _when(value: str | None) -> str:
    return value.replace("T", " ")[:19] if value else "-"


def _predict_summary(job: Job) -> str:
    result = job.get("result") or {}
    verdict = "TUMOR SUSPECTED" if result.get("has_tumor") else "no tumor suspected"
    probs = "  ".join(f"{k}={_num(v)}" for k, v in (result.get("class_probs") or {}).items())
    return (
        f"  {verdict}: tumor_prob {_num(result.get('tumor_prob'))} vs threshold "
        f"{_num(result.get('threshold'))}; predicted {result.get('predicted_class')}\n"
        f"  {probs}\n  model {result.get('model_version') or job.get('model_version')}"
    )


def _evaluate_summary(job: Job) -> str:
    result = job.get("result") or {}
    rows = [
        ("images scored", result.get("n_scored")),
        ("accuracy (4 classes)", _num(result.get("acc_multiclass"))),
        ("macro-F1", _num(result.get("macro_f1"))),
        ("sensitivity", _num(result.get("sensitivity"))),
        ("specificity", _num(result.get("specificity"))),
        ("ROC AUC (tumor)", _num(result.get("roc_auc_binary"))),
        ("AP (tumor)", _num(result.get("ap_binary"))),
        ("ECE", _num(result.get("ece"))),
        ("threshold", _num(result.get("threshold"))),
        ("Youden-J threshold", _num(result.get("best_threshold_by_YoudenJ"))),
        ("model", result.get("model_version") or job.get("model_version")),
    ]
    artifacts = ", ".join(sorted((result.get("artifacts") or {}).keys()))
    return _table(("metric", "value"), rows) + (f"\nartifacts: {artifacts}" if artifacts else "")


def _job_summary(job: Job) -> str:
    """A job for people: one status line, then its result or error."""
    line = f"job {job['job_id']}  {job['kind']}  {job['status']}"
    if job["status"] in ("queued", "running"):
        line += f"  {job['progress'] * 100:.0f}%"
        note = progress_note(job)
        if note:
            line += f" ({note})"
    lines = [line, f"  created {_when(job['created_at'])}  finished {_when(job['finished_at'])}"]
    if job.get("waiting_reason"):
        lines.append(f"  waiting: {job['waiting_reason']}")
    if job.get("error"):
        error = job["error"] or {}
        lines.append(f"  error [{error.get('code')}]: {error.get('message')}")
    if job["status"] == "succeeded" and job.get("result"):
        if job["kind"] == "predict":
            lines.append(_predict_summary(job))
        elif job["kind"] == "evaluate":
            lines.append(_evaluate_summary(job))
        else:
            result = job["result"] or {}
            lines += [f"  {key}: {value}" for key, value in result.items() if _scalar(value)]
    return "\n".join(lines)


def progress_note(job: Job) -> str:
    """Where a running job is, from its progress detail: the stage, images or files done, and
    for training the epoch (of the planned epochs, which a time budget may shorten) with its
    validation macro-F1. Empty when the job reports nothing beyond its fraction."""
    detail = job.get("progress_detail") or {}
    parts = [str(detail["stage"])] if detail.get("stage") else []
    if detail.get("epoch") and detail.get("epochs"):
        parts.append(f"epoch {detail['epoch']}/{detail['epochs']}")
        if detail.get("val_macro_f1") is not None:
            parts.append(f"val macro-F1 {detail['val_macro_f1']:.3f}")
    elif detail.get("total"):
        unit = "" if detail.get("stage") else " images"
        parts.append(f"{detail.get('done', 0)}/{detail['total']}{unit}")
    return ", ".join(parts)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _follow(client: BrainMRIClient, job_id: str, args: argparse.Namespace, label: str) -> Job:
    """Wait for a job with a tqdm bar on stderr (stdout stays clean for --json)."""
    bar = progress_bar(
        total=100,
        desc=label,
        unit="%",
        file=sys.stderr,
        disable=bool(getattr(args, "quiet", False)),
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
        dynamic_ncols=True,
    )

    told: set[str] = set()

    def on_progress(job: Job) -> None:
        reason = job.get("waiting_reason")
        if reason and reason not in told:  # once per reason, above the bar; even with --quiet
            told.add(reason)
            bar.write(f"job {job_id} is queued: {reason}", file=sys.stderr)
        done = 100 if job["status"] == "succeeded" else round(job["progress"] * 100)
        note = progress_note(job) if job["status"] == "running" else ""
        bar.set_postfix_str(f"{job['status']}: {note}" if note else job["status"], refresh=False)
        bar.update(done - bar.n)  # redraws as often as the bar's interval allows

    try:
        return client.wait(job_id, on_progress, timeout=getattr(args, "wait_timeout", None))
    except KeyboardInterrupt:
        bar.close()
        print(
            f"\nstopped waiting; job {job_id} keeps running "
            f"(brainmri jobs cancel {job_id} stops it)",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()


def _finish(job: Job, args: argparse.Namespace) -> int:
    if args.json:
        print_json(job)
    else:
        print(_job_summary(job))
    return EXIT_JOB_FAILED if job_failed(job) else 0


# --- handlers ------------------------------------------------------------------------------


def run_submit_predict(args: argparse.Namespace) -> int:
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        return fail(f"no such file: {', '.join(missing)}")
    outputs: list[dict[str, Any]] = []
    status = 0
    with _client(args) as client:
        submitted: list[tuple[Path, dict[str, Any]]] = []
        for path in args.files:
            try:
                created = client.submit_predict(
                    path, tta=args.tta, cam=not args.no_cam, threshold=args.threshold
                )
            except ClientError as exc:
                if exc.status in (0, 401, 403):
                    raise  # the server or the key is the problem: the same for every file
                print(f"{path}: refused [{exc.code}]: {exc}", file=sys.stderr)
                outputs.append(
                    {"file": str(path), "error": {"code": exc.code, "message": exc.message}}
                )
                status = EXIT_REFUSED
                continue
            submitted.append((path, dict(created)))
            if not args.json:
                print(f"{path}: predict job {created['job_id']} {created['status']}")
        # All files are uploaded before waiting, so the jobs run side by side on the workers.
        for path, accepted in submitted:
            if not args.wait:
                outputs.append({"file": str(path), **accepted})
                continue
            job = _follow(client, accepted["job_id"], args, path.name)
            outputs.append({"file": str(path), **job})
            if job_failed(job):
                status = max(status, EXIT_JOB_FAILED)
            elif args.cam_dir and (job.get("result") or {}).get("cam_url"):
                args.cam_dir.mkdir(parents=True, exist_ok=True)
                target = args.cam_dir / f"{job['job_id']}.png"
                client.download_artifact(job["job_id"], "cam.png", target)
            if not args.json:
                print(f"{path}: {_job_summary(job)}")
    if args.json:
        print_json(outputs)
    return status


def _submitted(
    client: BrainMRIClient, created: dict[str, Any], args: argparse.Namespace, label: str
) -> int:
    if not args.wait:
        if args.json:
            print_json(created)
        else:
            print(f"{label} job {created['job_id']} {created['status']}")
        return 0
    return _finish(_follow(client, created["job_id"], args, label), args)


def run_submit_evaluate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        created = client.submit_evaluate(
            args.source, tta=args.tta, threshold=args.threshold, limit=args.limit
        )
        return _submitted(client, dict(created), args, "evaluate")


def run_submit_train(args: argparse.Namespace) -> int:
    names = ("recipe", *TRAIN_OPTIONS, "time_budget_minutes", "val_frac", "test_frac")
    params = {name: getattr(args, name) for name in names}
    params["auto_promote"] = not args.no_auto_promote
    with _client(args) as client:
        created = client.submit_train(args.dataset, **params)
        return _submitted(client, dict(created), args, "train")


def run_jobs_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list_jobs(
            kind=args.kind, status=args.status, limit=args.limit, offset=args.offset
        )
    if args.json:
        print_json(page)
        return 0
    rows = [
        (
            job["job_id"],
            job["kind"],
            job["status"],
            f"{job['progress'] * 100:.0f}%",
            _when(job["created_at"]),
            job["model_version"],
        )
        for job in page["items"]
    ]
    print(_table(("ID", "KIND", "STATUS", "PROGRESS", "CREATED", "MODEL"), rows))
    shown = f"{page['offset'] + 1}-{page['offset'] + len(page['items'])}" if rows else "0"
    print(f"({shown} of {page['total']})")
    return 0


def run_jobs_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get_job(args.job_id)
    if args.json:
        print_json(job)
    else:
        print(_job_summary(job))
    return 0


def run_jobs_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _finish(_follow(client, args.job_id, args, args.job_id[:8]), args)


def run_jobs_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel_job(args.job_id)
        if args.wait:
            job = _follow(client, args.job_id, args, f"cancel {args.job_id[:8]}")
    if args.json:
        print_json(job)
    elif args.wait:
        print(_job_summary(job))
    else:
        state = "cancelled" if job["status"] == "cancelled" else "cancel requested"
        print(f"job {job['job_id']}: {state} (status {job['status']})")
    if args.wait and job["status"] != "cancelled":
        return EXIT_JOB_FAILED
    return 0


def run_jobs_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.retry_job(args.job_id)
        if args.wait:
            return _finish(_follow(client, args.job_id, args, f"retry {args.job_id[:8]}"), args)
    if args.json:
        print_json(job)
    else:
        print(f"job {job['job_id']}: queued again (status {job['status']})")
    return 0


def run_jobs_artifact(args: argparse.Namespace) -> int:
    output = args.output or Path(Path(args.name).name)
    with _client(args) as client:
        data = client.download_artifact(args.job_id, args.name, output)
    if args.json:
        print_json(
            {"job_id": args.job_id, "name": args.name, "path": str(output), "bytes": len(data)}
        )
    else:
        print(f"wrote {output} ({len(data)} bytes)")
    return 0


def run_models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.list_models()
    if args.json:
        print_json(models)
        return 0
    rows = []
    for row in models["items"]:
        metrics = row.get("headline") or {}
        rows.append(
            (
                row["version"],
                row["stage"],
                row["arch"],
                *(_num(metrics.get(key)) for key in HEADLINE_KEYS),
                METRIC_SOURCES.get(metrics.get("source"), "-"),
                _when(row["created_at"]),
            )
        )
    headers = ("VERSION", "STAGE", "ARCH", "MACRO_F1", "ACC", "SENS", "SPEC", "AUC", "ECE", "ON")
    print(_table((*headers, "CREATED"), rows))
    print("ON: test = the held-out test split of its train job; val = validation/calibration")
    print(f"production: {models['production'] or 'none'}")
    return 0


def _model_changed(row: dict[str, Any], args: argparse.Namespace, verb: str) -> int:
    if args.json:
        print_json(row)
    else:
        print(f"{verb}: {row['name']} production is now {row['version']}")
    return 0


def run_models_promote(args: argparse.Namespace) -> int:
    with _client(args) as client:
        row = client.promote(args.version, reason=args.reason)
    return _model_changed(dict(row), args, "promoted")


def run_models_rollback(args: argparse.Namespace) -> int:
    with _client(args) as client:
        row = client.rollback(args.name)
    return _model_changed(dict(row), args, "rolled back")

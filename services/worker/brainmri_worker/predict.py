"""The predict job: one uploaded image, DICOM file or zipped series."""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
from PIL import Image

from brainmri.inference.engine import InferenceEngine, PreparedInput
from brainmri.inference.results import resolve_threshold
from brainmri.jobs.artifacts import artifact_url
from brainmri.jobs.runtime import JobContext, JobOutcome


def prepare_upload(engine: InferenceEngine, data: bytes) -> PreparedInput:
    """Decode and preprocess exactly as every other path does (see brainmri.preprocess)."""
    return engine.prepare_bytes(data)


def slice_png(pixels: np.ndarray) -> bytes:
    """The displayed slice as an 8-bit PNG - pixels only, no source metadata."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def run_predict(ctx: JobContext, engine: InferenceEngine) -> JobOutcome:
    assert ctx.input_uri is not None
    store = ctx.store
    data = store.get(store.key_from_uri(ctx.input_uri), max_bytes=ctx.settings.max_upload_bytes)
    prepared = prepare_upload(engine, data)
    ctx.progress(0.2)
    tta = bool(ctx.params.get("tta", False))
    started = time.perf_counter()
    prediction = engine.predict_prepared([prepared], tta=tta)[0]
    inference_ms = (time.perf_counter() - started) * 1000.0
    ctx.progress(0.5)
    threshold = resolve_threshold(
        ctx.params.get("threshold"), ctx.settings.tumor_thresh, engine.metadata
    )
    artifacts = {
        "input.png": ctx.put_artifact("input.png", slice_png(prepared.decoded.display_slice))
    }
    cam_uri = None
    if ctx.params.get("cam", True):
        ctx.check_cancelled()
        # The reported class (averaged over TTA views or DICOM slices), not the displayed
        # slice's own un-augmented top class: the heatmap must explain what the user is told.
        cam = engine.explain(prepared, target_class=prediction.predicted_class)
        cam_uri = ctx.put_artifact("cam.png", cam.png)
        artifacts["cam.png"] = cam_uri
    result = prediction.to_dict(threshold)
    result["cam_url"] = artifact_url(ctx.job_id, "cam.png") if cam_uri else None
    result["input_url"] = artifact_url(ctx.job_id, "input.png")
    result["input"] = {"kind": prepared.decoded.kind, **_public_details(prepared)}
    if prediction.slice_tumor_probs:
        result["slice_tumor_probs"] = prediction.slice_tumor_probs
    row = {
        "item_index": 0,
        "input_uri": ctx.input_uri,
        "sha256": hashlib.sha256(data).hexdigest(),
        "class_probs": prediction.class_probs,
        "predicted_class": prediction.predicted_class,
        "tumor_prob": prediction.tumor_prob,
        "threshold": threshold,
        "has_tumor": prediction.has_tumor(threshold),
        "true_class": None,
        "cam_uri": cam_uri,
        "model_version": engine.version,
    }
    return JobOutcome(
        result=result,
        model_version=engine.version,
        predictions=[row],
        artifacts=artifacts,
        inference_ms_per_image=inference_ms,
    )


def _public_details(prepared: PreparedInput) -> dict[str, object]:
    details = dict(prepared.decoded.details)
    if "selected_indices" in details:
        details["selected_indices"] = list(details["selected_indices"])
    return details

"""Batched inference: decode in parallel, preprocess once, one forward pass per batch.

The stages follow the pre-process -> predict -> post-process shape, each timed:

* decode + preprocess run in a thread pool with a bounded look-ahead (Pillow, NumPy and the
  torch resize release the GIL), so the network is fed while later files are still decoding;
  with a ``sandbox`` (the workers: their inputs come from users) each thread's decode runs in
  a confined child process and only the pixels come back (:mod:`brainmri.imaging.sandbox`);
* all TTA views of a batch go through the network in a single forward pass;
* logits are divided by the bundle's calibration temperature before the softmax.

A file that fails to decode yields an error *at its own index*; it never shifts later
predictions onto the wrong path (a defect of the original ``/metrics``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from brainmri.concurrency import bounded_map
from brainmri.devices import autocast_dtype, resolve_device
from brainmri.errors import InputError
from brainmri.explain import CamResult, GradCamExplainer
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.inputs import DecodedInput, decode_input, read_file_limited
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox, run_decoder
from brainmri.inference.backends import EagerBackend, LogitsBackend, OnnxBackend
from brainmri.inference.onnx_export import cached_onnx_path
from brainmri.inference.results import Prediction, prediction_from_probs
from brainmri.inference.tta import average_views, expand_views, validate_views
from brainmri.models.bundle import ModelBundle
from brainmri.preprocess import preprocess_slice
from brainmri.progress import progress_bar
from brainmri.storage.base import ObjectNotFoundError

log = logging.getLogger(__name__)

#: A file path, raw bytes, or a zero-argument loader (e.g. an object-store fetch run in the
#: decode thread pool).
Source = Path | bytes | Callable[[], bytes]


@dataclass(slots=True)
class StageTimes:
    """Cumulative seconds spent per stage (for logs, metrics and benchmarks)."""

    decode: float = 0.0
    forward: float = 0.0
    images: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, decode: float = 0.0, forward: float = 0.0, images: int = 0) -> None:
        with self._lock:
            self.decode += decode
            self.forward += forward
            self.images += images


@dataclass(frozen=True, slots=True)
class PreparedInput:
    """A decoded input and its model tensors (one per scored slice)."""

    decoded: DecodedInput
    tensors: list[torch.Tensor]


class InferenceEngine:
    """Everything needed to score inputs with one model bundle."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        backend: str = "eager",
        device: str = "auto",
        batch_size: int = 32,
        decode_workers: int = 2,
        limits: InputLimits | None = None,
        dicom_selection: SliceSelection | None = None,
        tta_views: Sequence[str] | None = None,
        onnx_cache_dir: Path | None = None,
        sandbox: DecodeSandbox | None = None,
    ) -> None:
        self.bundle = bundle
        self.sandbox = sandbox
        self.metadata = bundle.metadata
        self.preprocess = bundle.metadata.preprocess
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.limits = limits or InputLimits()
        self.dicom_selection = dicom_selection or SliceSelection()
        self.tta_views = validate_views(tta_views or bundle.metadata.tta_views)
        self.times = StageTimes()
        self.backend = self._make_backend(backend, onnx_cache_dir)
        self._explainer: GradCamExplainer | None = None
        self._explainer_lock = threading.Lock()
        # Padding value for rotated views: black (0.0) in normalised units.
        self._fill = (0.0 - self.preprocess.mean) / self.preprocess.std

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    def _make_backend(self, name: str, onnx_cache_dir: Path | None) -> LogitsBackend:
        if name == "auto":
            name = (
                "bf16"
                if autocast_dtype(self.device, "auto", purpose="inference") is torch.bfloat16
                else "eager"
            )
        if name == "onnx":
            return OnnxBackend(cached_onnx_path(self.bundle, onnx_cache_dir))
        if name in ("eager", "bf16"):
            return EagerBackend(self.bundle.build_model(), self.device, bf16=name == "bf16")
        raise ValueError(f"unknown inference backend {name!r}; use auto, eager, bf16 or onnx")

    # --- stage 1: decode + preprocess ------------------------------------------------------
    def prepare_bytes(self, data: bytes) -> PreparedInput:
        """Decode any accepted input and build its model tensors."""
        started = time.perf_counter()
        decode = partial(decode_input, limits=self.limits, dicom_selection=self.dicom_selection)
        decoded = run_decoder(self.sandbox, decode, data)
        tensors = [preprocess_slice(pixels, self.preprocess) for pixels in decoded.slices]
        self.times.add(decode=time.perf_counter() - started)
        return PreparedInput(decoded, tensors)

    def prepare_source(self, source: Source) -> PreparedInput:
        if isinstance(source, bytes):
            data = source
        elif callable(source):
            data = source()
        else:
            data = read_file_limited(Path(source), self.limits)
        return self.prepare_bytes(data)

    # --- stage 2: forward --------------------------------------------------------------------
    def probabilities(self, batch: torch.Tensor, *, tta: bool = False) -> np.ndarray:
        """(N, C, S, S) -> (N, K) calibrated probabilities; TTA views in one forward pass."""
        views = self.tta_views if tta else ("identity",)
        started = time.perf_counter()
        expanded = expand_views(batch, views, self._fill) if len(views) > 1 else batch
        logits = self.backend.logits(expanded)
        probs = torch.softmax(logits / self.metadata.temperature, dim=-1)
        if len(views) > 1:
            probs = average_views(probs, len(views))
        self.times.add(forward=time.perf_counter() - started, images=batch.shape[0])
        return probs.numpy().astype(np.float64)

    def predict_tensors(self, tensors: Sequence[torch.Tensor], *, tta: bool = False) -> np.ndarray:
        """Probabilities for many preprocessed tensors, ``batch_size`` at a time."""
        if not tensors:
            return np.zeros((0, len(self.class_names)))
        chunks = [
            self.probabilities(torch.stack(list(tensors[i : i + self.batch_size])), tta=tta)
            for i in range(0, len(tensors), self.batch_size)
        ]
        return np.concatenate(chunks, axis=0)

    # --- stage 3: post-process ----------------------------------------------------------------
    def predict_prepared(
        self, prepared: Sequence[PreparedInput], *, tta: bool = False
    ) -> list[Prediction]:
        """One prediction per input; multi-slice inputs average their slices' probabilities."""
        flat = [tensor for item in prepared for tensor in item.tensors]
        probs = self.predict_tensors(flat, tta=tta)
        results: list[Prediction] = []
        offset = 0
        for item in prepared:
            count = len(item.tensors)
            results.append(
                prediction_from_probs(probs[offset : offset + count], self.metadata, tta=tta)
            )
            offset += count
        return results

    def predict_bytes(self, data: bytes, *, tta: bool = False) -> Prediction:
        return self.predict_prepared([self.prepare_bytes(data)], tta=tta)[0]

    def predict_sources(
        self,
        sources: Sequence[Source],
        *,
        tta: bool = False,
        progress: bool = False,
        on_result: Callable[[int, Prediction | InputError], None] | None = None,
    ) -> list[Prediction | InputError]:
        """Score many files or byte strings; input errors are returned in place, by index."""
        results: list[Prediction | InputError | None] = [None] * len(sources)
        pending: list[tuple[int, PreparedInput]] = []
        bar = progress_bar(total=len(sources), desc="predict", unit="img", disable=not progress)

        def flush() -> None:
            predictions = self.predict_prepared([item for _, item in pending], tta=tta)
            for (index, _), prediction in zip(pending, predictions, strict=True):
                results[index] = prediction
                if on_result:
                    on_result(index, prediction)
            bar.update(len(pending))
            pending.clear()

        try:
            for index, outcome in enumerate(
                bounded_map(
                    self._prepare_or_error, sources, self.decode_workers, self.batch_size * 2
                )
            ):
                if isinstance(outcome, InputError):
                    results[index] = outcome
                    bar.update(1)
                    if on_result:
                        on_result(index, outcome)
                    continue
                pending.append((index, outcome))
                if sum(len(item.tensors) for _, item in pending) >= self.batch_size:
                    flush()
            if pending:
                flush()
        finally:
            bar.close()
        return [result for result in results if result is not None]

    def _prepare_or_error(self, source: Source) -> PreparedInput | InputError:
        """Problems of one input become that input's error; anything else still aborts.

        An object that vanished between listing and fetching is the image's problem, like an
        undecodable file. (An invalid key is an InputError already; an unreachable store is
        not caught - the job retries it as a whole.)
        """
        try:
            return self.prepare_source(source)
        except InputError as exc:
            return exc
        except ObjectNotFoundError as exc:
            return InputError(f"cannot fetch input: {exc}", code=exc.code)
        except OSError as exc:
            return InputError(f"cannot read input: {exc.strerror or exc}", code="unreadable_file")

    # --- explanation ----------------------------------------------------------------------------
    def explain(self, prepared: PreparedInput, target_class: str | None = None) -> CamResult:
        """Grad-CAM overlay for the displayed slice, for ``target_class``.

        Pass the reported prediction's class: without it the target is the displayed slice's
        own un-augmented top class, which differs from a TTA or multi-slice prediction on
        borderline inputs (3 in 108 in a review), so the heatmap would explain another class.
        """
        explainer = self._get_explainer()
        slice_index = len(prepared.tensors) // 2
        tensor = prepared.tensors[slice_index]
        if target_class is None:
            probs = self.probabilities(tensor.unsqueeze(0))[0]
            target = int(np.argmax(probs))
        else:
            target = self.class_names.index(target_class)
        return explainer.explain(tensor, prepared.decoded.slices[slice_index], target)

    def _get_explainer(self) -> GradCamExplainer:
        with self._explainer_lock:
            if self._explainer is None:
                model = self.bundle.build_model().to(self.device)
                self._explainer = GradCamExplainer(model, self.preprocess)
            return self._explainer


__all__ = ["InferenceEngine", "PreparedInput"]

"""The training loop: from labelled samples to a calibrated model bundle.

Per run, in ``out_dir``:

* ``train_config.json`` - the resolved configuration, command and data fingerprint;
* ``checkpoints/last.pt`` (resume state; tensors and plain values only, loaded with
  ``weights_only=True``) and ``checkpoints/best.safetensors`` (best epoch by val macro-F1;
  with ``ema_decay`` set, the weight average is what is validated and kept);
* ``history.csv`` / ``history.json`` / ``training_curves.png``;
* ``calibration.json`` - temperature, ECE before/after, the chosen threshold;
* ``model/`` - the bundle of the best epoch, calibrated. It is written once, atomically, into a
  new folder, so a run never overwrites a model that is in use.

The validation set is split by duplicate group into a *selection* half (checkpoint choice,
early stopping) and a *calibration* half (temperature and threshold), so the operating point
is never tuned on the data that picked the checkpoint.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from brainmri.data.builder import dataset_fingerprint, stratified_group_split
from brainmri.data.labels import CLASS_NAMES
from brainmri.data.manifest import Sample
from brainmri.devices import apply_device_tips, autocast_dtype, loader_workers, resolve_device
from brainmri.errors import BrainMRIError, DatasetError
from brainmri.evaluation.calibration import choose_threshold, fit_temperature, softmax
from brainmri.evaluation.metrics import (
    binary_truth,
    classification_report,
    expected_calibration_error,
    tumor_probabilities,
)
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.models.bundle import BundleMetadata, ModelBundle, default_bundle_dir, load_bundle
from brainmri.models.factory import create_model
from brainmri.preprocess import PreprocessConfig
from brainmri.progress import progress_bar
from brainmri.training.augment import build_post_normalize, build_train_transform
from brainmri.training.checkpoints import RunParts, load_checkpoint, save_checkpoint
from brainmri.training.data import EvalDataset, SliceCache, TrainDataset, build_cache
from brainmri.training.ema import WeightAverage
from brainmri.training.mixing import BatchMixer, soft_cross_entropy
from brainmri.training.recipes import TrainConfig
from brainmri.training.schedule import (
    WarmupCosine,
    class_weights,
    epochs_within_budget,
    param_groups,
)

log = logging.getLogger(__name__)
# The best epoch's weights inside a run folder (written per epoch, read by --init_from).
BEST_CHECKPOINT = Path("checkpoints") / "best.safetensors"

BUNDLE_DIRNAME = "model"


class TrainingCancelled(BrainMRIError):
    """Raised between batches when the caller's ``should_stop`` says so."""

    code = "training_cancelled"


@dataclass(frozen=True, slots=True)
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_acc: float
    val_macro_f1: float
    val_auc: float | None
    lr: float
    seconds: float
    is_best: bool

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class TrainHooks:
    on_epoch: Callable[[EpochReport], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_batch: Callable[[int, int], None] | None = None  # (step in epoch, steps per epoch)


@dataclass
class TrainResult:
    bundle_dir: Path
    best_epoch: int
    best_macro_f1: float
    epochs_run: int
    history: list[dict[str, Any]]
    calibration: dict[str, Any]
    mix_counts: dict[str, int]
    seconds: float
    failures: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_validation(
    samples: Sequence[Sample], calib_frac: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Group-aware, class-stratified split of validation into selection and calibration parts."""
    if calib_frac <= 0:
        return list(samples), list(samples)
    group_ids = {g: i for i, g in enumerate(sorted({s.group_id or str(s.path) for s in samples}))}
    splits = stratified_group_split(
        [s.class_name for s in samples],
        [group_ids[s.group_id or str(s.path)] for s in samples],
        val_frac=0.0,
        test_frac=calib_frac,
        seed=seed,
    )
    selection = [s for s, split in zip(samples, splits, strict=True) if split == "train"]
    calibration = [s for s, split in zip(samples, splits, strict=True) if split == "test"]
    if not selection or not calibration:
        return list(samples), list(samples)
    return selection, calibration


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    dataset: EvalDataset,
    device: torch.device,
    batch_size: int,
    amp: torch.dtype | None,
    channels_last: bool,
) -> np.ndarray:
    model.eval()
    outputs = []
    for start in range(0, len(dataset), batch_size):
        batch = torch.stack(
            [dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]
        )
        batch = batch.to(device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            outputs.append(model(batch).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0))


class _CacheArgs(TypedDict):
    """The :func:`build_cache` arguments every split of one run shares."""

    preprocess: PreprocessConfig
    workers: int
    progress: bool
    class_names: Sequence[str]
    sandbox: DecodeSandbox | None


class Trainer:
    """One training run. Construct, then call :meth:`run`."""

    def __init__(
        self,
        config: TrainConfig,
        train_samples: Sequence[Sample],
        val_samples: Sequence[Sample],
        out_dir: Path,
        *,
        calib_samples: Sequence[Sample] | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        hooks: TrainHooks | None = None,
        progress: bool = True,
        command: str | None = None,
        protected_dirs: Sequence[Path] = (),
        name: str = "brainmri",
        decode_sandbox: DecodeSandbox | None = None,
    ) -> None:
        """``decode_sandbox``: decode the images in its children (the train job, on data
        from users); None decodes them in this process (``brainmri train``)."""
        self.config = config
        self.decode_sandbox = decode_sandbox
        self.class_names = list(class_names)
        self.out_dir = Path(out_dir)
        self.hooks = hooks or TrainHooks()
        self.progress = progress
        self.command = command if command is not None else " ".join(sys.argv)
        self.name = name
        self.bundle_dir = self.out_dir / BUNDLE_DIRNAME
        self._initialised_from: str | None = None  # set by --init_from, kept in provenance
        self._refuse_protected([default_bundle_dir(), *protected_dirs])
        if not train_samples or not val_samples:
            raise DatasetError("training needs non-empty train and validation sets")
        unknown = {s.class_name for s in [*train_samples, *val_samples]} - set(self.class_names)
        if unknown:
            raise DatasetError(
                f"samples have classes outside {self.class_names}: {sorted(unknown)}"
            )
        self.train_samples = list(train_samples)
        if calib_samples:
            self.select_samples, self.calib_samples = list(val_samples), list(calib_samples)
        else:
            self.select_samples, self.calib_samples = split_validation(
                val_samples, config.calib_frac, config.seed
            )
        self.preprocess = PreprocessConfig(
            img_size=config.img_size,
            resize=config.resize,
            crop=config.crop,
            in_chans=config.in_chans,
        )

    def _refuse_protected(self, protected: Sequence[Path]) -> None:
        target = self.bundle_dir.resolve()
        for folder in protected:
            folder = Path(folder).resolve()
            if target == folder or folder in target.parents or target in folder.parents:
                raise BrainMRIError(
                    f"refusing to write a bundle at {target}: it would overwrite the model in use "
                    f"({folder})",
                    code="protected_model_dir",
                )

    # ------------------------------------------------------------------------------------
    def run(self, *, resume: Path | None = None) -> TrainResult:
        config = self.config
        if self.bundle_dir.exists():
            raise BrainMRIError(
                f"{self.bundle_dir} exists: this run already finished; choose a new --out_dir",
                code="run_finished",
            )
        started = time.perf_counter()
        seed_everything(config.seed)
        device = resolve_device(config.device)
        apply_device_tips(device)
        amp = autocast_dtype(device, config.precision)
        checkpoints = self.out_dir / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)

        train_cache, select_cache, calib_cache = self._build_caches()
        fingerprint = dataset_fingerprint(
            (sha, self.class_names[int(label)])
            for cache in (train_cache, select_cache, calib_cache)
            for sha, label in zip(cache.sha256, cache.labels, strict=True)
        )
        self._write_config(fingerprint, device, amp)

        model = create_model(
            config.arch,
            num_classes=len(self.class_names),
            in_chans=config.in_chans,
            drop_rate=config.drop_rate or None,
        )
        if config.init_from:
            self._initialised_from = self._init_weights(model, Path(config.init_from))
        model = model.to(device)
        if config.channels_last and device.type != "mps":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
        ema = WeightAverage(model, config.ema_decay) if config.ema_decay else None
        # What is validated, checkpointed as "best" and shipped: the average when there is one.
        evaluated = ema.model if ema is not None else model
        loader = self._train_loader(train_cache, device)
        steps_per_epoch = max(1, len(loader))
        total_steps = steps_per_epoch * config.epochs
        schedule = WarmupCosine(
            total_steps, int(config.warmup_epochs * steps_per_epoch), config.min_lr_ratio
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
        weights = (
            class_weights(train_cache.labels, len(self.class_names)).to(device)
            if config.class_weighted
            else None
        )
        mixer = BatchMixer(
            len(self.class_names),
            label_smoothing=config.label_smoothing,
            prob=config.mix_prob if config.use_mixup else 0.0,
            mixup_alpha=config.mixup_alpha,
            cutmix_alpha=config.cutmix_alpha,
        )
        select_set = EvalDataset(select_cache, self.preprocess)
        parts = RunParts(
            model, optimizer, scheduler, mixer, self._loader_generator, ema=ema, scaler=scaler
        )

        state: dict[str, Any] = {
            "epoch": 0,
            "best_f1": -1.0,
            "best_loss": math.inf,
            "best_epoch": 0,
            "stale": 0,
            "history": [],
            "planned_epochs": config.epochs,  # fitted to a time budget when there is one
            "epoch_seconds": [],  # wall time of each finished epoch, saves and hooks included
        }
        if resume is not None:
            state = load_checkpoint(resume, parts, config)
            state.setdefault("planned_epochs", config.epochs)
            state.setdefault("epoch_seconds", [])
            log.info("resumed from %s at epoch %d", resume, state["epoch"])
        loop_started = time.perf_counter() - sum(state["epoch_seconds"])

        while state["epoch"] < state["planned_epochs"]:
            epoch = state["epoch"] + 1
            epoch_started = time.perf_counter()
            train_loss = self._train_epoch(
                model,
                loader,
                optimizer,
                scheduler,
                scaler,
                mixer,
                weights,
                device,
                amp,
                epoch,
                state["planned_epochs"],
                ema,
            )
            logits = predict_logits(
                evaluated,
                select_set,
                device,
                config.eval_batch_size,
                amp,
                config.channels_last and device.type != "mps",
            )
            probs = softmax(logits)
            y_true = select_cache.labels.numpy()
            report = classification_report(y_true, probs, self.class_names, threshold=0.5)
            val_loss = float(
                nn.functional.cross_entropy(torch.from_numpy(logits), select_cache.labels).item()
            )
            improved = report["macro_f1"] > state["best_f1"] + 1e-9 or (
                abs(report["macro_f1"] - state["best_f1"]) <= 1e-9 and val_loss < state["best_loss"]
            )
            if improved:
                state.update(
                    best_f1=report["macro_f1"], best_loss=val_loss, best_epoch=epoch, stale=0
                )
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in evaluated.state_dict().items()},
                    str(self.out_dir / BEST_CHECKPOINT),
                )
            else:
                state["stale"] += 1
            epoch_report = EpochReport(
                epoch=epoch,
                epochs=state["planned_epochs"],
                train_loss=train_loss,
                val_loss=val_loss,
                val_acc=report["acc_multiclass"],
                val_macro_f1=report["macro_f1"],
                val_auc=report["roc_auc_binary"],
                lr=float(scheduler.get_last_lr()[0]),
                seconds=time.perf_counter() - epoch_started,
                is_best=improved,
            )
            state["history"].append(epoch_report.as_dict())
            state["epoch"] = epoch
            self._fit_time_budget(state, loop_started, schedule, steps_per_epoch)
            save_checkpoint(checkpoints / "last.pt", parts, state, config)
            self._log_epoch(epoch_report)
            if self.hooks.on_epoch:
                self.hooks.on_epoch(epoch_report)
            if config.early_stop_patience and state["stale"] >= config.early_stop_patience:
                log.info("early stopping: no macro-F1 gain for %d epochs", state["stale"])
                break

        model.load_state_dict(load_file(str(self.out_dir / BEST_CHECKPOINT)))
        calibration = self._calibrate(model, calib_cache, device, amp)
        bundle = self._make_bundle(
            model,
            state,
            calibration,
            fingerprint,
            train_cache,
            seconds=time.perf_counter() - started,
            device=device,
        )
        bundle.save(self.bundle_dir)
        self._write_outputs(state["history"], calibration)
        return TrainResult(
            bundle_dir=self.bundle_dir,
            best_epoch=state["best_epoch"],
            best_macro_f1=state["best_f1"],
            epochs_run=state["epoch"],
            history=state["history"],
            calibration=calibration,
            mix_counts=dict(mixer.counts),
            seconds=time.perf_counter() - started,
            failures=train_cache.failures + select_cache.failures + calib_cache.failures,
        )

    def _fit_time_budget(
        self,
        state: dict[str, Any],
        loop_started: float,
        schedule: WarmupCosine,
        steps_per_epoch: int,
    ) -> None:
        """Account the epoch's wall time and, under a time budget, re-fit the schedule's
        horizon so that the remaining epochs end inside it with the cosine fully annealed.

        The horizon shrinks as soon as the budget needs it. It grows back (up to ``epochs``)
        only by two epochs or more, e.g. after a stretch slowed by another job, because a
        longer horizon raises the current learning rate a little.
        """
        spent = time.perf_counter() - loop_started
        state["epoch_seconds"].append(spent - sum(state["epoch_seconds"]))
        budget_s = self.config.time_budget_minutes * 60.0
        if budget_s <= 0:
            return
        if state["epoch"] == 1 and spent < budget_s:
            return  # one-off start-up costs make the first epoch a pessimistic estimate
        fitted = epochs_within_budget(state["epoch_seconds"], self.config.epochs, budget_s)
        planned = state["planned_epochs"]
        if fitted < planned or fitted >= planned + 2:
            self._say(
                f"time budget {self.config.time_budget_minutes:g} min: {fitted} epochs in all "
                f"instead of {planned} ({spent / 60.0:.1f} min spent after epoch "
                f"{state['epoch']}); the schedule now ends at epoch {fitted}"
            )
            state["planned_epochs"] = fitted
            schedule.total_steps = fitted * steps_per_epoch

    def _init_weights(self, model: nn.Module, source: Path) -> str:
        """Start from earlier weights: a bundle folder (sha256-verified) or a run folder's best
        checkpoint (e.g. a run stopped early). Architecture and class order must match.

        Returns what the weights were (a bundle version or the run folder), for provenance:
        the path alone stops meaning anything once that folder holds another model."""
        if (source / "metadata.json").is_file():
            bundle = load_bundle(source)
            arch, classes, state = (
                bundle.metadata.arch,
                bundle.metadata.class_names,
                bundle.state_dict,
            )
            label = bundle.version
        elif (source / BEST_CHECKPOINT).is_file():
            saved = json.loads((source / "train_config.json").read_text())
            arch, classes = saved["config"]["arch"], saved["class_names"]
            state = load_file(str(source / BEST_CHECKPOINT))
            label = f"{source} (best checkpoint)"
        else:
            raise BrainMRIError(
                f"--init_from {source}: neither a bundle nor a run folder", code="init_mismatch"
            )
        if arch != self.config.arch:
            raise BrainMRIError(
                f"--init_from holds {arch}, not {self.config.arch}", code="init_mismatch"
            )
        if list(classes) != self.class_names:
            raise BrainMRIError("--init_from has a different class order", code="init_mismatch")
        model.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
        log.info("initialised from %s", label)
        return label

    # ------------------------------------------------------------------------------------
    def _build_caches(self) -> tuple[SliceCache, SliceCache, SliceCache]:
        config = self.config
        common: _CacheArgs = {
            "preprocess": self.preprocess,
            "workers": config.decode_workers,
            "progress": self.progress,
            "class_names": self.class_names,
            "sandbox": self.decode_sandbox,
        }
        train = build_cache(
            self.train_samples,
            size=config.cache_size,
            as_uint8=True,
            desc="decode train",
            **common,
        )
        select = build_cache(
            self.select_samples, size=config.img_size, as_uint8=False, desc="decode val", **common
        )
        if self.calib_samples == self.select_samples:
            calib = select
        else:
            calib = build_cache(
                self.calib_samples,
                size=config.img_size,
                as_uint8=False,
                desc="decode calib",
                **common,
            )
        if len(train) == 0 or len(select) == 0:
            raise DatasetError("no readable images in the train or validation split")
        return train, select, calib

    def _train_loader(self, cache: SliceCache, device: torch.device) -> DataLoader:
        augment = self.config.augment_config
        dataset = TrainDataset(
            cache,
            self.preprocess,
            build_train_transform(augment, self.config.img_size),
            build_post_normalize(augment),
        )
        # Kept on the trainer so that a resumed run continues the same shuffling sequence.
        self._loader_generator = torch.Generator().manual_seed(self.config.seed)
        workers = loader_workers(device, self.config.num_workers)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=True,
            drop_last=False,
            num_workers=workers,
            generator=self._loader_generator,
            persistent_workers=workers > 0,
            # Page-locked batches copy to a GPU faster and without blocking the next step.
            pin_memory=device.type == "cuda",
        )

    def _train_epoch(
        self,
        model: nn.Module,
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        mixer: BatchMixer,
        weights: torch.Tensor | None,
        device: torch.device,
        amp: torch.dtype | None,
        epoch: int,
        epochs: int,
        ema: WeightAverage | None = None,
    ) -> float:
        model.train()
        total, count = 0.0, 0
        channels_last = self.config.channels_last and device.type != "mps"
        bar = progress_bar(
            loader,
            desc=f"epoch {epoch}/{epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
        )
        for step, (images, labels) in enumerate(bar):
            if self.hooks.should_stop and self.hooks.should_stop():
                raise TrainingCancelled(f"training cancelled during epoch {epoch}")
            images, targets = mixer(images, labels)
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(images)
            loss = soft_cross_entropy(logits, targets, weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self.config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            total += float(loss.item()) * images.shape[0]
            count += images.shape[0]
            bar.set_postfix(
                loss=f"{total / count:.4f}",
                lr=f"{scheduler.get_last_lr()[0]:.2e}",
                refresh=False,
            )
            if self.hooks.on_batch:
                self.hooks.on_batch(step + 1, len(loader))
        bar.close()
        return total / max(1, count)

    def _calibrate(
        self, model: nn.Module, cache: SliceCache, device: torch.device, amp: torch.dtype | None
    ) -> dict[str, Any]:
        dataset = EvalDataset(cache, self.preprocess)
        logits = predict_logits(
            model,
            dataset,
            device,
            self.config.eval_batch_size,
            amp,
            self.config.channels_last and device.type != "mps",
        )
        y_true = cache.labels.numpy()
        temperature = fit_temperature(logits, y_true)
        raw, calibrated = softmax(logits), softmax(logits, temperature)
        choice = choose_threshold(
            binary_truth(y_true, self.class_names),
            tumor_probabilities(calibrated, self.class_names),
            self.config.threshold_policy,
        )
        report = classification_report(
            y_true, calibrated, self.class_names, threshold=choice.threshold
        )
        return {
            "n": len(y_true),
            "temperature": temperature,
            "ece_before": expected_calibration_error(raw, y_true),
            "ece_after": expected_calibration_error(calibrated, y_true),
            "threshold": choice.threshold,
            "uncapped_threshold": choice.uncapped,
            "threshold_policy": choice.policy,
            "threshold_source": choice.source,
            "sensitivity_at_threshold": choice.sensitivity,
            "specificity_at_threshold": choice.specificity,
            "macro_f1": report["macro_f1"],
            "roc_auc_binary": report["roc_auc_binary"],
        }

    def _make_bundle(
        self,
        model: nn.Module,
        state: dict[str, Any],
        calibration: dict[str, Any],
        fingerprint: str,
        train_cache: SliceCache,
        *,
        seconds: float,
        device: torch.device,
    ) -> ModelBundle:
        config = self.config
        best = next(row for row in state["history"] if row["epoch"] == state["best_epoch"])
        counts = torch.bincount(train_cache.labels, minlength=len(self.class_names)).tolist()
        metadata = BundleMetadata(
            name=self.name,
            arch=config.arch,
            class_names=self.class_names,
            preprocess=self.preprocess,
            temperature=calibration["temperature"],
            default_threshold=calibration["threshold"],
            threshold_source=calibration["threshold_source"],
            tta_views=config.augment_config.consistent_tta_views(),
            data_fingerprint=fingerprint,
            train_counts=dict(zip(self.class_names, counts, strict=True)),
            metrics={
                "best_epoch": state["best_epoch"],
                "val_selection": {
                    "n": len(self.select_samples),
                    "macro_f1": best["val_macro_f1"],
                    "acc": best["val_acc"],
                    "roc_auc_binary": best["val_auc"],
                    "loss": best["val_loss"],
                },
                "calibration": calibration,
                "best_val_acc": best["val_acc"],
            },
            provenance={
                "recipe": config.recipe,
                "config": config.as_dict(),
                "command": self.command,
                "initialised_from": self._initialised_from,
                "epochs_run": state["epoch"],
                "training_seconds": round(seconds, 1),
                "device": str(device),
                "hardware": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
            },
        )
        return ModelBundle.from_model(model.float().cpu(), metadata)

    # ------------------------------------------------------------------------------------
    def _write_config(
        self, fingerprint: str, device: torch.device, amp: torch.dtype | None
    ) -> None:
        payload = {
            "config": self.config.as_dict(),
            "command": self.command,
            "data_fingerprint": fingerprint,
            "device": str(device),
            "autocast": str(amp) if amp else "fp32",
            "n_train": len(self.train_samples),
            "n_val_selection": len(self.select_samples),
            "n_val_calibration": len(self.calib_samples),
            "class_names": self.class_names,
        }
        (self.out_dir / "train_config.json").write_text(json.dumps(payload, indent=2) + "\n")

    def _log_epoch(self, report: EpochReport) -> None:
        auc = f"{report.val_auc:.4f}" if report.val_auc is not None else "n/a"
        message = (
            f"epoch {report.epoch}/{report.epochs} loss {report.train_loss:.4f} "
            f"val_loss {report.val_loss:.4f} val_acc {report.val_acc:.4f} "
            f"val_macro_f1 {report.val_macro_f1:.4f} val_auc {auc} "
            f"({report.seconds:.0f}s){' *best*' if report.is_best else ''}"
        )
        self._say(message)

    def _say(self, message: str) -> None:
        """A line for the person watching (above the progress bar) and for the log."""
        if self.progress:
            tqdm.write(message)
        log.info(message)

    def _write_outputs(self, history: list[dict[str, Any]], calibration: dict[str, Any]) -> None:
        from brainmri.evaluation.plots import plot_training_curves

        (self.out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        if history:
            with (self.out_dir / "history.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(history[0]))
                writer.writeheader()
                writer.writerows(history)
            plot_training_curves(history, self.out_dir / "training_curves.png")
        (self.out_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")

"""Training on generated phantoms: learning, best-checkpoint selection, resume, mixing, eval."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brainmri.cli.main import build_parser, main
from brainmri.data.manifest import read_manifest
from brainmri.errors import BrainMRIError, ConfigurationError
from brainmri.evaluation.metrics import classification_report
from brainmri.evaluation.report import PLOT_FILES
from brainmri.inference.engine import InferenceEngine
from brainmri.models.bundle import load_bundle
from brainmri.preprocess import PreprocessConfig, square_resize
from brainmri.training import trainer as trainer_module
from brainmri.training.augment import (
    LIGHT,
    STRONG,
    AugmentConfig,
    RandomForegroundInversion,
    RandomHeadCrop,
    build_train_transform,
)
from brainmri.training.ema import WeightAverage
from brainmri.training.mixing import BatchMixer
from brainmri.training.recipes import make_config
from brainmri.training.trainer import (
    Trainer,
    TrainHooks,
    TrainingCancelled,
    WarmupCosine,
    epochs_within_budget,
)

REPORT_KEYS = {
    "n",
    "acc_multiclass",
    "macro_f1",
    "per_class",
    "cm_multiclass",
    "threshold",
    "acc_binary",
    "sensitivity",
    "specificity",
    "cm_binary",
    "roc_auc_binary",
    "ap_binary",
    "best_threshold_by_YoudenJ",
    "best_J",
    "ece",
    "model_version",
}


@pytest.fixture(scope="module")
def split(phantom_split: Path) -> Path:
    return phantom_split


@pytest.fixture(scope="module")
def trained(split: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("run") / "run"
    config = make_config(
        "simple",
        img_size=80,
        epochs=8,
        batch_size=16,
        lr=2e-3,
        early_stop_patience=0,
        seed=1,
        precision="fp32",  # the fine-tune test compares against these figures in fp32
    )
    result = Trainer(
        config,
        read_manifest(split / "train.csv"),
        read_manifest(split / "val.csv"),
        out,
        progress=False,
    ).run()
    return out, result


def test_model_learns_well_above_chance(
    trained: tuple[Path, object], split: Path, tmp_path: Path
) -> None:
    out, result = trained
    assert result.best_macro_f1 > 0.6  # chance is 0.25 for four balanced classes
    assert (
        main(
            [
                "eval",
                "--data",
                str(split / "test.csv"),
                "--model",
                str(out / "model"),
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "eval" / "eval_report.json").read_text())
    assert report["acc_multiclass"] > 0.6


def test_best_checkpoint_is_the_one_kept(trained: tuple[Path, object], split: Path) -> None:
    out, result = trained
    history = result.history
    # Highest validation macro-F1; ties go to the lower validation loss.
    best = max(history, key=lambda row: (round(row["val_macro_f1"], 9), -row["val_loss"]))
    assert result.best_epoch == best["epoch"]
    bundle = load_bundle(out / "model")
    best_weights = load_file(str(out / "checkpoints" / "best.safetensors"))
    for key, value in bundle.state_dict.items():
        assert torch.equal(
            value, best_weights[key].float() if value.is_floating_point() else best_weights[key]
        )
    # Scoring the kept bundle on the selection split reproduces the best epoch's macro-F1
    # (temperature scaling cannot change an arg-max).
    trainer = Trainer(
        make_config("simple", img_size=80, seed=1),  # the run's seed picks the same halves
        read_manifest(split / "train.csv"),
        read_manifest(split / "val.csv"),
        out / "unused",
        progress=False,
    )
    engine = InferenceEngine(bundle, device="cpu")
    probs = engine.predict_sources([s.path for s in trainer.select_samples])
    y_true = np.array(
        [bundle.metadata.class_names.index(s.class_name) for s in trainer.select_samples]
    )
    matrix = np.array([[p.class_probs[c] for c in bundle.metadata.class_names] for p in probs])
    report = classification_report(y_true, matrix, bundle.metadata.class_names, threshold=0.5)
    assert report["macro_f1"] == pytest.approx(best["val_macro_f1"], abs=1e-9)
    assert bundle.metadata.metrics["best_epoch"] == best["epoch"]


def test_bundle_carries_calibration_and_provenance(trained: tuple[Path, object]) -> None:
    out, result = trained
    metadata = load_bundle(out / "model").metadata
    calibration = result.calibration
    assert metadata.temperature == pytest.approx(calibration["temperature"])
    assert metadata.default_threshold == calibration["threshold"]
    assert calibration["threshold"] == min(calibration["uncapped_threshold"], 0.5)
    assert "calibration split" in metadata.threshold_source
    assert calibration["ece_after"] <= calibration["ece_before"] + 0.02
    assert metadata.data_fingerprint
    assert len(metadata.data_fingerprint) == 64
    assert metadata.provenance["recipe"] == "simple"
    assert set(metadata.train_counts) == set(metadata.class_names)
    for name in (
        "history.csv",
        "history.json",
        "training_curves.png",
        "calibration.json",
        "train_config.json",
    ):
        assert (out / name).exists(), name


def test_eval_writes_every_artifact_with_the_right_keys(
    trained: tuple[Path, object], split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained
    assert (
        main(
            [
                "eval",
                "--data",
                str(split / "test.csv"),
                "--model",
                str(out / "model"),
                "--out",
                str(tmp_path / "e"),
                "--tta",
                "--threshold",
                "0.3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "suggested threshold (Youden J)" in printed
    report = json.loads((tmp_path / "e" / "eval_report.json").read_text())
    assert set(report) >= REPORT_KEYS
    assert report["threshold"] == 0.3
    assert report["tta"] is True
    assert set(report["per_class"]["glioma"]) >= {"precision", "recall", "f1"}
    for name in (*PLOT_FILES, "predictions.csv", "eval_report.json"):
        assert (tmp_path / "e" / name).stat().st_size > 0, name
    header = (tmp_path / "e" / "predictions.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["path", "true_class", "pred_class", "correct"]
    assert {"p_no_tumor", "p_glioma", "p_meningioma", "p_pituitary", "tumor_prob"} <= set(header)


def test_eval_bootstrap_resamples_the_manifest_groups(
    trained: tuple[Path, object], split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained
    n_groups = len({sample.group_id for sample in read_manifest(split / "test.csv")})
    reports = {}
    for unit in ("group", "image"):
        args = ["eval", "--data", str(split / "test.csv"), "--model", str(out / "model")]
        args += ["--out", str(tmp_path / unit), "--bootstrap", "100", "--bootstrap-by", unit]
        assert main(args) == 0
        reports[unit] = json.loads((tmp_path / unit / "eval_report.json").read_text())
    printed = capsys.readouterr().out
    assert "macro-F1 95% interval" in printed
    by_group = reports["group"]["confidence_intervals"]
    assert by_group["unit"] == "group"
    assert f"over {n_groups} near-duplicate groups" in by_group["method"]
    assert reports["image"]["confidence_intervals"]["unit"] == "image"
    for unit, report in reports.items():
        low, high = report["confidence_intervals"]["acc_multiclass"]
        assert low <= report["acc_multiclass"] <= high, unit


def test_compare_two_eval_runs_of_the_same_images(
    trained: tuple[Path, object], split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`brainmri compare` on two real eval folders (the model without and with TTA): the
    figures it pairs are the ones each report holds, resampled by near-duplicate group."""
    out, _ = trained
    manifest = read_manifest(split / "test.csv")
    for name, extra in (("plain", []), ("tta", ["--tta"]), ("other", [])):
        data = split / ("val.csv" if name == "other" else "test.csv")
        args = ["eval", "--data", str(data), "--model", str(out / "model")]
        assert main([*args, "--out", str(tmp_path / name), *extra]) == 0
    capsys.readouterr()
    argv = ["compare", str(tmp_path / "plain"), str(tmp_path / "tta"), "--bootstrap", "200"]
    assert main([*argv, "--out", str(tmp_path / "compare.json")]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "P(B>A)" in printed
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["n"] == len(manifest)
    assert result["bootstrap"]["unit"] == "group"
    assert result["bootstrap"]["units"] == len({s.group_id for s in manifest})
    for side, folder in (("a", "plain"), ("b", "tta")):
        report = json.loads((tmp_path / folder / "eval_report.json").read_text())
        assert result[side]["model_version"] == report["model_version"]
        for metric in ("macro_f1", "roc_auc_binary", "sensitivity"):
            # predictions.csv keeps 6 decimals, so an AUC tie can move in the last digits.
            assert result["metrics"][metric][side] == pytest.approx(report[metric], abs=1e-4)
    # Different images (validation against test) cannot be paired.
    assert main(["compare", str(tmp_path / "plain"), str(tmp_path / "other")]) == 2
    assert "runs_not_comparable" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "plain"), str(tmp_path)]) == 2
    assert "not a `brainmri eval` output" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses too few resamples for an interval
        main(["compare", str(tmp_path / "plain"), str(tmp_path / "tta"), "--bootstrap", "50"])
    assert "at least 100 resamples" in capsys.readouterr().err


def _small_config(**overrides: object):
    values = {
        "arch": "resnet10t",
        "img_size": 48,
        "epochs": 3,
        "batch_size": 16,
        "lr": 2e-3,
        "early_stop_patience": 0,
        "seed": 5,
        "mix_prob": 0.8,
    }
    values.update(overrides)
    return make_config("strong", **values)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["raw-weights", "weight-average"])
def test_resume_continues_exactly(split: Path, tmp_path: Path, ema_decay: float) -> None:
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    config = _small_config(ema_decay=ema_decay)
    straight = Trainer(config, train, val, tmp_path / "straight", progress=False).run()

    epochs_seen: list[int] = []

    def stop_in_third_epoch() -> bool:
        return len(epochs_seen) >= 2

    hooks = TrainHooks(
        on_epoch=lambda report: epochs_seen.append(report.epoch), should_stop=stop_in_third_epoch
    )
    with pytest.raises(TrainingCancelled):
        Trainer(config, train, val, tmp_path / "resumed", progress=False, hooks=hooks).run()
    assert not (tmp_path / "resumed" / "model").exists()  # nothing half-written
    saved = torch.load(
        tmp_path / "resumed" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True
    )
    # The loss scale (fp16 on CUDA; an empty state when the scaler is off, as here) and the
    # CUDA generators travel with the checkpoint.
    assert saved["scaler"] == torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert "cuda_rng" in saved
    resumed = Trainer(config, train, val, tmp_path / "resumed", progress=False).run(
        resume=tmp_path / "resumed" / "checkpoints" / "last.pt"
    )
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_macro_f1"] == pytest.approx(b["val_macro_f1"], abs=1e-9)


def test_a_head_cropped_run_says_so_in_its_bundle_and_resumes_only_cropped(
    split: Path, tmp_path: Path
) -> None:
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    config = _small_config(epochs=1, crop="head")
    Trainer(config, train, val, tmp_path / "run", progress=False).run()
    bundle = load_bundle(tmp_path / "run" / "model")
    assert bundle.metadata.preprocess.crop == "head"  # so every inference path crops too
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    whole = replace(config, crop="none", epochs=2)
    with pytest.raises(BrainMRIError, match="crop='head'") as refused:
        Trainer(whole, train, val, tmp_path / "again", progress=False).run(resume=last)
    assert refused.value.code == "resume_mismatch"


def test_training_log_gets_no_line_per_batch(
    split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With stderr going to a file (a worker's or trainer's log, CI), the epoch bar must not
    redraw on every batch: its per-batch loss postfix used to force one, so a GPU run's log grew
    by a line per batch (about 700 KB in seven minutes)."""
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    config = _small_config(epochs=2, batch_size=4)
    Trainer(config, train, val, tmp_path / "logged", progress=True).run()
    captured = capsys.readouterr()
    err = captured.err
    batches = -(-len(train) // 4)
    assert batches >= 10
    for epoch in (1, 2):
        draws = err.count(f"epoch {epoch}/2:")
        assert 1 <= draws <= 2, f"epoch {epoch}: {draws} redraws for {batches} batches"
    assert "val_macro_f1" in captured.out  # the per-epoch summary line is still written


def test_weight_average_is_what_is_validated_and_kept(split: Path, tmp_path: Path) -> None:
    """With --ema_decay the epoch's validation scores the averaged weights, and the best
    checkpoint (hence the bundle) holds them, not the raw weights of that step."""
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    out = tmp_path / "ema"
    checks: list[int] = []

    def inspect(report) -> None:  # runs after the epoch's checkpoints are written
        last = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        averaged, raw = last["ema"]["model"], last["model"]
        assert last["ema"]["updates"] == report.epoch * -(-len(train) // 16)  # one per step
        weight = "fc.weight"
        assert not torch.equal(averaged[weight], raw[weight])
        if report.is_best:
            best = load_file(str(out / "checkpoints" / "best.safetensors"))
            assert all(torch.equal(best[key], averaged[key]) for key in averaged)
            checks.append(report.epoch)

    result = Trainer(
        _small_config(ema_decay=0.9, use_mixup=False, batch_size=16),
        train,
        val,
        out,
        progress=False,
        hooks=TrainHooks(on_epoch=inspect),
    ).run()
    assert checks and checks[-1] == result.best_epoch
    bundle = load_bundle(result.bundle_dir)
    assert bundle.metadata.provenance["config"]["ema_decay"] == 0.9
    kept = load_file(str(out / "checkpoints" / "best.safetensors"))
    for key, value in bundle.state_dict.items():
        assert torch.equal(value, kept[key].float() if value.is_floating_point() else kept[key])


def test_weight_average_update_rule() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.99)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(8, 3))  # moves the BatchNorm statistics and its integer counter
    average.update(model)
    first = 1.0 / 10.0  # warm-up: min(0.99, (1 + 0) / (10 + 0))
    expected = first * start + (1 - first) * model[0].weight.detach()
    assert torch.allclose(average.model[0].weight, expected)
    assert average.model[1].num_batches_tracked.item() == 1  # integer buffers are copied
    assert not average.model[0].weight.requires_grad
    for _ in range(2000):
        average.update(model)
    assert average.current_decay() == 0.99  # the warm-up has ended
    assert torch.allclose(average.model[0].weight, model[0].weight, atol=1e-6)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_mixup_and_cutmix_both_run_and_odd_batches_mix(split: Path, tmp_path: Path) -> None:
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    batch_size = next(size for size in range(15, 5, -1) if len(train) % size % 2 == 1)
    result = Trainer(
        _small_config(epochs=2, batch_size=batch_size), train, val, tmp_path / "mix", progress=False
    ).run()
    assert result.mix_counts["mixup"] > 0
    assert result.mix_counts["cutmix"] > 0

    torch.manual_seed(0)
    mixer = BatchMixer(4, label_smoothing=0.1, prob=1.0, switch_prob=1.0)  # always CutMix
    images, labels = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0])
    mixed, targets = mixer(images, labels)
    assert mixed.shape == images.shape
    assert targets.shape == (5, 4)
    assert torch.allclose(targets.sum(1), torch.ones(5))
    single, single_targets = mixer(images[:1], labels[:1])
    assert torch.equal(single, images[:1])
    assert single_targets.argmax(1).item() == 0


def test_refuses_to_overwrite_the_model_in_use(split: Path, tmp_path: Path) -> None:
    in_use = tmp_path / "served" / "model"
    with pytest.raises(BrainMRIError) as info:
        Trainer(
            _small_config(),
            read_manifest(split / "train.csv"),
            read_manifest(split / "val.csv"),
            tmp_path / "served",
            progress=False,
            protected_dirs=[in_use],
        )
    assert info.value.code == "protected_model_dir"


def test_original_flags_in_both_spellings() -> None:
    parser = build_parser()
    original = [
        "train",
        "--train_csv",
        "t.csv",
        "--val_csv",
        "v.csv",
        "--out_dir",
        "o",
        "--arch",
        "resnet34",
        "--epochs",
        "12",
        "--batch_size",
        "12",
        "--img_size",
        "224",
        "--lr",
        "5e-4",
        "--weight_decay",
        "0.05",
        "--label_smoothing",
        "0.1",
        "--use_mixup",
        "false",
        "--num_workers",
        "0",
    ]
    dashed = [flag.replace("_", "-") if flag.startswith("--") else flag for flag in original]
    for argv in (original, dashed):
        args = parser.parse_args(argv)
        assert (args.arch, args.epochs, args.batch_size, args.img_size) == ("resnet34", 12, 12, 224)
        assert (args.lr, args.weight_decay, args.label_smoothing) == (5e-4, 0.05, 0.1)
        assert args.use_mixup is False
        assert args.num_workers == 0


def test_cli_trains_with_a_weight_average(
    split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI end to end, with the one flag the original scripts did not have in dashed form."""
    out = tmp_path / "cli-run"
    argv = ["train", "--train-csv", str(split / "train.csv"), "--val-csv", str(split / "val.csv")]
    argv += ["--out-dir", str(out), "--arch", "resnet10t", "--img-size", "48", "--epochs", "1"]
    assert main([*argv, "--batch-size", "16", "--ema-decay", "0.95"]) == 0
    captured = capsys.readouterr()
    assert f"model bundle: {out / 'model'}" in captured.out
    # Told on stderr exactly when the fitted temperature made ECE worse on its own images.
    calibration = json.loads((out / "calibration.json").read_text())
    worse = calibration["ece_after"] > calibration["ece_before"]
    assert ("temperature scaling raised ECE" in captured.err) == worse
    provenance = load_bundle(out / "model").metadata.provenance
    assert provenance["config"]["ema_decay"] == 0.95
    assert "--ema-decay 0.95" in provenance["command"]


def test_foreground_inversion_inverts_the_head_and_keeps_the_air_dark() -> None:
    image = torch.zeros(1, 64, 64)
    image[:, 16:48, 16:48] = 0.3  # the head
    image[:, 30:34, 30:34] = 0.9  # a bright lesion inside it
    inverted = RandomForegroundInversion(1.0)(image)
    assert float(inverted[:, :8, :8].abs().max()) == 0.0
    # no bright rim: the air right next to the head (1-4 px away) stays dark too
    assert float(inverted[:, 12:16, 12:52].max()) == 0.0
    assert float(inverted[:, 12:52, 48:52].max()) == 0.0
    dark_hole = image.clone()
    dark_hole[:, 24:28, 24:28] = 0.0  # e.g. CSF on T1, darker than the head level
    assert float(RandomForegroundInversion(1.0)(dark_hole)[0, 25, 25]) == 1.0
    assert torch.allclose(inverted[:, 20:44, 20:44], 1.0 - image[:, 20:44, 20:44])
    assert float(inverted[0, 31, 31]) == pytest.approx(0.1)
    assert torch.equal(RandomForegroundInversion(0.0)(image), image)


def test_invert_prob_reaches_the_augmentation_and_is_checked(
    split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert make_config("simple").augment_config == LIGHT  # off unless asked for
    assert make_config("strong", invert_prob=0.3).augment_config == replace(STRONG, invert_p=0.3)
    transform = build_train_transform(make_config("simple", invert_prob=1.0).augment_config, 48)
    assert any(isinstance(step, RandomForegroundInversion) for step in transform.transforms)
    with pytest.raises(ConfigurationError, match="invert_prob must be between 0 and 1"):
        make_config("simple", invert_prob=1.5)

    out = tmp_path / "cli-invert"
    argv = ["train", "--train-csv", str(split / "train.csv"), "--val-csv", str(split / "val.csv")]
    argv += ["--out-dir", str(out), "--arch", "resnet10t", "--img-size", "48", "--epochs", "1"]
    assert main([*argv, "--batch-size", "16", "--invert-prob", "0.5"]) == 0
    capsys.readouterr()
    assert load_bundle(out / "model").metadata.provenance["config"]["invert_prob"] == 0.5


def test_head_crop_augmentation_frames_the_head_as_inference_with_crop_head_does() -> None:
    image = torch.zeros(1, 64, 64)
    image[:, 20:44, 16:48] = 0.5  # a 24 x 32 head with a wide band of air around it
    image[:, 30:34, 30:34] = 0.9
    cropped = RandomHeadCrop(1.0)(image)
    assert cropped.shape == image.shape
    head_rows = torch.nonzero(cropped[0].amax(dim=1) > 0.25).flatten()
    head_cols = torch.nonzero(cropped[0].amax(dim=0) > 0.25).flatten()
    # the head's longer side now spans the frame but for the box's margin (32 of 36 px) ...
    assert int(head_cols[-1] - head_cols[0]) + 1 >= 56
    # ... and it keeps its shape: letterboxed, not stretched (24 of 36, centred)
    assert 40 <= int(head_rows[-1] - head_rows[0]) + 1 <= 44
    assert abs(int(head_rows[0]) - (63 - int(head_rows[-1]))) <= 1
    # the same geometry as PreprocessConfig(crop="head") gives at inference
    at_inference = square_resize(image[0], 64, PreprocessConfig(img_size=64, crop="head"))
    assert float((cropped - at_inference).abs().mean()) < 0.02
    assert torch.equal(RandomHeadCrop(0.0)(image), image)
    edge_to_edge = torch.full((1, 64, 64), 0.5)
    assert torch.equal(RandomHeadCrop(1.0)(edge_to_edge), edge_to_edge)


def test_head_crop_prob_reaches_the_augmentation_and_is_checked(
    split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert make_config("simple").augment_config.head_crop_p == 0.0
    config = make_config("strong", head_crop_prob=0.3)
    assert config.augment_config == replace(STRONG, head_crop_p=0.3)
    transform = build_train_transform(config.augment_config, 48)
    assert isinstance(transform.transforms[0], RandomHeadCrop)  # before the random crop
    assert not any(
        isinstance(step, RandomHeadCrop)
        for step in build_train_transform(make_config("simple").augment_config, 48).transforms
    )
    with pytest.raises(ConfigurationError, match="head_crop_prob must be between 0 and 1"):
        make_config("simple", head_crop_prob=-0.1)
    with pytest.raises(ConfigurationError, match="head_crop_prob needs crop 'none'"):
        make_config("simple", head_crop_prob=0.5, crop="head")

    out = tmp_path / "cli-head-crop"
    argv = ["train", "--train-csv", str(split / "train.csv"), "--val-csv", str(split / "val.csv")]
    argv += ["--out-dir", str(out), "--arch", "resnet10t", "--img-size", "48", "--epochs", "1"]
    assert main([*argv, "--batch-size", "16", "--head-crop-prob", "0.5"]) == 0
    capsys.readouterr()
    metadata = load_bundle(out / "model").metadata
    assert metadata.provenance["config"]["head_crop_prob"] == 0.5
    assert metadata.preprocess.crop == "none"  # inference still sees the whole slice


def test_fine_tune_from_a_bundle(trained: tuple[Path, object], split: Path, tmp_path: Path) -> None:
    out, result = trained
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    config = make_config(
        "simple",
        img_size=80,
        epochs=1,
        batch_size=16,
        lr=1e-7,
        warmup_epochs=0,
        early_stop_patience=0,
        init_from=str(out / "model"),
        precision="fp32",  # bf16 noise in the BN statistics of one epoch would blur the check
    )
    tuned = Trainer(config, train, val, tmp_path / "tuned", progress=False).run()
    # Started from the trained weights: far above chance after one near-zero-LR epoch.
    assert tuned.best_macro_f1 > 0.6
    assert tuned.best_macro_f1 == pytest.approx(result.best_macro_f1, abs=0.15)
    # Provenance names the starting model itself, not just a path that may later hold another.
    started_from = load_bundle(out / "model").version
    assert load_bundle(tuned.bundle_dir).metadata.provenance["initialised_from"] == started_from
    wrong = make_config(
        "simple", arch="resnet34", img_size=80, epochs=1, init_from=str(out / "model")
    )
    with pytest.raises(BrainMRIError) as info:
        Trainer(wrong, train, val, tmp_path / "wrong", progress=False).run()
    assert info.value.code == "init_mismatch"


def _bright_area(image: torch.Tensor) -> float:
    return float((image > 0.5).float().sum())


@pytest.mark.parametrize(("scale", "expected_ratio"), [((1.0, 1.0), 1.0), ((0.64, 0.64), 1.5625)])
def test_training_crops_show_the_slice_at_the_inference_scale(
    scale: tuple[float, float], expected_ratio: float
) -> None:
    """A crop of area 1.0 from the higher-resolution training cache shows the slice at exactly
    the size inference sees it (no silent train/test scale shift); 0.64 zooms in by 1/0.8."""
    size = 96
    cache_size = make_config("simple", img_size=size).cache_size  # what the trainer decodes to
    yy, xx = np.mgrid[0:300, 0:240]
    disk = (((yy - 150) ** 2 + (xx - 120) ** 2) < 60**2).astype(np.float32)  # non-square slice
    preprocess = PreprocessConfig(img_size=size)
    inference_area = _bright_area(square_resize(disk, size, preprocess))
    cached = square_resize(disk, cache_size, preprocess)
    geometry_only = AugmentConfig(
        scale=scale, ratio=(1.0, 1.0), hflip=0.0, rotate_degrees=0.0, brightness=0.0, contrast=0.0
    )
    transform = build_train_transform(geometry_only, size)
    torch.manual_seed(0)
    for _ in range(5):
        out = transform(cached)
        assert out.shape == (1, size, size)
        assert _bright_area(out) == pytest.approx(inference_area * expected_ratio, rel=0.04)


def test_epochs_within_budget_arithmetic() -> None:
    # 10 s in 2 epochs, the first 6 s (start-up): 4 s each from now on, padded 5%.
    assert epochs_within_budget([6.0, 4.0], 100, 60.0) == 2 + int(50 // 4.2)
    # Only one epoch seen: it is the estimate, start-up and all.
    assert epochs_within_budget([6.0], 100, 60.0) == 1 + int(54 // 6.3)
    assert epochs_within_budget([6.0, 4.0], 5, 600.0) == 5  # never more than allowed
    assert epochs_within_budget([10.0] * 7, 100, 60.0) == 7  # over budget: stop now
    assert epochs_within_budget([0.0], 9, 60.0) == 9  # an instant epoch fits them all
    assert epochs_within_budget([], 9, 60.0) == 9
    # One epoch slowed to 40 s by another job: the time is spent, the estimate stays 4 s.
    assert epochs_within_budget([6.0, 4.0, 40.0, 4.0], 100, 120.0) == 4 + int(66 // 4.2)


def test_warmup_cosine_can_be_shortened_and_ends_at_its_floor() -> None:
    schedule = WarmupCosine(total_steps=100, warmup_steps=10, min_ratio=0.01)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(100) == pytest.approx(0.01)
    before = schedule(40)
    schedule.total_steps = 50
    assert schedule(40) < before
    assert schedule(50) == pytest.approx(0.01)


class FakeClock:
    """The trainer's ``time.perf_counter``, plus whatever a test says has passed."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def perf_counter(self) -> float:
        return time.perf_counter() + self.offset


@pytest.fixture
def trainer_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    return clock


def test_time_budget_shortens_the_schedule_so_it_still_anneals(
    split: Path, tmp_path: Path, trainer_clock: FakeClock
) -> None:
    """With --time_budget_minutes the run stops well before EPOCHS, at the end of a full
    cosine (learning rate at its floor), and the shortened horizon is in the resume state."""
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")
    out = tmp_path / "budget"
    # The trainer's clock gains a minute per epoch: a 5-minute budget holds 5 epochs, not 40,
    # whatever the speed of the machine running the test.
    hooks = TrainHooks(on_epoch=lambda report: trainer_clock.advance(60.0))
    config = _small_config(epochs=40, use_mixup=False, warmup_epochs=0.0, time_budget_minutes=5)
    result = Trainer(config, train, val, out, progress=False, hooks=hooks).run()
    assert result.epochs_run == 5
    assert [row["epoch"] for row in result.history] == list(range(1, result.epochs_run + 1))
    assert result.history[-1]["epochs"] == result.epochs_run  # reports show the fitted horizon
    assert result.history[-1]["lr"] == pytest.approx(config.lr * config.min_lr_ratio)
    last = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    steps_per_epoch = -(-len(train) // config.batch_size)
    assert last["state"]["planned_epochs"] == result.epochs_run
    assert last["scheduler"]["lr_lambdas"][0]["total_steps"] == result.epochs_run * steps_per_epoch
    bundle = load_bundle(result.bundle_dir)
    assert bundle.metadata.provenance["epochs_run"] == result.epochs_run
    assert bundle.metadata.provenance["config"]["time_budget_minutes"] == 5


def test_time_budget_horizon_grows_back_after_a_slow_start(
    split: Path, tmp_path: Path, trainer_clock: FakeClock
) -> None:
    """Two slow epochs (another job on the machine) first shorten the schedule; once epochs
    are fast again the horizon grows back, and the run still ends annealed inside budget."""
    train, val = read_manifest(split / "train.csv"), read_manifest(split / "val.csv")

    def clock(report) -> None:  # lands in the next epoch's wall time
        trainer_clock.advance(120.0 if report.epoch <= 2 else 30.0)

    config = _small_config(epochs=40, use_mixup=False, warmup_epochs=0.0, time_budget_minutes=10)
    result = Trainer(
        config, train, val, tmp_path / "grow", progress=False, hooks=TrainHooks(on_epoch=clock)
    ).run()
    horizons = [row["epochs"] for row in result.history]
    assert horizons[2] < 40  # shortened after the slow epochs (a report shows the horizon
    # its epoch ran under)
    assert max(horizons[2:]) > min(horizons[2:]) and horizons[-1] == result.epochs_run  # grew
    assert 8 <= result.epochs_run < 40
    assert result.history[-1]["lr"] == pytest.approx(config.lr * config.min_lr_ratio)
    last = torch.load(
        tmp_path / "grow" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True
    )
    assert sum(last["state"]["epoch_seconds"]) <= 600 + 30


def test_class_weighted_soft_loss_is_minimal_at_the_target() -> None:
    """With class weights, a smoothed or mixed target must still be the loss's minimum: the
    gradient at p == target is zero. Weighting each target entry moved the minimum towards the
    up-weighted class (a 0.7 glioma / 0.3 no-tumour mix was pushed to P(no_tumor) 0.68)."""
    from brainmri.training.mixing import soft_cross_entropy

    weights = torch.tensor([2.5, 0.5, 0.5, 0.5])  # no_tumor rare, so weighted up
    for target in ([0.3, 0.7, 0.0, 0.0], [0.025, 0.925, 0.025, 0.025]):
        targets = torch.tensor([target])
        logits = torch.log(targets.clamp_min(1e-6)).requires_grad_(True)
        soft_cross_entropy(logits, targets, weights).backward()
        assert logits.grad is not None
        assert logits.grad.abs().max() < 1e-4, target
    # Hard labels: the weighted mean that F.cross_entropy(weight=...) computes.
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    assert soft_cross_entropy(logits, one_hot, weights) == pytest.approx(float(expected), 1e-5)

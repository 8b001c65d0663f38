"""Training-curve plot: readable when early epochs spike, and shows which epoch was kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from brainmri.evaluation.plots import kept_epoch, plot_training_curves, training_curves_figure


def _history(val_losses: list[float], best_epochs: set[int]) -> list[dict[str, Any]]:
    return [
        {
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "val_loss": loss,
            "val_acc": 0.5 + epoch / 20,
            "val_macro_f1": 0.4 + epoch / 20,
            "is_best": epoch in best_epochs,
        }
        for epoch, loss in enumerate(val_losses, start=1)
    ]


def test_kept_epoch_is_the_last_new_best() -> None:
    assert kept_epoch(_history([0.9, 0.5, 0.6, 0.4, 0.45], {1, 2, 4})) == 4
    assert kept_epoch(_history([0.9, 0.5], set())) is None


def test_a_loss_spike_switches_the_loss_axis_to_log_scale() -> None:
    spiky = training_curves_figure(_history([19.7, 2.2, 0.7, 0.4, 0.3], {1, 3, 5}))
    smooth = training_curves_figure(_history([0.9, 0.7, 0.6, 0.5, 0.45], {1, 2, 3, 4, 5}))
    assert spiky.axes[0].get_yscale() == "log"
    assert smooth.axes[0].get_yscale() == "linear"


def test_both_panels_mark_the_kept_epoch(tmp_path: Path) -> None:
    history = _history([0.9, 0.5, 0.6, 0.4, 0.45], {1, 2, 4})
    figure = training_curves_figure(history)
    for ax in figure.axes:
        marks = [line for line in ax.get_lines() if line.get_label() == "kept: epoch 4"]
        assert len(marks) == 1
        assert list(marks[0].get_xdata()) == [4, 4]
    path = plot_training_curves(history, tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 800

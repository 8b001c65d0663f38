"""Evaluation and training plots.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot global state), so
plotting is safe inside worker threads and never needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from brainmri import DISCLAIMER

_FOOTER = DISCLAIMER


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` with the research-use footer every plot carries."""
    fig.text(0.5, -0.02, _FOOTER, ha="center", va="top", fontsize=6, color="0.4")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path
) -> Path:
    cm = np.asarray(matrix, dtype=float)
    fig = Figure(figsize=(1.4 * len(labels) + 2.5, 1.2 * len(labels) + 2))
    ax = fig.subplots()
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{share[i, j]:.1%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_roc_binary(
    y_bin: np.ndarray, tumor_prob: np.ndarray, auc: float | None, threshold: float, path: Path
) -> Path:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    if auc is not None:
        fpr, tpr, thresholds = roc_curve(y_bin, tumor_prob)
        ax.plot(fpr, tpr, lw=2, label=f"tumor vs no tumor (AUC = {auc:.4f})")
        point = np.argmin(np.abs(thresholds - threshold))
        ax.scatter(
            [fpr[point]],
            [tpr[point]],
            color="crimson",
            zorder=3,
            label=f"operating point (threshold {threshold:.2f})",
        )
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", label="chance")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC - tumor vs no tumor")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_pr_binary(y_bin: np.ndarray, tumor_prob: np.ndarray, ap: float | None, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    if ap is not None:
        precision, recall, _ = precision_recall_curve(y_bin, tumor_prob)
        ax.plot(recall, precision, lw=2, label=f"AP = {ap:.4f}")
        ax.axhline(float(np.mean(y_bin)), ls="--", color="0.6", label="prevalence")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall - tumor vs no tumor")
    ax.legend(loc="lower left")
    return save_figure(fig, path)


def plot_threshold_sweep(
    sweep: Sequence[dict[str, float]], threshold: float, youden: float | None, path: Path
) -> Path:
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    t = [row["threshold"] for row in sweep]
    for key, label in (
        ("sensitivity", "sensitivity"),
        ("specificity", "specificity"),
        ("acc_binary", "binary accuracy"),
        ("youden_j", "Youden J"),
    ):
        ax.plot(t, [row[key] for row in sweep], label=label, lw=1.8)
    ax.axvline(threshold, color="crimson", ls="--", label=f"threshold used ({threshold:.2f})")
    if youden is not None:
        ax.axvline(youden, color="0.3", ls=":", label=f"best Youden J ({youden:.2f})")
    ax.set_xlabel("threshold on tumor_prob")
    ax.set_ylabel("value")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Threshold sweep (101 thresholds)")
    ax.legend(loc="best", fontsize=8, ncol=2, framealpha=0.85)
    return save_figure(fig, path)


def plot_reliability(bins: Sequence[dict[str, float]], ece: float, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    centres = [(row["low"] + row["high"]) / 2 for row in bins]
    accuracy = [row["accuracy"] if row["count"] else 0.0 for row in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    ax.bar(centres, accuracy, width=width * 0.9, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", label="perfect calibration")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE = {ece:.4f})")
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_roc_per_class(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    aucs: dict[str, float | None],
    path: Path,
) -> Path:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for index, name in enumerate(class_names):
        if aucs.get(name) is None:
            continue
        fpr, tpr, _ = roc_curve((y_true == index).astype(int), probs[:, index])
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC = {aucs[name]:.4f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC per class (one vs rest)")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def kept_epoch(history: Sequence[dict[str, Any]]) -> int | None:
    """The epoch whose weights the trainer kept: the last one that set a new best."""
    best = [row["epoch"] for row in history if row.get("is_best")]
    return best[-1] if best else None


def training_curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """Loss and validation scores per epoch, with the kept epoch marked.

    From-scratch runs often have a few early epochs whose validation loss is 10-100x the rest
    (batch-norm statistics still moving); on a linear axis those spikes flatten every later
    epoch to a line, so the loss axis turns logarithmic when its values span more than 20x.
    """
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    losses = [row[key] for row in history for key in ("train_loss", "val_loss")]
    left.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    left.plot(epochs, [row["val_loss"] for row in history], marker="o", label="val loss")
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("loss (log scale)" if left.get_yscale() == "log" else "loss")
    left.set_title("Loss")
    right.plot(epochs, [row["val_acc"] for row in history], marker="o", label="val accuracy")
    right.plot(epochs, [row["val_macro_f1"] for row in history], marker="o", label="val macro-F1")
    right.set_xlabel("epoch")
    right.set_ylabel("score")
    right.set_title("Validation")
    kept = kept_epoch(history)
    if kept is not None:
        for ax in (left, right):
            ax.axvline(kept, color="0.3", linestyle="--", linewidth=1, label=f"kept: epoch {kept}")
    left.legend()
    right.legend()
    return fig


def plot_training_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    return save_figure(training_curves_figure(history), path)

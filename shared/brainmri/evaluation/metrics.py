"""Metrics for 4-class prediction and the derived tumor-vs-no-tumor decision.

All functions take class indices in the *bundle's* class order plus an ``(N, K)`` probability
matrix; ``tumor_prob = 1 - P(no_tumor)`` is computed by class name, never by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from brainmri.data.labels import NO_TUMOR

SWEEP = np.linspace(0.0, 1.0, 101)  # the original's 101-point threshold sweep
ECE_BINS = 15


def tumor_probabilities(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    return 1.0 - probs[:, list(class_names).index(NO_TUMOR)]


def binary_truth(y_true: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    return (y_true != list(class_names).index(NO_TUMOR)).astype(int)


def expected_calibration_error(
    probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over equal-width confidence bins."""
    if len(y_true) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in pairwise(edges):
        mask = (confidence > low) & (confidence <= high)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def reliability_bins(
    probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in pairwise(edges):
        mask = (confidence > low) & (confidence <= high)
        rows.append(
            {
                "low": float(low),
                "high": float(high),
                "count": int(mask.sum()),
                "accuracy": float(correct[mask].mean()) if mask.any() else float("nan"),
                "confidence": float(confidence[mask].mean()) if mask.any() else float("nan"),
            }
        )
    return rows


def binary_rates(y_bin: np.ndarray, tumor_prob: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = (tumor_prob >= threshold).astype(int)
    cm = confusion_matrix(y_bin, predicted, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    return {
        "acc_binary": float((tp + tn) / max(1, len(y_bin))),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "cm_binary": cm.tolist(),
    }


def threshold_sweep(y_bin: np.ndarray, tumor_prob: np.ndarray) -> list[dict[str, float]]:
    rows = []
    for threshold in SWEEP:
        rates = binary_rates(y_bin, tumor_prob, float(threshold))
        sens, spec = rates["sensitivity"], rates["specificity"]
        rows.append(
            {
                "threshold": round(float(threshold), 4),
                "sensitivity": sens if sens is not None else float("nan"),
                "specificity": spec if spec is not None else float("nan"),
                "acc_binary": rates["acc_binary"],
                "youden_j": (sens + spec - 1.0)
                if sens is not None and spec is not None
                else float("nan"),
            }
        )
    return rows


def youden_threshold(
    y_bin: np.ndarray, tumor_prob: np.ndarray
) -> tuple[float | None, float | None]:
    """Best threshold of the 101-point sweep by Youden's J (None when a class is absent)."""
    if len(set(y_bin.tolist())) < 2:
        return None, None
    sweep = threshold_sweep(y_bin, tumor_prob)
    best = max(sweep, key=lambda row: (row["youden_j"], -abs(row["threshold"] - 0.5)))
    return float(best["threshold"]), float(best["youden_j"])


def classification_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    threshold: float,
) -> dict[str, Any]:
    """Every headline metric of an evaluation, JSON-ready.

    With no labelled images (listed files outside class folders, or every file unreadable)
    there is nothing to score against: the labelled metrics are None rather than an error, so
    an evaluation of unlabelled images still yields its predictions, and the keys stay the same
    for every consumer.
    """
    y_true = np.asarray(y_true, dtype=int)
    class_names = list(class_names)
    if len(y_true) == 0:
        return unlabelled_report(class_names, threshold=threshold)
    labels = list(range(len(class_names)))
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    tumor_prob = tumor_probabilities(probs, class_names)
    y_bin = binary_truth(y_true, class_names)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    both = len(set(y_bin.tolist())) == 2
    best_t, best_j = youden_threshold(y_bin, tumor_prob)
    report: dict[str, Any] = {
        "n": len(y_true),
        "class_names": class_names,
        "acc_multiclass": float(accuracy_score(y_true, predicted)) if len(y_true) else None,
        "macro_f1": macro_f1(y_true, predicted) if len(y_true) else None,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "cm_multiclass": confusion_matrix(y_true, predicted, labels=labels).tolist(),
        "threshold": float(threshold),
        **binary_rates(y_bin, tumor_prob, threshold),
        "roc_auc_binary": float(roc_auc_score(y_bin, tumor_prob)) if both else None,
        "ap_binary": float(average_precision_score(y_bin, tumor_prob)) if both else None,
        "best_threshold_by_YoudenJ": best_t,
        "best_J": best_j,
        "ece": expected_calibration_error(probs, y_true),
        "roc_auc_per_class": per_class_auc(y_true, probs, class_names),
    }
    return report


# Keys of ``classification_report`` that need true labels; None when there are none.
LABELLED_METRICS = (
    "acc_multiclass",
    "macro_f1",
    "per_class",
    "cm_multiclass",
    "acc_binary",
    "sensitivity",
    "specificity",
    "cm_binary",
    "roc_auc_binary",
    "ap_binary",
    "best_threshold_by_YoudenJ",
    "best_J",
    "ece",
    "roc_auc_per_class",
)


def unlabelled_report(class_names: Sequence[str], *, threshold: float) -> dict[str, Any]:
    """``classification_report``'s keys for zero labelled images: every labelled metric None.

    scikit-learn refuses empty inputs, and a zero (an ECE of 0.0, an all-zero confusion
    matrix) would read as a measurement; None says there was nothing to measure.
    """
    return {
        "n": 0,
        "class_names": list(class_names),
        "threshold": float(threshold),
        **dict.fromkeys(LABELLED_METRICS),
    }


def per_class_auc(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for index, name in enumerate(class_names):
        positives = (y_true == index).astype(int)
        result[name] = (
            float(roc_auc_score(positives, probs[:, index]))
            if 0 < positives.sum() < len(positives)
            else None
        )
    return result


def macro_f1(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over the classes that occur, as truth or as prediction.

    A class that is neither (an evaluation of a glioma/meningioma folder, a bootstrap resample
    that drew no pituitary) has no F1 to speak of; counting it as 0 made 20 correct answers on
    two classes score 0.5. A class only predicted still counts: its F1 of 0 is the cost of the
    false alarms.
    """
    present = sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(predicted).tolist()))
    return float(f1_score(y_true, predicted, labels=present, average="macro", zero_division=0))


BOOTSTRAP_METRICS = ("acc_multiclass", "macro_f1", "roc_auc_binary", "sensitivity", "specificity")


def headline_metrics(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], threshold: float
) -> dict[str, float | None]:
    """The figures a bootstrap resamples (``BOOTSTRAP_METRICS``); None where a resample lacks
    a class the metric needs (e.g. no tumour at all, so no sensitivity)."""
    predicted = probs.argmax(axis=1)
    tumor_prob = tumor_probabilities(probs, class_names)
    y_bin = binary_truth(y_true, class_names)
    rates = binary_rates(y_bin, tumor_prob, threshold)
    return {
        "acc_multiclass": float((predicted == y_true).mean()),
        "macro_f1": macro_f1(y_true, predicted),
        "roc_auc_binary": (
            float(roc_auc_score(y_bin, tumor_prob)) if len(set(y_bin.tolist())) == 2 else None
        ),
        "sensitivity": rates["sensitivity"],
        "specificity": rates["specificity"],
    }


def resampling_groups(
    groups: Sequence[str | None], bootstrap_by: Literal["group", "image"]
) -> list[str] | None:
    """The group ids a bootstrap should resample, or None to resample single images.

    Groups are used only when asked for and when every image has one: a partly grouped set
    would mix units, so it falls back to images (reports say which unit was used).
    """
    if bootstrap_by != "group" or not groups or not all(groups):
        return None
    return [str(group) for group in groups]


def _resamples(
    n: int, n_boot: int, seed: int, groups: Sequence[str] | None
) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    draw = _group_resampler(groups, n, rng) if groups is not None else None
    for _ in range(n_boot):
        yield draw() if draw is not None else rng.integers(0, n, size=n)


def _percentile_interval(values: Sequence[float]) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals for the headline metrics.

    With ``groups`` (one id per image, e.g. the dataset builder's near-duplicate groups), whole
    groups are resampled instead of images. Slices of one patient series succeed or fail
    together, so resampling them one by one treats correlated errors as independent and gives
    intervals that are too narrow.
    """
    samples: dict[str, list[float]] = {key: [] for key in BOOTSTRAP_METRICS}
    for idx in _resamples(len(y_true), n_boot, seed, groups):
        for key, value in headline_metrics(y_true[idx], probs[idx], class_names, threshold).items():
            if value is not None:
                samples[key].append(value)
    return {key: _percentile_interval(values) for key, values in samples.items() if values}


def paired_bootstrap(
    y_true: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    class_names: Sequence[str],
    *,
    threshold_a: float,
    threshold_b: float,
    n_boot: int = 2000,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """How much better model B is than model A on the same images, with uncertainty.

    Both models are scored on the *same* resample each time, so what they share (the easy and
    the hard images) cancels out: the interval of the difference is much narrower than
    comparing two separate intervals, and it is the honest way to tell two close models apart.
    Per metric: ``a``, ``b``, ``diff`` (b - a) on the full set, the 95% percentile interval of
    the difference, and ``p_b_better``, the share of resamples in which B scored higher.
    """
    if probs_a.shape != probs_b.shape or len(probs_a) != len(y_true):
        raise ValueError("both models must score the same images")
    full_a = headline_metrics(y_true, probs_a, class_names, threshold_a)
    full_b = headline_metrics(y_true, probs_b, class_names, threshold_b)
    diffs: dict[str, list[float]] = {key: [] for key in BOOTSTRAP_METRICS}
    for done, idx in enumerate(_resamples(len(y_true), n_boot, seed, groups), start=1):
        if on_progress:
            on_progress(done, n_boot)
        yt = y_true[idx]
        a = headline_metrics(yt, probs_a[idx], class_names, threshold_a)
        b = headline_metrics(yt, probs_b[idx], class_names, threshold_b)
        for key in BOOTSTRAP_METRICS:
            if a[key] is not None and b[key] is not None:
                diffs[key].append(b[key] - a[key])  # type: ignore[operator]
    result: dict[str, dict[str, Any]] = {}
    for key, values in diffs.items():
        if not values or full_a[key] is None or full_b[key] is None:
            continue
        result[key] = {
            "a": full_a[key],
            "b": full_b[key],
            "diff": full_b[key] - full_a[key],  # type: ignore[operator]
            "ci": _percentile_interval(values),
            "p_b_better": float(np.mean(np.asarray(values) > 0)),
            "resamples": len(values),
        }
    return result


def _group_resampler(
    groups: Sequence[str], n: int, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A function drawing one cluster-bootstrap sample: as many groups as there are, with
    replacement, each contributing all of its images."""
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group ids for {n} images")
    _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]

    def draw() -> np.ndarray:
        chosen = rng.integers(0, len(members), size=len(members))
        return np.concatenate([members[g] for g in chosen])

    return draw

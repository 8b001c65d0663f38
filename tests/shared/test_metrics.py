"""Metrics, calibration and threshold selection on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.evaluation.calibration import choose_threshold, fit_temperature, softmax
from brainmri.evaluation.metrics import (
    binary_rates,
    bootstrap_ci,
    classification_report,
    expected_calibration_error,
    youden_threshold,
)

NAMES = ["no_tumor", "glioma", "meningioma", "pituitary"]
POLICIES = ("sensitivity:0.995", "youden")


def test_ece_of_perfectly_calibrated_and_overconfident() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    half = np.tile([0.6, 0.4, 0, 0], (10, 1))  # always says class 0 with 0.6, right 40%
    assert expected_calibration_error(half, y) == pytest.approx(0.2)
    exact = np.zeros((10, 4))
    exact[np.arange(10), y] = 1.0
    assert expected_calibration_error(exact, y) == 0.0


def test_temperature_scaling_fixes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=2000)
    logits = rng.normal(size=(2000, 4))
    logits[np.arange(2000), y] += 1.5  # informative ...
    logits *= 4.0  # ... but overconfident
    temperature = fit_temperature(logits, y)

    def nll(t: float) -> float:
        return float(-np.log(softmax(logits, t)[np.arange(len(y)), y]).mean())

    grid = np.linspace(0.5, 8.0, 151)
    best_on_grid = grid[np.argmin([nll(t) for t in grid])]
    assert abs(temperature - best_on_grid) < 0.06  # the fitted T minimises the NLL
    assert temperature > 1.5
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits, temperature), y)
    assert after < before / 3


def test_youden_and_sensitivity_policies() -> None:
    y_bin = np.array([0] * 50 + [1] * 50)
    tumor_prob = np.concatenate([np.linspace(0.0, 0.4, 50), np.linspace(0.3, 1.0, 50)])
    threshold, j = youden_threshold(y_bin, tumor_prob)
    assert 0.3 <= threshold <= 0.41
    assert j > 0.8
    strict = choose_threshold(y_bin, tumor_prob, "sensitivity:1.0")
    assert strict.sensitivity == 1.0
    assert strict.threshold <= 0.3
    assert choose_threshold(y_bin, tumor_prob, "youden").threshold == threshold
    with pytest.raises(ValueError, match="unknown threshold policy"):
        choose_threshold(y_bin, tumor_prob, "magic")


def test_a_target_met_only_by_flagging_everything_falls_back_to_youden() -> None:
    """Two confident misses among 100 tumours: only threshold 0 reaches 99.5% sensitivity,
    and it flags every no-tumour slice too. The policy used to return 0.00 (a model that
    calls everything a tumour); it now falls back to Youden's J, as documented."""
    y_bin = np.array([0] * 100 + [1] * 100)
    tumor_prob = np.concatenate([np.full(100, 0.02), np.full(98, 0.9), [0.001, 0.001]])
    choice = choose_threshold(y_bin, tumor_prob, "sensitivity:0.995")
    assert choice.policy == "youden"
    assert choice.threshold > 0.02
    assert (choice.sensitivity, choice.specificity) == (0.98, 1.0)


def test_fitted_threshold_never_contradicts_the_predicted_class() -> None:
    """A confident model meets the sensitivity target at 0.97 too; the fitted threshold stays
    at 0.5 or below, so every slice whose most likely class is a tumour is flagged."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(0.0, 1.0, (400, 4))
    logits[np.arange(400), y] += 9.0  # confident and nearly always right
    probs = softmax(logits)
    tumor_prob = 1.0 - probs[:, 0]
    y_bin = (y != 0).astype(int)
    assert binary_rates(y_bin, tumor_prob, 0.97)["sensitivity"] >= 0.995  # uncapped: 0.97+
    choices = {policy: choose_threshold(y_bin, tumor_prob, policy) for policy in POLICIES}
    assert choices["sensitivity:0.995"].uncapped >= 0.97  # recorded
    for policy, choice in choices.items():
        assert choice.threshold <= 0.5, policy
        assert (
            choice.sensitivity == binary_rates(y_bin, tumor_prob, choice.threshold)["sensitivity"]
        )
    # An ambiguous slice: tumour classes most likely one by one, no_tumor second.
    ambiguous = np.array([[0.40, 0.45, 0.10, 0.05], [0.34, 0.22, 0.35, 0.09]])
    for row in ambiguous:
        assert NAMES[int(row.argmax())] != "no_tumor"
        assert 1.0 - row[0] >= choices["sensitivity:0.995"].threshold


def test_binary_rates_at_threshold() -> None:
    rates = binary_rates(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), 0.5)
    assert rates["cm_binary"] == [[1, 1], [1, 1]]
    assert rates["sensitivity"] == 0.5
    assert rates["specificity"] == 0.5


def test_report_with_class_order_from_names() -> None:
    names = ["glioma", "no_tumor", "meningioma", "pituitary"]
    y = np.array([1, 0, 2, 3])
    probs = np.eye(4)[[1, 0, 2, 3]]
    report = classification_report(y, probs, names, threshold=0.5)
    assert report["acc_multiclass"] == 1.0
    assert report["sensitivity"] == 1.0
    assert report["specificity"] == 1.0
    assert report["roc_auc_binary"] == 1.0


def test_report_handles_single_class() -> None:
    y = np.array([1, 1])
    probs = np.array([[0.1, 0.9, 0, 0], [0.2, 0.8, 0, 0]])
    report = classification_report(y, probs, NAMES, threshold=0.5)
    assert report["roc_auc_binary"] is None
    assert report["specificity"] is None


def test_macro_f1_averages_over_the_classes_that_occur() -> None:
    """A folder of gliomas and meningiomas, all right, is a macro-F1 of 1 - not 0.5 from two
    absent classes scored 0. A class that is only predicted still costs its false alarms."""
    y = np.array([1] * 10 + [2] * 10)
    probs = np.zeros((20, 4))
    probs[np.arange(20), y] = 0.9
    probs[:, 0] = 0.1
    assert classification_report(y, probs, NAMES, threshold=0.5)["macro_f1"] == 1.0
    probs[0] = [0.0, 0.1, 0.0, 0.9]  # one glioma called pituitary, which is not in the truth
    report = classification_report(y, probs, NAMES, threshold=0.5)
    glioma_f1 = 2 * 9 / (2 * 9 + 1)  # 9 right, 1 missed, no false alarm
    assert report["macro_f1"] == pytest.approx((glioma_f1 + 1.0 + 0.0) / 3)
    assert report["per_class"]["no_tumor"]["support"] == 0


def _clustered_predictions(
    n_groups: int, per_group: int, wrong_groups: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Groups of identical slices (one series each) whose errors come together: every image of
    the first ``wrong_groups`` groups is misclassified, every other one is right."""
    y = np.repeat(np.arange(n_groups) % 4, per_group)
    probs = np.full((len(y), 4), 0.02)
    probs[np.arange(len(y)), y] = 0.94
    wrong = np.arange(len(y)) < wrong_groups * per_group
    probs[wrong] = 0.02
    probs[wrong, (y[wrong] + 1) % 4] = 0.94
    groups = [f"g{i // per_group:03d}" for i in range(len(y))]
    return y, probs, groups


def test_bootstrap_interval_brackets_the_point_estimate() -> None:
    y, probs, _ = _clustered_predictions(40, 10, 4)
    intervals = bootstrap_ci(y, probs, NAMES, threshold=0.5, n_boot=300)
    low, high = intervals["acc_multiclass"]
    assert low < 0.9 < high
    assert set(intervals) == {
        "acc_multiclass",
        "macro_f1",
        "roc_auc_binary",
        "sensitivity",
        "specificity",
    }


def test_group_bootstrap_is_wider_when_errors_cluster_in_groups() -> None:
    y, probs, groups = _clustered_predictions(40, 10, 4)
    by_image = bootstrap_ci(y, probs, NAMES, threshold=0.5, n_boot=400)
    by_group = bootstrap_ci(y, probs, NAMES, threshold=0.5, n_boot=400, groups=groups)

    def width(intervals: dict[str, tuple[float, float]]) -> float:
        low, high = intervals["acc_multiclass"]
        return high - low

    # 400 images but only 40 independent series: the honest interval is ~sqrt(10) wider.
    assert width(by_group) > 2 * width(by_image)
    low, high = by_group["acc_multiclass"]
    assert low < 0.9 < high


def test_group_bootstrap_of_singleton_groups_matches_the_image_bootstrap() -> None:
    y, probs, _ = _clustered_predictions(400, 1, 40)
    singletons = [f"s{i}" for i in range(len(y))]
    by_image = bootstrap_ci(y, probs, NAMES, threshold=0.5, n_boot=400)
    by_group = bootstrap_ci(y, probs, NAMES, threshold=0.5, n_boot=400, groups=singletons)
    for key in ("acc_multiclass", "macro_f1"):
        assert by_group[key] == pytest.approx(by_image[key], abs=0.01), key


def test_group_bootstrap_needs_one_group_per_image() -> None:
    y, probs, groups = _clustered_predictions(4, 2, 1)
    with pytest.raises(ValueError, match="7 group ids for 8 images"):
        bootstrap_ci(y, probs, NAMES, threshold=0.5, n_boot=5, groups=groups[:-1])

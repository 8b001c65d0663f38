"""Paired bootstrap comparison of two models on the same images."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.data.labels import CLASS_NAMES
from brainmri.evaluation.compare import verdict
from brainmri.evaluation.metrics import bootstrap_ci, paired_bootstrap


def _confident(labels: np.ndarray, k: int = 4, p: float = 0.9) -> np.ndarray:
    probs = np.full((len(labels), k), (1 - p) / (k - 1))
    probs[np.arange(len(labels)), labels] = p
    return probs


def _data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n // 4)
    return y, rng.permutation(n)


def test_a_model_that_fixes_errors_is_clearly_better() -> None:
    y, order = _data()
    wrong = order[:30]  # A gets these 30 images wrong; B fixes them
    predicted_a = y.copy()
    predicted_a[wrong] = (y[wrong] + 1) % 4
    probs_a, probs_b = _confident(predicted_a), _confident(y)
    result = paired_bootstrap(
        y, probs_a, probs_b, CLASS_NAMES, threshold_a=0.5, threshold_b=0.5, n_boot=300
    )
    accuracy = result["acc_multiclass"]
    assert accuracy["a"] == pytest.approx(1 - 30 / 240)
    assert accuracy["b"] == 1.0
    assert accuracy["diff"] == pytest.approx(30 / 240)
    low, high = accuracy["ci"]
    assert 0 < low < accuracy["diff"] < high
    assert accuracy["p_b_better"] == 1.0
    assert result["macro_f1"]["ci"][0] > 0
    assert verdict(accuracy) == "B better"
    # The comparison is antisymmetric: swap the models and every difference changes sign.
    swapped = paired_bootstrap(
        y, probs_b, probs_a, CLASS_NAMES, threshold_a=0.5, threshold_b=0.5, n_boot=300
    )
    assert swapped["acc_multiclass"]["diff"] == pytest.approx(-accuracy["diff"])
    assert swapped["acc_multiclass"]["ci"] == pytest.approx((-high, -low))
    assert swapped["acc_multiclass"]["p_b_better"] == 0.0
    assert verdict(swapped["acc_multiclass"]) == "A better"


def test_identical_models_show_no_difference() -> None:
    y, order = _data()
    predicted = y.copy()
    predicted[order[:20]] = (y[order[:20]] + 2) % 4
    probs = _confident(predicted)
    result = paired_bootstrap(
        y, probs, probs.copy(), CLASS_NAMES, threshold_a=0.5, threshold_b=0.5, n_boot=200
    )
    for metric in result.values():
        assert metric["diff"] == 0.0
        assert metric["ci"] == (0.0, 0.0)
        assert metric["p_b_better"] == 0.0
        assert verdict(metric) == "same on every resample"


def test_pairing_is_narrower_than_two_separate_intervals() -> None:
    """Both models share most of their errors; B fixes 6 more. Separate intervals overlap
    almost entirely, but the paired interval of the difference excludes zero."""
    y, order = _data(seed=3)
    shared, extra = order[:24], order[24:30]
    predicted_b = y.copy()
    predicted_b[shared] = (y[shared] + 1) % 4
    predicted_a = predicted_b.copy()
    predicted_a[extra] = (y[extra] + 1) % 4
    probs_a, probs_b = _confident(predicted_a), _confident(predicted_b)
    paired = paired_bootstrap(
        y, probs_a, probs_b, CLASS_NAMES, threshold_a=0.5, threshold_b=0.5, n_boot=400
    )
    assert paired["acc_multiclass"]["ci"][0] > 0
    separate_a = bootstrap_ci(y, probs_a, CLASS_NAMES, threshold=0.5, n_boot=400)
    separate_b = bootstrap_ci(y, probs_b, CLASS_NAMES, threshold=0.5, n_boot=400)
    assert separate_b["acc_multiclass"][0] < separate_a["acc_multiclass"][1]  # they overlap


def test_group_resampling_widens_the_interval_when_gains_are_clustered() -> None:
    """B's whole advantage lies in two near-duplicate groups (two patient series): by image it
    looks certain, by group it is two draws of luck."""
    y, order = _data(seed=5)
    clustered = order[:24]
    groups = [f"single-{i}" for i in range(len(y))]
    for rank, index in enumerate(clustered):
        groups[index] = f"series-{rank % 2}"
    predicted_a = y.copy()
    predicted_a[clustered] = (y[clustered] + 1) % 4
    probs_a, probs_b = _confident(predicted_a), _confident(y)
    common = {"threshold_a": 0.5, "threshold_b": 0.5, "n_boot": 400}
    by_image = paired_bootstrap(y, probs_a, probs_b, CLASS_NAMES, **common)
    by_group = paired_bootstrap(y, probs_a, probs_b, CLASS_NAMES, groups=groups, **common)
    width = {
        name: result["acc_multiclass"]["ci"][1] - result["acc_multiclass"]["ci"][0]
        for name, result in (("image", by_image), ("group", by_group))
    }
    assert width["group"] > 2 * width["image"]
    assert by_group["acc_multiclass"]["p_b_better"] < 1.0  # some resamples miss both series
    assert verdict(by_image["acc_multiclass"]) == "B better"
    assert verdict(by_group["acc_multiclass"]) == "no clear difference"


def test_models_must_score_the_same_images() -> None:
    y, _ = _data()
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(
            y, _confident(y), _confident(y)[:-1], CLASS_NAMES, threshold_a=0.5, threshold_b=0.5
        )

"""The few figures that stand for a model version in listings, and where they come from.

A version trained by a train job carries metrics on the held-out test split of its own data;
a bundle registered as it was shipped (the default model) carries only its validation and
calibration figures. Listings used to show the two side by side with nothing to tell them
apart (and the API, the CLI and the web page each rebuilt the choice). The API now returns
the headline with its ``source`` and the clients print it as they get it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADLINE_KEYS = (
    "macro_f1",
    "acc_multiclass",
    "sensitivity",
    "specificity",
    "roc_auc_binary",
    "ece",
)
SOURCE_TEST = "held-out test split"
SOURCE_VALIDATION = "validation and calibration halves"


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``HEADLINE_KEYS`` plus ``source``: test figures when the version has them, else its
    validation (selection half) and calibration-half figures."""
    test = metrics.get("test") or {}
    if test:
        return {**{key: test.get(key) for key in HEADLINE_KEYS}, "source": SOURCE_TEST}
    selection = metrics.get("val_selection") or {}
    calibration = metrics.get("calibration") or {}
    return {
        "macro_f1": selection.get("macro_f1"),
        "acc_multiclass": selection.get("acc"),
        "sensitivity": calibration.get("sensitivity_at_threshold"),
        "specificity": calibration.get("specificity_at_threshold"),
        "roc_auc_binary": selection.get("roc_auc_binary"),
        "ece": calibration.get("ece_after"),
        "source": SOURCE_VALIDATION,
    }

"""The promotion gate: a candidate replaces production only when it is measurably better."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GateDecision:
    promote: bool
    reason: str


def promotion_gate(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    *,
    min_macro_f1_gain: float,
    max_sensitivity_drop: float,
    paired_macro_f1: dict[str, Any] | None = None,
    require_clear_gain: bool = False,
) -> GateDecision:
    """Compare held-out reports of the candidate and of production on *the same* images.

    Promote only if macro-F1 improves by at least ``min_macro_f1_gain`` and tumor sensitivity
    at each model's own operating threshold does not drop by more than ``max_sensitivity_drop``.
    With ``require_clear_gain``, the paired-bootstrap interval of the macro-F1 gain
    (``paired_macro_f1``, from :func:`brainmri.evaluation.metrics.paired_bootstrap`) must also
    lie above zero: a fixed margin alone cannot know how noisy a small held-out split is.
    """
    if production is None:
        return GateDecision(True, "no production model to compare with")
    f1_c, f1_p = candidate.get("macro_f1"), production.get("macro_f1")
    if f1_c is None or f1_p is None:
        return GateDecision(False, "macro-F1 unavailable on the held-out split")
    gain = f1_c - f1_p
    if gain < min_macro_f1_gain:
        return GateDecision(
            False,
            f"macro-F1 {f1_c:.4f} vs production {f1_p:.4f} "
            f"(gain {gain:+.4f} < required {min_macro_f1_gain:+.4f})",
        )
    sens_c, sens_p = candidate.get("sensitivity"), production.get("sensitivity")
    if sens_c is not None and sens_p is not None and sens_c < sens_p - max_sensitivity_drop:
        return GateDecision(
            False, f"tumor sensitivity {sens_c:.4f} would drop below production's {sens_p:.4f}"
        )
    interval = ""
    if paired_macro_f1 is not None:
        low, high = paired_macro_f1["ci"]
        interval = f", 95% paired interval {low:+.4f} to {high:+.4f}"
        if require_clear_gain and low <= 0:
            return GateDecision(
                False,
                f"macro-F1 gain {gain:+.4f}{interval}: not clear of noise on this held-out split",
            )
    elif require_clear_gain:
        return GateDecision(False, "no paired comparison to show the gain is clear of noise")
    sens = (
        f"; sensitivity {sens_c:.4f} vs {sens_p:.4f}"
        if sens_c is not None and sens_p is not None
        else ""
    )
    return GateDecision(
        True,
        f"macro-F1 {f1_c:.4f} vs production {f1_p:.4f} (gain {gain:+.4f}{interval}){sens}",
    )

"""A gallery of an evaluation's worst mistakes (``mistakes.png``).

Why: metrics say how often a model is wrong, not how. A reader who looks at a dozen missed
tumours sees at once whether they share a sequence, a size, an artefact or a label problem -
what a confusion matrix cannot show. Tiles are ordered by what matters for triage:

1. missed tumours (a tumour whose ``tumor_prob`` is under the threshold), most confidently
   missed first;
2. false alarms (no tumour, flagged), most confident first;
3. other wrong classes (a tumour of one type called another, or called ``no_tumor`` but still
   flagged by a low threshold), most confident first.

Each tile shows the slice as the model saw it before resizing, the file name, the true and
predicted class and ``tumor_prob`` against the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from matplotlib.figure import Figure

from brainmri.data.labels import binary_label
from brainmri.evaluation.plots import save_figure

if TYPE_CHECKING:
    from brainmri.evaluation.report import EvalItem
    from brainmri.inference.results import Prediction

MISTAKES_FILE = "mistakes.png"
Kind = Literal["missed tumour", "false alarm", "wrong class"]
_ORDER: dict[Kind, int] = {"missed tumour": 0, "false alarm": 1, "wrong class": 2}


@dataclass(frozen=True, slots=True)
class Mistake:
    item: EvalItem
    prediction: Prediction
    kind: Kind
    confidence: float  # how sure the model was of its wrong answer (higher: worse)


def classify_mistake(item: EvalItem, prediction: Prediction, threshold: float) -> Mistake | None:
    """The mistake ``prediction`` makes on labelled ``item``, or None when it is right."""
    assert item.true_class is not None
    tumour = binary_label(item.true_class) == 1
    flagged = prediction.has_tumor(threshold)
    if tumour and not flagged:
        return Mistake(item, prediction, "missed tumour", 1.0 - prediction.tumor_prob)
    if not tumour and flagged:
        return Mistake(item, prediction, "false alarm", prediction.tumor_prob)
    if prediction.predicted_class != item.true_class:
        confidence = prediction.class_probs[prediction.predicted_class]
        return Mistake(item, prediction, "wrong class", confidence)
    return None


def worst_mistakes(
    labelled: Sequence[tuple[EvalItem, Prediction]], threshold: float
) -> list[Mistake]:
    """Every mistake, worst first in the order of the module docstring (ties by name)."""
    found = [
        mistake
        for item, prediction in labelled
        if (mistake := classify_mistake(item, prediction, threshold)) is not None
    ]
    return sorted(found, key=lambda m: (_ORDER[m.kind], -m.confidence, m.item.name))


def plot_mistakes(
    mistakes: Sequence[Mistake],
    slice_of: Callable[[EvalItem], np.ndarray | None],
    threshold: float,
    n_mistakes: int,
    path: Path,
) -> Path | None:
    """Draw the gallery; ``slice_of`` reads an item's displayed slice (None: skip it).
    ``n_mistakes`` is how many there were in all, for the title. None when nothing drew."""
    tiles = [(m, pixels) for m in mistakes if (pixels := slice_of(m.item)) is not None]
    if not tiles:
        return None
    columns = min(4, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    fig = Figure(figsize=(3.0 * columns, 3.5 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (mistake, pixels) in zip(axes, tiles, strict=False):
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
        name = Path(mistake.item.name).name
        name = name if len(name) <= 28 else name[:12] + "..." + name[-13:]
        relation = ">=" if mistake.prediction.tumor_prob >= threshold else "<"
        ax.set_title(
            f"{mistake.kind}\n{name}\ntrue {mistake.item.true_class}, "
            f"called {mistake.prediction.predicted_class}\n"
            f"tumor_prob {mistake.prediction.tumor_prob:.3f} {relation} {threshold:.2f}",
            fontsize=7.5,
            color="firebrick" if mistake.kind == "missed tumour" else "black",
        )
    shown = f"the {len(tiles)} worst" if len(tiles) < n_mistakes else f"all {len(tiles)}"
    fig.suptitle(
        f"Mistakes at threshold {threshold:.2f}: {shown} of {n_mistakes} "
        "(missed tumours first, then false alarms, then other classes)",
        fontsize=10,
    )
    return save_figure(fig, path)

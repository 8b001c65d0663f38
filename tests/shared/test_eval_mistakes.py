"""``mistakes.png``: the evaluation's worst mistakes, missed tumours first.

The order is checked on hand-made predictions; the gallery itself on a real evaluation (a
model with random weights on generated phantoms makes plenty of mistakes), read back as an
image, through the library and the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.cli.main import main
from brainmri.data.manifest import load_samples
from brainmri.evaluation.mistakes import MISTAKES_FILE, worst_mistakes
from brainmri.evaluation.report import REPORT_FILE, EvalItem, evaluate, items_from_samples
from brainmri.inference.engine import InferenceEngine
from brainmri.inference.results import Prediction
from brainmri.models.bundle import load_bundle
from brainmri.phantom import write_phantom_dataset

CLASSES = ("no_tumor", "glioma", "meningioma", "pituitary")


def answer(true: str, called: str, tumor_prob: float, name: str) -> tuple[EvalItem, Prediction]:
    others = (1.0 - 0.7) / 3
    probs = {c: (0.7 if c == called else others) for c in CLASSES}
    return EvalItem(name, true, b""), Prediction(probs, called, tumor_prob, "v1")


def test_missed_tumours_come_first_then_false_alarms_then_other_classes() -> None:
    labelled = [
        answer("glioma", "meningioma", 0.97, "wrong-type.png"),
        answer("no_tumor", "glioma", 0.90, "false-alarm.png"),
        answer("pituitary", "no_tumor", 0.15, "missed-a-little.png"),
        answer("meningioma", "no_tumor", 0.02, "missed-badly.png"),
        answer("glioma", "no_tumor", 0.40, "flagged-anyway.png"),  # flagged at 0.2: a class error
        answer("glioma", "glioma", 0.95, "right.png"),
        answer("no_tumor", "no_tumor", 0.05, "right-too.png"),
    ]
    found = worst_mistakes(labelled, threshold=0.2)
    assert [(m.kind, m.item.name) for m in found] == [
        ("missed tumour", "missed-badly.png"),
        ("missed tumour", "missed-a-little.png"),
        ("false alarm", "false-alarm.png"),
        ("wrong class", "flagged-anyway.png"),
        ("wrong class", "wrong-type.png"),  # as sure as the one above: by name
    ]
    assert [m.item.name for m in worst_mistakes(labelled, threshold=0.2)[:2]] == [
        "missed-badly.png",
        "missed-a-little.png",
    ]
    assert worst_mistakes(labelled[5:], threshold=0.2) == []


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mistakes-data")
    write_phantom_dataset(root, per_class=4, size=72, seed=5)
    return root


def test_an_evaluation_draws_its_worst_mistakes(
    dataset: Path, random_bundle_dir: Path, tmp_path: Path
) -> None:
    engine = InferenceEngine(load_bundle(random_bundle_dir), device="cpu")
    items = items_from_samples(load_samples(dataset))
    outcome = evaluate(engine, items, tmp_path, threshold=0.5, mistakes=6)
    labelled = [(item, pred) for item, pred in outcome.predictions]
    n_wrong = len(worst_mistakes(labelled, 0.5))
    assert n_wrong > 0, "a model with random weights got every phantom right"
    gallery = tmp_path / MISTAKES_FILE
    assert MISTAKES_FILE in outcome.report["artifacts"]
    with Image.open(gallery) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    columns = min(4, n_wrong, 6)
    assert width > 250 * columns * 0.8 and height > 250  # tiles, not an empty figure
    assert pixels.std() > 10  # slices were drawn


def test_no_gallery_when_asked_for_none_and_none_left_from_an_earlier_run(
    dataset: Path, random_bundle_dir: Path, tmp_path: Path
) -> None:
    model = ["--model", str(random_bundle_dir), "--out", str(tmp_path)]
    assert main(["eval", "--data", str(dataset), *model]) == 0
    assert (tmp_path / MISTAKES_FILE).exists()
    assert main(["eval", "--data", str(dataset), *model, "--mistakes", "0"]) == 0
    assert not (tmp_path / MISTAKES_FILE).exists()
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert MISTAKES_FILE not in report["artifacts"]


def test_a_negative_count_is_a_usage_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["eval", "--data", str(dataset), "--out", str(tmp_path), "--mistakes", "-1"])
    assert stopped.value.code == 2

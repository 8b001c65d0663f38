"""A training cache of generated phantoms, shared by the training-side benchmarks."""

from __future__ import annotations

import tempfile
from pathlib import Path

from brainmri.data.labels import CLASS_NAMES
from brainmri.data.manifest import Sample
from brainmri.phantom import FOLDER_NAMES, write_phantom_dataset
from brainmri.preprocess import PreprocessConfig
from brainmri.training.data import SliceCache, build_cache


def phantom_cache(preprocess: PreprocessConfig, cache_size: int, per_class: int = 16) -> SliceCache:
    """Phantoms at 256 px, decoded into the trainer's uint8 cache at ``cache_size``."""
    with tempfile.TemporaryDirectory() as tmp:
        write_phantom_dataset(Path(tmp), per_class=per_class, size=256, seed=1)
        samples = [
            Sample(path, name)
            for name, folder in FOLDER_NAMES.items()
            for path in sorted((Path(tmp) / folder).glob("*.png"))
        ]
        return build_cache(
            samples, CLASS_NAMES, preprocess, size=cache_size, as_uint8=True, progress=False
        )

"""The per-process production model (created lazily in the process that runs tasks)."""

from __future__ import annotations

from functools import lru_cache

from brainmri.config import get_settings
from brainmri.registry.cache import ProductionModel


@lru_cache(maxsize=1)
def production_model() -> ProductionModel:
    return ProductionModel(get_settings())

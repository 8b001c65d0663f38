"""The per-process production model (created lazily in the process that runs tasks)."""

from __future__ import annotations

from functools import lru_cache

from brainmri.config import get_settings
from brainmri.jobs.decoding import job_decode_sandbox
from brainmri.registry.cache import ProductionModel


@lru_cache(maxsize=1)
def production_model() -> ProductionModel:
    settings = get_settings()
    return ProductionModel(settings, sandbox=job_decode_sandbox(settings))

"""Process-wide objects of the API, built once at startup and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from celery import Celery

from brainmri.config import Settings
from brainmri.imaging.dicom import SliceSelection
from brainmri.imaging.limits import InputLimits
from brainmri.imaging.sandbox import DecodeSandbox, sandbox_from_settings
from brainmri.inference.loader import dicom_selection
from brainmri.jobs.celery_app import create_celery
from brainmri.storage import ObjectStore, open_store
from brainmri_api.auth import KeyRing
from brainmri_api.observability import Metrics


@dataclass
class AppState:
    settings: Settings
    keyring: KeyRing
    metrics: Metrics

    @cached_property
    def celery(self) -> Celery:
        return create_celery(self.settings)

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @cached_property
    def limits(self) -> InputLimits:
        return InputLimits.from_settings(self.settings)

    @cached_property
    def dicom_selection(self) -> SliceSelection:
        return dicom_selection(self.settings)

    @cached_property
    def sandbox(self) -> DecodeSandbox:
        return sandbox_from_settings(
            self.settings, processes=self.settings.upload_sandbox_processes
        )

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url

"""The object-store layout the sweeps judge by: which folder, and whose, a stored key is in.

A sweep deletes whole folders, so a key it misreads (a stray file beside the folders, a
marker object, another prefix that merely starts alike) must map to no folder at all."""

from __future__ import annotations

import pytest

from brainmri.jobs.artifacts import upload_key, upload_owner, upload_prefix
from brainmri.registry.versions import bundle_prefix, bundle_prefix_of


def test_a_bundle_file_maps_back_to_its_bundle_folder() -> None:
    prefix = bundle_prefix("brainmri", "resnet18-20261206-1")
    assert bundle_prefix_of(prefix + "model.safetensors") == prefix
    assert bundle_prefix_of(prefix + "plots/roc.png") == prefix


@pytest.mark.parametrize(
    "key",
    [
        "models/brainmri/stray-file.json",  # beside the version folders, not inside one
        "models/brainmri/v1/",  # a folder marker, not a file
        "models//v1/model.safetensors",
        "modelsX/brainmri/v1/model.safetensors",
        "uploads/job/input.png",
    ],
)
def test_keys_outside_a_bundle_folder_belong_to_none(key: str) -> None:
    assert bundle_prefix_of(key) is None


def test_an_upload_maps_back_to_its_job() -> None:
    key = upload_key("3f2a-job", ".dcm")
    assert key.startswith(upload_prefix("3f2a-job"))
    assert upload_owner(key) == "3f2a-job"


@pytest.mark.parametrize(
    "key", ["uploads/stray.png", "uploads/job/", "uploads//input.png", "uploadsX/job/input.png"]
)
def test_keys_outside_an_upload_folder_belong_to_no_job(key: str) -> None:
    assert upload_owner(key) is None

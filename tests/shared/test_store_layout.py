"""The object-store layout the sweeps judge by: which folder, and whose, a stored key is in.

A sweep deletes whole folders once their newest key is old enough, so a key it misreads either
way is a bug: one beside the folders or under a prefix that merely starts alike must map to no
folder, and every key that deleting a folder would remove - odd ones too - must map to it."""

from __future__ import annotations

import pytest

from brainmri.jobs.artifacts import upload_key, upload_owner, upload_prefix
from brainmri.registry.versions import bundle_prefix, bundle_prefix_of


def test_a_bundle_file_maps_back_to_its_bundle_folder() -> None:
    prefix = bundle_prefix("brainmri", "resnet18-20261206-1")
    assert bundle_prefix_of(prefix + "model.safetensors") == prefix
    assert bundle_prefix_of(prefix + "plots/roc.png") == prefix


@pytest.mark.parametrize("rest", ["", "plots//roc.png", "/model.safetensors"])
def test_odd_keys_inside_a_bundle_folder_still_count_for_it(rest: str) -> None:
    prefix = bundle_prefix("brainmri", "v1")
    assert bundle_prefix_of(prefix + rest) == prefix


@pytest.mark.parametrize(
    "key",
    [
        "models/brainmri/stray-file.json",  # beside the version folders, not inside one
        "models/brainmri/",  # the model's folder, not a version's
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


@pytest.mark.parametrize("rest", ["", "/input.png", "a//input.png"])
def test_odd_keys_inside_an_upload_folder_still_count_for_its_job(rest: str) -> None:
    assert upload_owner(upload_prefix("3f2a-job") + rest) == "3f2a-job"


@pytest.mark.parametrize(
    "key", ["uploads/stray.png", "uploads/", "uploads//input.png", "uploadsX/job/input.png"]
)
def test_keys_outside_an_upload_folder_belong_to_no_job(key: str) -> None:
    assert upload_owner(key) is None

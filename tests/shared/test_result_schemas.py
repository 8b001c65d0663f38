"""The OpenAPI document describes each job kind's ``result``, strictly enough to catch drift.

Real results from real workers are checked against it in the service tests
(``assert_documented_result`` in tests/platform); here, that the document carries the schemas,
that ``JobPublic.result`` points at them, and that the check fails on a result with a field
missing, one undocumented, or a wrong type - so a passing check means something.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest

from brainmri.config import Settings
from brainmri.jobs.results import RESULT_MODELS
from brainmri_api.main import create_app
from brainmri_api.openapi import add_result_schemas
from tests.helpers import assert_documented_result

PREDICT = {
    "class_probs": {"no_tumor": 0.1, "glioma": 0.7, "meningioma": 0.1, "pituitary": 0.1},
    "predicted_class": "glioma",
    "tumor_prob": 0.9,
    "threshold": 0.22,
    "has_tumor": True,
    "model_version": "resnet18-1",
    "tta": False,
    "n_slices": 1,
    "cam_url": "/v1/jobs/j/artifacts/cam.png",
    "input_url": "/v1/jobs/j/artifacts/input.png",
    "input": {"kind": "image", "width": 512, "height": 512, "mode": "L"},
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("openapi")
    settings = Settings(database_url=f"sqlite:///{folder}/db.sqlite", data_dir=folder)
    return create_app(settings).openapi()


def test_job_result_points_at_one_schema_per_kind(openapi: dict) -> None:
    schemas = openapi["components"]["schemas"]
    result = schemas["JobPublic"]["properties"]["result"]
    refs = [option.get("$ref") for option in result["anyOf"]]
    assert refs == [f"#/components/schemas/{m.__name__}" for m in RESULT_MODELS.values()] + [None]
    for model in RESULT_MODELS.values():
        assert schemas[model.__name__]["additionalProperties"] is False
    assert "ClassMetrics" in schemas and "InputFacts" in schemas  # nested models resolve


def test_a_conforming_result_passes(openapi: dict) -> None:
    assert_documented_result(openapi, "predict", PREDICT)
    assert_documented_result(openapi, "predict", {**PREDICT, "cam_url": None})


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.pop("tumor_prob"),
        lambda r: r.update(segmentation_mask="undocumented"),
        lambda r: r.update(has_tumor="yes"),
        lambda r: r["input"].update(kind="video"),
    ],
    ids=["missing", "undocumented", "wrong-type", "unknown-input-kind"],
)
def test_the_check_fails_on_drift(openapi: dict, change) -> None:
    result = copy.deepcopy(PREDICT)
    change(result)
    with pytest.raises(jsonschema.ValidationError):
        assert_documented_result(openapi, "predict", result)


def test_a_taken_schema_name_is_an_error_not_an_overwrite() -> None:
    document = {
        "components": {
            "schemas": {"JobPublic": {"properties": {}}, "FileError": {"type": "string"}}
        }
    }
    with pytest.raises(RuntimeError, match="FileError"):
        add_result_schemas(document)

"""The OpenAPI document, with each job kind's ``result`` described.

``JobPublic.result`` stays a plain JSON object at run time (see :mod:`brainmri.jobs.results`
for why); the document tells clients what it holds: one of ``PredictResult``,
``EvaluateResult`` or ``TrainResult``, by the job's ``kind``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from brainmri.jobs.results import RESULT_MODELS

RESULT_DESCRIPTION = (
    "Null until the job succeeds; then, by `kind`: `PredictResult`, `EvaluateResult` or "
    "`TrainResult`."
)


def add_result_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """Put the result models into ``schema``'s components and point ``JobPublic.result``
    at them. Nested models (``InputFacts``, ``ClassMetrics``, ``FileError``) become
    components too; a name already taken by another schema is an error, not an overwrite."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    refs = []
    for model in RESULT_MODELS.values():
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in {**definition.pop("$defs", {}), model.__name__: definition}.items():
            if components.get(name, nested) != nested:
                raise RuntimeError(f"OpenAPI schema name {name!r} is taken by another schema")
            components[name] = nested
        refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
    components["JobPublic"]["properties"]["result"] = {
        "anyOf": [*refs, {"type": "null"}],
        "title": "Result",
        "description": RESULT_DESCRIPTION,
    }
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document with the result schemas (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_result_schemas(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override

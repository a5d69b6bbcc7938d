"""The HTTP API's OpenAPI 3.1 document, generated from its models, so it describes
exactly what the handlers send."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .api_contract import (
    BODY_DEADLINE,
    PREFIX,
    Error,
    Health,
    ScenarioByName,
    ScenarioInfo,
    SessionDetail,
    SessionPage,
    SessionQuery,
)

# -- the OpenAPI document ------------------------------------------------------------------

_RESPONSES: Final = (SessionPage, SessionDetail, ScenarioInfo, Health, Error)


def openapi_document(*, auth: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API; `auth` adds the bearer-token scheme."""
    refs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "serialization") for m in _RESPONSES]
    refs.append((ScenarioByName, "validation"))
    _, top = models_json_schema(refs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top["$defs"]

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_body(name: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(name)}}}

    def errors(*codes: int) -> dict[str, Any]:
        reasons = {
            400: "Malformed request",
            401: "Missing or wrong bearer token",
            404: "No such session or message",
            405: "Method not allowed",
            408: f"Body not received within {BODY_DEADLINE:g}s (the connection is closed)",
            413: "Body too large",
            415: "Unsupported Content-Type",
            422: "Scenario rejected (file, line and key path in details)",
            500: "Unexpected error (logged by the server)",
            503: "Journal unavailable, or the server busy (too many connections or bodies "
            "at once; retry after Retry-After seconds)",
        }
        chosen = (*codes, *((401,) if auth else ()), 405, 500)
        return {str(code): json_body("Error", reasons[code]) for code in sorted(set(chosen))}

    query = SessionQuery.model_json_schema()["properties"]
    session_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/sessions": {
            "get": {
                "operationId": "listSessions",
                "summary": "Sessions, newest first, with their verdicts",
                "parameters": [
                    {
                        "name": name,
                        "in": "query",
                        "required": False,
                        "description": spec.get("description", ""),
                        "schema": _without_null(spec),
                    }
                    for name, spec in query.items()
                ],
                "responses": {
                    "200": json_body("SessionPage", "A page of sessions"),
                    **errors(400, 503),
                },
            },
            "delete": {
                "operationId": "clearSessions",
                "summary": "Empty the journal",
                "responses": {"204": {"description": "Emptied"}, **errors(503)},
            },
        },
        "/sessions/{id}": {
            "get": {
                "operationId": "getSession",
                "summary": "One session with its transcript and messages",
                "parameters": [session_id],
                "responses": {
                    "200": json_body("SessionDetail", "The session"),
                    **errors(404, 503),
                },
            }
        },
        "/sessions/{id}/messages/{n}": {
            "get": {
                "operationId": "getMessage",
                "summary": "A stored message as received",
                "parameters": [
                    session_id,
                    {
                        "name": "n",
                        "in": "path",
                        "required": True,
                        "description": "The message's number in the session, from 1.",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The raw message",
                        "content": {
                            "message/rfc822": {
                                "schema": {"type": "string", "contentMediaType": "message/rfc822"}
                            }
                        },
                    },
                    **errors(400, 404, 503),
                },
            }
        },
        "/scenario": {
            "get": {
                "operationId": "getScenario",
                "summary": "The running scenario",
                "responses": {"200": json_body("ScenarioInfo", "The scenario")},
            },
            "put": {
                "operationId": "putScenario",
                "summary": "Swap the scenario for new sessions",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("ScenarioByName")},
                        **{
                            kind: {"schema": {"type": "string", "description": "Scenario YAML"}}
                            for kind in ("application/yaml", "text/yaml")
                        },
                    },
                },
                "responses": {
                    "200": json_body("ScenarioInfo", "The scenario now running"),
                    **errors(400, 408, 413, 415, 422, 503),
                },
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "ready, or degraded with the reasons",
                "responses": {"200": json_body("Health", "The receiver's health")},
                **({"security": []} if auth else {}),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "strictmx",
            "version": "1",
            "description": "The journal and the running scenario of a strictmx receiver.",
        },
        "servers": [{"url": PREFIX}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an absent parameter, not null, means 'no filter'."""
    (kind,) = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    merged = {**kind, **schema}
    kept = {k: v for k, v in merged.items() if k not in ("anyOf", "title", "description")}
    if kept.get("default") is None:
        kept.pop("default", None)
    return kept

"""The OpenAPI documents (services/common/web/openapi.py): valid OpenAPI 3, served at
/<service>/api/v1/openapi.json, and covering every /api/ route of the service's URL map."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from services.common.web.app import create_app

API_SERVICES = ("intake", "dispatch")


def document(app) -> dict:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def api_routes(app) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules() if "/api/" in rule.rule
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def documented_routes(app, spec) -> set[tuple[str, str]]:
    """(endpoint, method) each documented operation reaches: its path, with every {parameter}
    filled in, matched against the app's URL map."""
    adapter = app.url_map.bind("localhost")
    found = set()
    for path, operations in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "210902-20261125-0001", path)
        for method in operations:
            endpoint, _ = adapter.match(concrete, method=method.upper())
            found.add((endpoint, method.upper()))
    return found


@pytest.mark.parametrize("name", API_SERVICES)
def test_the_document_is_valid_openapi(name, build_service):
    spec = document(create_app(build_service(name)))
    validate(spec)  # raises with the first problem
    assert spec["openapi"].startswith("3.") and spec["servers"] == [{"url": f"/{name}", "description": spec["servers"][0]["description"]}]


@pytest.mark.parametrize("name", API_SERVICES)
def test_every_api_route_is_documented(name, build_service):
    app = create_app(build_service(name))
    spec = document(app)
    missing = api_routes(app) - documented_routes(app, spec)
    assert not missing, f"{name}: /api/ routes missing from the OpenAPI document: {sorted(missing)}"


def test_every_dispatch_act_has_its_own_path_and_body(build_service):
    from services.dispatch.api import ACTS
    spec = document(create_app(build_service("dispatch")))
    for act in ACTS:
        operation = spec["paths"][f"/api/v1/cases/{{case_no}}/{act}"]["post"]
        assert operation["security"] == [{"bearer": []}]
        assert "$ref" in operation["requestBody"]["content"]["application/json"]["schema"], act


def test_request_body_says_what_the_validators_check(build_service):
    """The @validates rules of RequestSchema appear as JSON Schema (pattern, enum), so a
    client (and the fuzzer) can tell valid input from invalid."""
    spec = document(create_app(build_service("intake")))
    body = spec["components"]["schemas"]["NewRequest"]
    assert set(body["required"]) == {"district", "name", "phone", "description"}
    assert "海州区" in body["properties"]["district"]["enum"] and "210902" in body["properties"]["district"]["enum"]
    assert re.fullmatch(body["properties"]["phone"]["pattern"], "13800001234")
    assert body["properties"]["description"]["minLength"] == 5
    assert body.get("additionalProperties") is False  # unknown fields are refused


def test_no_other_service_has_an_api_without_a_document(build_service):
    for name in ("mediation", "supervision"):
        app = create_app(build_service(name))
        assert not api_routes(app), f"{name} has /api/ routes: describe them in an OpenAPI document"

"""The OpenAPI schema at /api/schema/ describes the merchant API, its auth and Idempotency-Key."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/v1/checkout_sessions", "get"): "checkout_sessions_list",
    ("/api/v1/checkout_sessions", "post"): "checkout_sessions_create",
    ("/api/v1/checkout_sessions/{public_id}", "get"): "checkout_sessions_retrieve",
    ("/api/v1/checkout_sessions/{public_id}/expire", "post"): "checkout_sessions_expire",
    ("/api/v1/payments", "get"): "payments_list",
    ("/api/v1/payments/{public_id}", "get"): "payments_retrieve",
    ("/api/v1/refunds", "get"): "refunds_list",
    ("/api/v1/refunds", "post"): "refunds_create",
    ("/api/v1/refunds/{public_id}", "get"): "refunds_retrieve",
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_every_endpoint_is_described(schema):
    for (path, method), operation_id in OPERATIONS.items():
        assert path in schema["paths"], path
        assert schema["paths"][path][method]["operationId"] == operation_id


def test_posts_document_the_idempotency_key_header_and_their_conflicts(schema):
    for (path, method), _ in OPERATIONS.items():
        params = {(p["in"], p["name"]) for p in schema["paths"][path][method].get("parameters", [])}
        if method == "post":
            assert ("header", "Idempotency-Key") in params, path
            assert "409" in schema["paths"][path][method]["responses"]
        else:
            assert ("header", "Idempotency-Key") not in params


def test_auth_schemes_and_errors_are_described(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiKey"]["description"],
    }
    assert schemes["verifiedSession"]["in"] == "cookie"
    create = schema["paths"]["/api/v1/refunds"]["post"]
    assert {"apiKey": []} in create["security"]
    assert create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    lists = schema["paths"]["/api/v1/payments"]["get"]
    assert {p["name"] for p in lists["parameters"]} >= {"limit", "starting_after", "ending_before", "status"}
    payment = schema["components"]["schemas"]["Payment"]["properties"]
    assert payment["amount"]["type"] == "integer" and "minor units" in payment["amount"]["description"]
    assert "Idempotency-Key" in schema["info"]["description"]

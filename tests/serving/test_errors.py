"""The scoring service's errors over HTTP, each in the one shape both services answer
(bentos/errors.py), with its code; the OpenAPI document describes that shape."""

from __future__ import annotations

from tests.serving.conftest import error_of


def test_every_error_has_the_one_shape(server) -> None:
    with server.client() as http:
        invalid = error_of(http.post("/churn", json={"customer_ids": "c1"}), 400)
        assert invalid["code"] == "invalid_request" and invalid["detail"], invalid
        unknown_feature = error_of(
            http.post("/score", json={"model": "churn", "rows": [{"shoe_size": 1}]}), 400
        )
        assert "shoe_size is not an input" in str(unknown_feature["detail"])
        assert error_of(http.post("/churn", content=b"{not json"), 400)["code"]
        assert error_of(http.post("/nowhere", json={}), 404)["code"] == "not_found"
        assert error_of(http.get("/churn"), 405)["code"] == "method_not_allowed"
        big = b'{"customer_ids": ["' + b"x" * 3_000_000 + b'"]}'
        assert error_of(http.post("/churn", content=big), 413)["code"] == "too_large"


def test_the_openapi_document_names_the_error_shape(server) -> None:
    with server.client() as http:
        spec = http.get("/docs.json").json()
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    responses = spec["paths"]["/churn"]["post"]["responses"]
    for status in ("400", "401", "413", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}

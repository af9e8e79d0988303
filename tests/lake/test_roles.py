"""API keys with roles on the real read API: every endpoint with no key, a wrong key and each
role; the admin audit log; the keys file reloaded without a restart, and a broken one."""

from __future__ import annotations

import json
import time

from tests.lake.conftest import API_KEY, FIRST_DAY

ANALYST = {
    "/kpis": {"window": "day", "first_day": FIRST_DAY, "last_day": FIRST_DAY},
    "/audit": {"lens": "summary"},
    "/sql": {"query": "SELECT 1 AS one"},
    "/tables": {},
    "/customer": {"customer_id": "cust-0000129"},
}
ADMIN = {
    "/admin/keys": {},
    "/admin/erase": {"customer_ids": ["never-a-customer-5x"], "reason": "roles test"},
}


def call(http, path: str, key: str | None):
    headers = {"X-API-Key": key} if key is not None else {}
    if path == "/report":
        return http.get("/report/", headers=headers)
    return http.post(path, json={**ANALYST, **ADMIN}[path], headers=headers)


def test_each_endpoint_with_each_role(reader, role_keys, lake_home) -> None:
    expected = {
        None: 401,
        "wrong-key": 401,
        "scorer": 403,
        "analyst": {"analyst": 200, "admin": 403},
        "admin": 200,
    }
    with reader.client(timeout=120) as http:
        for path in [*ANALYST, "/report", *ADMIN]:
            needs = "admin" if path in ADMIN else "analyst"
            for who, status in expected.items():
                if isinstance(status, dict):
                    status = status[needs]
                key = role_keys.get(who, who)
                if path == "/admin/erase" and status == 200:
                    continue  # once, below
                answer = call(http, path, key)
                assert answer.status_code == status, (path, who, answer.text[:300])
                if status == 403:
                    error = answer.json()["error"]
                    assert error["code"] == "forbidden"
                    assert f"needs the {needs} role" in error["message"], error
        erased = call(http, "/admin/erase", role_keys["admin"])
        assert erased.status_code == 200, erased.text
        receipt = erased.json()
        assert receipt["verified"] and not receipt["found"] and receipt["customers"] == 1
        listed = call(http, "/admin/keys", role_keys["admin"]).json()["keys"]
        assert {k["name"] for k in listed} >= {"scorer-key", "analyst-key", "admin-key"}
        assert role_keys["admin"] not in json.dumps(listed)
        # the single key of earlier versions is an admin key
        assert call(http, "/admin/keys", API_KEY).status_code == 200
    audit = [json.loads(line) for line in (lake_home / "audit" / "admin.jsonl").open()]
    assert {(a["who"], a["what"], a["status"]) for a in audit} >= {
        ("admin-key", "POST /admin/erase", 200),
        ("admin-key", "POST /admin/keys", 200),
        ("SCORING_API_KEY", "POST /admin/keys", 200),
    }
    assert all(a["at"] for a in audit)


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_keys_reload_without_restart_and_a_broken_file_keeps_the_last_good(
    reader, role_keys, lake_home
) -> None:
    from analytics_assets.lib import api_keys

    path = lake_home / "api_keys.json"
    original = path.read_text()
    try:
        with reader.client() as http:
            api_keys.revoke(path, "analyst-key")
            wait_for(lambda: call(http, "/tables", role_keys["analyst"]).status_code == 401)
            added = api_keys.add(path, "late-analyst", ["analyst"])
            wait_for(lambda: call(http, "/tables", added).status_code == 200)
            path.write_text("{not json")
            wait_for(lambda: "api_keys" in http.get("/readyz").text)
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert "last good keys are in force" in ready.json()["detail"]["api_keys"]
            assert call(http, "/tables", added).status_code == 200  # the last good keys
            assert "keys file not reloaded" in reader.output()
    finally:
        path.write_text(original)

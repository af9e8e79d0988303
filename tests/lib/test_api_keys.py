"""The keys file: keys stored hashed, roles checked, reloads, a broken file, the legacy key."""

from __future__ import annotations

import json
import os

import pytest

from analytics_assets.lib import api_keys


def test_keys_are_stored_hashed_with_their_roles(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key = api_keys.add(path, "dash", ["analyst"])
    stored = path.read_text()
    assert key not in stored and api_keys.digest(key) in stored
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    (found,) = api_keys.load(path).values()
    assert found.name == "dash" and found.may("analyst") and not found.may("scorer")
    with pytest.raises(api_keys.KeyFileError, match="exists"):
        api_keys.add(path, "dash", ["admin"])
    with pytest.raises(api_keys.KeyFileError, match="roles"):
        api_keys.add(path, "other", ["superuser"])
    api_keys.revoke(path, "dash")
    assert api_keys.load(path) == {}
    with pytest.raises(api_keys.KeyFileError, match="no key named"):
        api_keys.revoke(path, "dash")


def test_admin_may_do_everything() -> None:
    admin = api_keys.Key("ops", "0" * 64, ("admin",))
    assert all(admin.may(role) for role in api_keys.ROLES)
    scorer = api_keys.Key("app", "0" * 64, ("scorer",))
    assert scorer.may("scorer") and not scorer.may("admin")


def test_the_ring_reloads_and_keeps_the_last_good_keys(tmp_path) -> None:
    path = tmp_path / "keys.json"
    first = api_keys.add(path, "a", ["scorer"])
    ring = api_keys.KeyRing(path, legacy="old-single-key", check_every_s=0)
    assert ring.enabled and ring.find(first.encode()).name == "a"
    legacy = ring.find(b"old-single-key")
    assert legacy.name == api_keys.LEGACY_NAME and legacy.may("analyst")
    assert ring.find(b"nope") is None
    second = api_keys.add(path, "b", ["analyst"])
    assert ring.find(second.encode()).name == "b"  # reloaded: no restart
    path.write_text("{broken")
    assert ring.find(second.encode()).name == "b" and "last good keys" in ring.error
    path.write_text(json.dumps({"keys": [{"name": "c", "sha256": "xyz", "roles": ["admin"]}]}))
    ring.refresh(force=True)
    assert "not a SHA-256" in ring.error and ring.find(first.encode()).name == "a"


def test_no_keys_means_no_authentication(tmp_path) -> None:
    assert not api_keys.KeyRing(tmp_path / "none.json").enabled
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    ring = api_keys.KeyRing(broken)
    assert ring.enabled and ring.find(b"anything") is None  # a broken file fails closed

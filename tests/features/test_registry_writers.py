"""The Feast registry used by several processes at once: two writers applying the repo while a
third process reads it. With the default registry (SQL on SQLite) no read fails; Feast's file
registry, rewritten in place, showed readers an empty registry here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from analytics_assets import settings

CLIENT = textwrap.dedent(
    """
    import sys
    from analytics_assets import settings
    from analytics_assets.lib.feast_repo import apply, open_store

    role, times = sys.argv[1], int(sys.argv[2])
    errors = 0
    for _ in range(times):
        try:
            store = open_store(settings.feature_repo_path())
            if role == "write":
                apply(store, settings.feature_repo_path())
            else:
                assert store.list_feature_views(), "the registry had no feature views"
                store.get_feature_service("churn_v1")
        except Exception as error:
            errors += 1
            print(role, type(error).__name__, error, file=sys.stderr)
    print("errors", errors)
    """
)


def _start(role: str, times: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, role, str(times)],
        cwd=settings.REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_writers_and_a_reader(analytics_home) -> None:
    first = _start("write", 1)
    assert first.communicate(timeout=120)[0].splitlines()[-1] == "errors 0"
    clients = [_start("write", 4), _start("write", 4), _start("read", 30)]
    outputs = [client.communicate(timeout=300) for client in clients]
    ends = [out.splitlines()[-1] for out, _ in outputs]
    assert ends == ["errors 0"] * 3, [e for _, e in outputs]
    assert (settings.analytics_home() / "feast" / "registry.sqlite").exists()

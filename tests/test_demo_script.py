"""``make demo`` finds and stops what an earlier demo left running (it was killed before it
could clean up), and says so; Ctrl-C stops everything it started, also with its output piped
into ``tee``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import demo  # noqa: E402 (scripts/ is not a package)


def test_leftovers_of_an_earlier_demo_are_stopped(tmp_path, capsys) -> None:
    import psutil

    # a process group whose leader is gone and whose member is nobody's child here, like the
    # dagster dev of a demo that was killed
    shell = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(300)' & echo $!"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    member = int(shell.stdout.readline())
    shell.wait()
    (tmp_path / demo.PIDS_FILE).write_text(f"{shell.pid}\n")
    demo.stop_leftovers(tmp_path)
    assert not demo.group_members(shell.pid)  # a zombie waiting for init to reap it is gone
    with contextlib.suppress(ProcessLookupError):
        os.kill(member, 0)
        assert psutil.Process(member).status() == psutil.STATUS_ZOMBIE
    assert f"process group {shell.pid}" in capsys.readouterr().out
    assert not (tmp_path / demo.PIDS_FILE).exists()


def test_a_second_signal_during_clean_up_is_ignored() -> None:
    """The clean-up path ignores SIGINT and SIGTERM: a second Ctrl-C cannot cut it short."""
    script = (
        "import os, signal, sys, time\n"
        f"sys.path.insert(0, {str(Path(demo.__file__).parent)!r})\n"
        "import demo\n"
        "demo._ignore_signals()\n"
        "os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.2); print('cleaned up')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "cleaned up" in done.stdout, done.stderr


def test_the_tour_links_to_assets_of_the_code_location() -> None:
    """The demo's closing tour (and the README's) names assets that exist, each with its page."""
    import dagster as dg

    from analytics_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    groups = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()})
    text = demo.tour("http://127.0.0.1:3000", None, groups, "http://127.0.0.1:5123")
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    # the lineage with every group open (Dagster's UI folds each into a box by default)
    lineage = demo.lineage_url("http://127.0.0.1:3000", groups)
    assert lineage in text and "/asset-groups?expanded=" in lineage
    assert all(f"global%40global%3A{g}" in lineage for g in groups), lineage
    assert "http://127.0.0.1:5123" in text and ":5000" not in text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for asset in demo.TOUR_ASSETS:
        assert asset in keys
        assert f"http://127.0.0.1:3000/assets/{asset}" in text
        assert f"`{asset}`" in readme
    assert "make mlflow-ui" in text
    assert dg.AssetKey("customer_base_audit") in defs.resolve_asset_graph().get_all_asset_keys()


@pytest.mark.e2e
def test_ctrl_c_with_the_output_piped_stops_everything(tmp_path) -> None:
    """``make demo 2>&1 | tee demo.log``, then Ctrl-C (SIGINT to the whole foreground group:
    make, uv, the demo and tee) while Dagster runs: every process it started (the Celery
    worker and its redis-server included) is gone and the ports are free within 30 s, though tee
    went first and the demo's output has no reader."""
    import psutil

    from analytics_assets.testing.servers import free_port

    ports = {"DAGSTER_PORT": free_port(), "SERVING_PORT": free_port(), "READ_API_PORT": free_port()}
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "ANALYTICS_HOME": str(tmp_path / "analytics"),
        "DAGSTER_HOME": "",
        "DEMO_CUSTOMERS": "20",
        "DEMO_DAYS": "3",
        "DEMO_CDNOW_PERIOD_DAYS": "400",
    }
    log = tmp_path / "demo.log"
    group = subprocess.Popen(
        ["bash", "-c", f"make demo 2>&1 | tee {log}"],
        cwd=Path(demo.REPO),
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's foreground process group
    )
    url = f"http://127.0.0.1:{ports['DAGSTER_PORT']}/server_info"
    started: list[psutil.Process] = []
    try:
        for _ in range(1200):  # make env, the seed, then dagster dev (minutes when loaded)
            if demo.answers(url) or group.poll() is not None:
                break
            time.sleep(0.5)
        assert demo.answers(url), log.read_text()[-3000:]
        # the daemon's first launch (the seeded files) starts the embedded broker and worker:
        # Ctrl-C must stop them too
        worker = tmp_path / "analytics" / "dagster_home" / "celery" / "worker.json"
        for _ in range(480):
            if worker.exists():
                break
            time.sleep(0.5)
        assert worker.exists(), log.read_text()[-3000:]
        time.sleep(2)  # the worker process itself, not only its record
        started = psutil.Process(group.pid).children(recursive=True)
        assert any("dagster" in " ".join(p.cmdline()) for p in started)
        assert any("celery_worker" in " ".join(p.cmdline()) for p in started)
        assert any("redis-server" in " ".join(p.cmdline()) for p in started)
        os.killpg(group.pid, signal.SIGINT)
        _, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        assert all(demo.port_holder(port) is None for port in ports.values())
    finally:  # whatever a failing demo left, so that the next tests find free cores
        for proc in [*started, *psutil.Process().children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                proc.kill()

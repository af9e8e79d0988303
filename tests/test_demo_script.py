"""``make demo`` finds and stops what an earlier demo left running (it was killed before it
could clean up), and says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import demo  # noqa: E402 (scripts/ is not a package)


def test_leftovers_of_an_earlier_demo_are_stopped(tmp_path, capsys) -> None:
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
    started = time.monotonic()
    demo.stop_leftovers(tmp_path)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(member, 0)
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

    text = demo.tour("http://127.0.0.1:3000", None)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for asset in demo.TOUR_ASSETS:
        assert asset in keys
        assert f"http://127.0.0.1:3000/assets/{asset}" in text
        assert f"`{asset}`" in readme
    assert "make mlflow-ui" in text
    assert dg.AssetKey("customer_base_audit") in defs.resolve_asset_graph().get_all_asset_keys()

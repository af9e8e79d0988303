"""The alerts file survives torn lines and is rotated; alerts are recorded once per id."""

from __future__ import annotations

from analytics_assets.lib import alerts


def test_a_torn_line_does_not_stop_later_alerts(tmp_path) -> None:
    path = tmp_path / "alerts" / "run_failures.jsonl"
    assert alerts.record(path, {"run_id": "r1", "job_name": "j", "message": "m"})
    with path.open("a") as handle:
        handle.write('{"run_id": "r2", "job_na')  # a crash mid-write
    assert alerts.record(path, {"run_id": "r3", "job_name": "j", "message": "m"})
    assert not alerts.record(path, {"run_id": "r3", "job_name": "j", "message": "again"})
    assert [a["run_id"] for a in alerts.read(path)] == ["r1", "r3"]


def test_the_file_is_rotated(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(alerts, "MAX_BYTES", 200)
    path = tmp_path / "run_failures.jsonl"
    for n in range(20):
        alerts.record(path, {"alert_id": f"a{n}", "run_id": "", "message": "x" * 50})
    assert path.stat().st_size < 400
    assert path.with_name("run_failures.jsonl.1").exists()
    assert not path.with_name(f"run_failures.jsonl.{alerts.KEEP + 1}").exists()

from pathlib import Path

from click.testing import CliRunner

from analytics_assets import settings
from analytics_assets.cli import main


def test_simulate_writes_batches(analytics_home) -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--customers", "50", "--days", "10", "--events-per-batch", "500"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in settings.landing_dir().iterdir())
    assert files and all(f.startswith("sim-7-") and f.endswith(".jsonl") for f in files)


def test_replay_cdnow_parquet(analytics_home) -> None:
    result = CliRunner().invoke(main, ["replay", "cdnow", "--sample", "--format", "parquet"])
    assert result.exit_code == 0, result.output
    assert "6,919 purchases of 2,357 customers" in result.output
    assert len(list(settings.landing_dir().glob("cdnow-sample-*.parquet"))) == 78


def test_bad_option_is_a_clear_error(analytics_home) -> None:
    result = CliRunner().invoke(main, ["simulate", "--customers", "0"])
    assert result.exit_code == 2
    assert "--customers" in result.output


def test_feast_env_points_the_cli_at_the_code_locations_stores(analytics_home, monkeypatch) -> None:
    import shlex

    import yaml

    monkeypatch.setenv("FEAST_ONLINE_STORE", '{type: redis, connection_string: "127.0.0.1:6379"}')
    monkeypatch.delenv("FEAST_REGISTRY_PATH", raising=False)
    monkeypatch.delenv("FEAST_REGISTRY_TYPE", raising=False)
    result = CliRunner().invoke(main, ["feast-env"])
    assert result.exit_code == 0, result.output
    name, value = shlex.split(result.output.strip().removeprefix("export "))[0].split("=", 1)
    assert name == "FEAST_FS_YAML_FILE_PATH"
    config = yaml.safe_load(Path(value).read_text())
    registry = analytics_home / "feast" / "registry.sqlite"
    assert config["registry"]["path"] == f"sqlite:///{registry}"
    assert config["registry"]["registry_type"] == "sql"
    assert config["online_store"] == {"type": "redis", "connection_string": "127.0.0.1:6379"}
    assert config["project"] == "customer_analytics"


def test_simulate_declares_its_experiments(analytics_home) -> None:
    from analytics_assets.lib import experiments

    args = ["simulate", "--customers", "80", "--days", "30", "--start", "2024-03-01"]
    result = CliRunner().invoke(main, [*args, "--experiment", "green=0.2", "--experiment", "aa=0"])
    assert result.exit_code == 0, result.output
    declared = experiments.load(settings.experiments_file())
    assert set(declared.valid) == {"green", "aa"} and not declared.invalid
    assert declared.valid["green"].start.isoformat() == "2024-03-11"
    assert "+20.0%" in declared.valid["green"].description
    text = b"".join(p.read_bytes() for p in settings.landing_dir().iterdir())
    assert b"experiment_exposure" in text
    bad = CliRunner().invoke(main, [*args, "--experiment", "green"])
    assert bad.exit_code == 2 and "NAME=EFFECT" in bad.output

"""The ``analytics`` command: producers that feed the landing zone."""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from pathlib import Path

import click

from analytics_assets import settings

_FORMAT = click.Choice(["jsonl", "parquet"])
_TO = click.Choice(["landing", "kafka"])


def _emitter(to: str, topic: str | None, landing: Path | None, fmt: str):
    """Where batches go: ``emit(batch_id, frame)``, and a description of the target."""
    if to == "kafka":
        from analytics_assets.lib import kafka_source
        from analytics_assets.producers.kafka import send_batch

        bootstrap = settings.kafka_bootstrap()
        if bootstrap is None:
            raise click.UsageError("--to kafka needs KAFKA_BOOTSTRAP_SERVERS")
        name = topic or next(iter(settings.kafka_topics()), None)
        if name is None:
            raise click.UsageError("--to kafka needs --topic (or KAFKA_TOPICS)")
        config = kafka_source.client_config(bootstrap, settings.kafka_client_config())
        return (lambda _batch_id, part: send_batch(part, name, config)), f"topic {name}"
    from analytics_assets.producers.files import write_batch

    target = _landing(landing)
    return (lambda batch_id, part: write_batch(part, target, batch_id, fmt)), str(target)


def _landing(path: Path | None) -> Path:
    target = path or settings.landing_dir()
    target.mkdir(parents=True, exist_ok=True)
    return target


@click.group()
def main() -> None:
    """Customer event analytics platform: produce events into the landing zone, query the
    lakehouse, restore it to a moment, back it up, erase customers, manage API keys."""


@main.command("simulate")
@click.option("--customers", type=click.IntRange(min=1), default=1_000, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True)
@click.option("--events-per-batch", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Events per second to release batches at; default: as fast as possible.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="First simulated day (UTC); default: DAYS before today.",
)
@click.option(
    "--continue-calendar",
    is_flag=True,
    help="Add to the calendar this home's events already hold: the simulated days are its "
    "last DAYS days, the customers new ones (ids after its simulated customers'), so no "
    "existing customer's history or as-of day moves.",
)
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    metavar="NAME=EFFECT[,EFFECT...]",
    help="An A/B test with a known true effect per treatment (the relative change of a "
    "session's purchase probability): green_button=0.1; aa_check=0 for an A/A test; "
    "price=0.05,-0.05 for two treatments. Repeat for more; each is declared in "
    "experiments.yaml.",
)
@click.option("--format", "fmt", type=_FORMAT, default="jsonl", show_default=True)
@click.option("--landing", type=click.Path(path_type=Path), default=None, help="Landing folder.")
@click.option("--to", "to", type=_TO, default="landing", show_default=True)
@click.option(
    "--topic", default=None, help="Kafka topic (--to kafka); default: KAFKA_TOPICS' first."
)
def simulate_command(
    customers: int,
    days: int,
    events_per_batch: int,
    rate: float | None,
    seed: int,
    start: datetime | None,
    continue_calendar: bool,
    experiments: tuple[str, ...],
    fmt: str,
    landing: Path | None,
    to: str,
    topic: str | None,
) -> None:
    """Write a seeded synthetic clickstream as micro-batch files (or records of a Kafka topic).

    Without --start, a home whose events lie on another calendar (the demo's are 1997-98) gets
    nothing written but a warning: pass --continue-calendar to add to its calendar, or --start
    to choose the days."""
    from tqdm import tqdm

    from analytics_assets.producers import simulate

    config = _simulation(customers, days, seed, start, continue_calendar)
    if experiments:
        from dataclasses import replace

        try:
            parsed = tuple(simulate.SimulatedExperiment.parse(e) for e in experiments)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--experiment") from None
        config = replace(config, experiments=parsed)
        _declare(config)
    emit, target = _emitter(to, topic, landing, fmt)
    events = simulate.simulate_events(config)
    files = 0
    with tqdm(total=events.height, unit="ev", unit_scale=True, desc="simulate") as bar:
        for batch_id, part in simulate.batches(events, events_per_batch, config):
            began = time.monotonic()
            emit(batch_id, part)
            files += 1
            bar.update(part.height)
            if rate:
                time.sleep(max(0.0, part.height / rate - (time.monotonic() - began)))
    click.echo(
        f"{events.height:,} events from {customers:,} customers in {files} batches -> {target}"
    )


def _declare(config) -> None:
    """Declare the simulation's experiments in ``experiments.yaml`` (their true effects in the
    description), so the experiments assets analyse them."""
    from datetime import timedelta

    from analytics_assets import settings
    from analytics_assets.lib import experiments

    declared = []
    for e in config.experiments:
        offset = int(config.days * e.start_fraction)
        effects = ", ".join(f"{v} {x:+.1%}" for v, x in zip(e.variants[1:], e.effects, strict=True))
        declared.append(
            experiments.Declaration(
                name=e.name,
                variants=dict.fromkeys(e.variants, 1.0),
                control="control",
                start=(config.window_start() + timedelta(days=offset)).date(),
                horizon_days=max(1, config.days - offset),
                planned_customers=max(10, config.customers),
                description=f"simulated ({config.name}): per-session purchase probability "
                f"{effects}",
            )
        )
    experiments.save(settings.experiments_file(), declared)
    names = ", ".join(e.name for e in declared)
    click.echo(f"Declared {names} in {settings.experiments_file()}", err=True)


def _simulation(
    customers: int, days: int, seed: int, start: datetime | None, continue_calendar: bool
):
    """The simulation to run, placed on the home's calendar where it must be."""
    from dataclasses import replace

    from analytics_assets.producers import simulate
    from analytics_assets.producers.calendar import home_calendar

    if start is not None and continue_calendar:
        raise click.UsageError("--start and --continue-calendar choose the days both: pass one")
    config = simulate.SimulationConfig(customers=customers, days=days, seed=seed, start=start)
    if start is not None:
        return config
    calendar = home_calendar()
    if continue_calendar:
        if calendar is None:
            raise click.UsageError(
                "--continue-calendar: this home holds no events yet (ingest some first, or "
                "leave the flag out)"
            )
        first = datetime.combine(calendar.last_days(days), datetime.min.time())
        config = replace(config, start=first, first_customer=calendar.simulated_customers)
        click.echo(
            f"On this home's calendar: {first:%Y-%m-%d} .. {calendar.last_day} "
            f"(customers from {config.first_customer})",
            err=True,
        )
        return config
    first_day = config.window_start().date()
    if calendar is not None and not calendar.holds(first_day, days):
        click.echo(
            f"Warning: this home's events are dated {calendar.first_day} .. "
            f"{calendar.last_day}; {days} days from {first_day} would sit beside them on "
            "another calendar (every customer would look churned, KPIs and the audit would "
            "jump years). Nothing written. Pass --continue-calendar to add new customers on "
            "the home's last days, or --start YYYY-MM-DD to choose the days.",
            err=True,
        )
        raise SystemExit(1)
    return config


@main.group("replay")
def replay() -> None:
    """Replay a real data set as events."""


@replay.command("cdnow")
@click.option("--period-days", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--sample", is_flag=True, help="Replay the 2,357-customer sample instead.")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Files per second."
)
@click.option("--format", "fmt", type=_FORMAT, default="jsonl", show_default=True)
@click.option("--landing", type=click.Path(path_type=Path), default=None, help="Landing folder.")
@click.option("--to", "to", type=_TO, default="landing", show_default=True)
@click.option(
    "--topic", default=None, help="Kafka topic (--to kafka); default: KAFKA_TOPICS' first."
)
def replay_cdnow(
    period_days: int,
    sample: bool,
    rate: float | None,
    fmt: str,
    landing: Path | None,
    to: str,
    topic: str | None,
) -> None:
    """Replay the CDNOW transaction log (1997-98) as purchase events, one file (or one burst
    of Kafka records) per period."""
    from tqdm import tqdm

    from analytics_assets.producers import cdnow

    emit, target = _emitter(to, topic, landing, fmt)
    source = cdnow.dataset_path(cdnow.SAMPLE if sample else cdnow.MASTER)
    events = cdnow.to_events(cdnow.read_transactions(source))
    prefix = "cdnow-sample" if sample else "cdnow"
    parts = list(cdnow.batches(events, period_days, prefix=prefix))
    for batch_id, part in tqdm(parts, unit="batch", desc="replay cdnow"):
        emit(batch_id, part)
        if rate:
            time.sleep(1.0 / rate)
    customers = events["customer_id"].n_unique()
    click.echo(
        f"{events.height:,} purchases of {customers:,} customers in {len(parts)} batches -> "
        f"{target}"
    )


@main.command("sql")
@click.argument("query", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How to print the result of QUERY.",
)
@click.option("--max-rows", type=click.IntRange(min=1), default=100, show_default=True)
def sql(query: str | None, fmt: str, max_rows: int) -> None:
    """Query the lakehouse with DuckDB while the platform runs: QUERY's result, or with no
    QUERY an interactive DuckDB shell on it. Both attach the lakehouse read-only: no lock, no
    copy, one snapshot per query. Tables: events, quarantined_events, sessions, customer_daily,
    kpis_hourly, kpis_daily, audit_*, ingest_ledger, kafka_ledger, predictions. Any table as it
    was: ... FROM events AT (TIMESTAMP => TIMESTAMPTZ '2026-12-06 10:00:00+00'), or
    AT (VERSION => n) (snapshot ids: SELECT * FROM lake.snapshots())."""
    from analytics_assets.lib import lake

    if query is None:
        _shell(lake)
        return
    import duckdb

    conn = lake.connect(settings.predictions_dir())
    try:
        result = conn.sql(query)
    except duckdb.Error as exc:
        raise click.ClickException(str(exc)) from exc
    if result is None:
        return
    if fmt == "table":
        result.show(max_rows=max_rows, max_width=200)
        return
    columns, rows = result.columns, result.fetchall()
    if fmt == "json":
        import json

        click.echo(json.dumps([dict(zip(columns, map(lake.plain, r), strict=True)) for r in rows]))
        return
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([lake.plain(v) for v in r] for r in rows)


def _shell(lake) -> None:
    """Replace this process with the DuckDB shell (the ``duckdb-cli`` package, the same DuckDB
    version) with the lakehouse attached read-only."""
    import os
    import shutil
    import sys

    lake.ensure_exists()
    here = Path(sys.executable).parent / "duckdb"
    binary = str(here) if here.exists() else shutil.which("duckdb")
    if binary is None:
        raise click.ClickException("no duckdb shell found: install the duckdb-cli package")
    commands = [arg for statement in lake.shell_commands() for arg in ("-cmd", statement + ";")]
    os.execv(binary, [binary, *commands])


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: not an ISO time (2026-12-06T10:00:00+00:00)") from exc
    from datetime import UTC

    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


@main.command("restore")
@click.option("--as-of", "as_of", help="An ISO instant (UTC when no zone is given).")
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder `analytics backup` wrote; the lakehouse must be empty.",
)
def restore_command(as_of: str | None, source: Path | None) -> None:
    """Bring every lakehouse table back to what it held at --as-of (one new snapshot: the
    restore can be undone by restoring to the moment before it), or load a backup (--from) into
    this home's empty lakehouse. After --as-of, the days the undone batches touched are
    rebuilt by the next analytics runs, and the online store is rewritten from the restored
    snapshots (online_features)."""
    from analytics_assets.lib import faults, lakehouse, restore

    if (as_of is None) == (source is None):
        raise click.UsageError("pass one of --as-of TIMESTAMP or --from BACKUP_FOLDER")
    started = time.perf_counter()
    with lakehouse.connect() as conn:
        try:
            if source is not None:
                manifest = restore.restore_backup(conn, source, log=click.echo)
                rows = sum(manifest["tables"].values())
                click.echo(
                    f"restored the backup of snapshot {manifest['snapshot']} "
                    f"({manifest['snapshot_time']}): {len(manifest['tables'])} tables, "
                    f"{rows:,} rows in {time.perf_counter() - started:.1f}s"
                )
                _say_suppressed(manifest["suppressed"])
                return
            done = restore.restore_to(conn, _instant(as_of), log=click.echo)
        except restore.RestoreError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            f"restored {len(done.tables)} tables to {done.as_of.isoformat()} (snapshot "
            f"{done.snapshot}) as snapshot {done.new_snapshot} in "
            f"{time.perf_counter() - started:.1f}s; dropped since: {', '.join(done.dropped) or '-'}"
        )
        for name, rows in done.tables.items():
            click.echo(f"  {name:32} {rows:>12,}")
        _say_suppressed(done.suppressed)
        faults.point(faults.RESTORE_AFTER_COMMIT)
        click.echo(_announce_restores(conn))


def _say_suppressed(suppressed: dict[str, int]) -> None:
    if suppressed:
        click.echo(
            "erased customers kept out: "
            + ", ".join(f"{table} {rows:,} rows" for table, rows in suppressed.items())
        )


def _announce_restores(conn) -> str:
    """Tell Dagster of every restore not yet announced (this one, and one killed after its
    commit): an ``events`` materialization with the undone batches' days (the events_sensor
    rebuilds them), shown in the asset's history. The online store follows on its own
    (online_features compares the last restore with its last write)."""
    import dagster as dg

    from analytics_assets.lib import restore

    home = settings.dagster_home()
    if not (home / "dagster.yaml").exists():
        return f"no Dagster instance at {home}: nothing to rebuild there"
    pending = restore.unannounced(conn)
    days = set()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for done in pending:
            days.update(done["days_undone"] or [])
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "events",
                    description=f"lakehouse restored to {done['as_of'].isoformat()}",
                    metadata={
                        "restored_to": done["as_of"].isoformat(),
                        "restored_at": done["restored_at"].isoformat(),
                        "from_snapshot": done["from_snapshot"],
                        "days_touched": [d.isoformat() for d in done["days_undone"] or []],
                        "tables": list(done["tables"] or []),
                    },
                )
            )
    restore.mark_announced(conn, [done["restored_at"] for done in pending])
    return (
        f"reported {len(pending)} restore(s) to Dagster ({home}): {len(days)} days to rebuild; "
        "online_features rewrites the online store on its next run"
    )


@main.command("backup")
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
def backup_command(destination: Path) -> None:
    """Write every lakehouse table, as of the current snapshot, to DESTINATION (a new or
    empty folder) as Parquet with a manifest; runs keep committing meanwhile. Load it into
    another home with `analytics restore --from DESTINATION`."""
    from analytics_assets.lib import lakehouse, restore

    started = time.perf_counter()
    with lakehouse.connect(read_only=True) as conn:
        try:
            manifest = restore.backup(conn, destination)
        except restore.RestoreError as exc:
            raise click.ClickException(str(exc)) from exc
    rows = sum(manifest["tables"].values())
    click.echo(
        f"backed up snapshot {manifest['snapshot']} ({manifest['snapshot_time']}): "
        f"{len(manifest['tables'])} tables, {rows:,} rows to {destination} in "
        f"{time.perf_counter() - started:.1f}s"
    )


@main.command("paths")
def paths() -> None:
    """Print where the platform keeps its state."""
    for name, value in (
        ("ANALYTICS_HOME", settings.analytics_home()),
        ("landing", settings.landing_dir()),
        ("quarantine", settings.quarantine_dir()),
        ("lakehouse", settings.lakehouse_catalog()),
        ("lakehouse data", settings.lakehouse_data()),
        ("DAGSTER_HOME", settings.dagster_home()),
        ("feature repo", settings.feature_repo_path()),
        ("snapshots", settings.feature_snapshots_dir()),
        ("training set", settings.training_set_path()),
    ):
        click.echo(f"{name:15} {value}")


@main.command("dagster-home")
def dagster_home_command() -> None:
    """Write $DAGSTER_HOME/dagster.yaml (the repo's dagster.yaml, with PostgreSQL storage when
    DAGSTER_POSTGRES_URL is set) and create the instance's storage once, before Dagster's
    processes start (repairing a home that several processes created at once)."""
    import logging

    from analytics_assets.instance import prepare_instance

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        path = prepare_instance()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    storage = "PostgreSQL ($DAGSTER_POSTGRES_URL)" if "storage" in path.read_text() else "SQLite"
    click.echo(f"{path}: {storage} storage")


@main.command("worker")
@click.option("--broker", help="Celery broker URL (default: $ANALYTICS_CELERY_BROKER).")
@click.option(
    "--backend", help="Result backend URL (default: $ANALYTICS_CELERY_BACKEND or the broker)."
)
@click.option("--name", help="Node name prefix (default: runs); the pid and host name follow.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Runs at once (default 4).")
@click.option("--queues", help="Comma-separated queues (default: $ANALYTICS_CELERY_QUEUES).")
def worker_command(
    broker: str | None,
    backend: str | None,
    name: str | None,
    concurrency: int | None,
    queues: str | None,
) -> None:
    """Execute Dagster runs from the Celery broker on this host (Ctrl-C: finish the runs in
    progress, then stop). The embedded default needs none: the daemon starts its own."""
    from analytics_assets.celery_worker import BROKER_SETTING, run_worker

    broker = broker or settings.celery_broker()
    if not broker:
        raise click.UsageError(f"no broker: pass --broker or set {BROKER_SETTING}")
    run_worker(
        broker,
        backend or settings.celery_backend(),
        name=name,
        concurrency=concurrency,
        queues=queues.split(",") if queues else None,
    )


@main.command("feast-env")
def feast_env() -> None:
    """Point the feast CLI at the stores the code location uses, when they are not the
    defaults feature_store.yaml names: eval "$(uv run analytics feast-env)"; cd feature_repo;
    feast plan. Writes <home>/feast/feature_store.yaml and exports FEAST_FS_YAML_FILE_PATH."""
    from analytics_assets.lib.feast_repo import write_cli_config

    settings.ensure_dirs()
    path = write_cli_config(settings.feature_repo_path())
    click.echo(f"export FEAST_FS_YAML_FILE_PATH={shlex.quote(str(path))}")


def _register() -> None:
    from analytics_assets.export_cli import export
    from analytics_assets.privacy_cli import api_key, erase_customer

    main.add_command(export)
    main.add_command(erase_customer)
    main.add_command(api_key)


_register()

if __name__ == "__main__":
    main()

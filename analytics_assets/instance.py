"""The Dagster instance: ``$DAGSTER_HOME/dagster.yaml`` (the repo's file, plus PostgreSQL
storage when ``$DAGSTER_POSTGRES_URL`` is set) and its storage, made ready once.

The URL itself is never written: the storage block names the variable, which Dagster reads
when the webserver, the daemon and each run process start.

Whatever starts Dagster's processes on a new home (``make demo``, the tests' and benchmarks'
helpers) calls :func:`prepare_instance` first: on SQLite, several processes creating the
storage at once (the webserver, the daemon, the code server, a run) each see no tables, each
create them and stamp Alembic's version, and ``schedules.db`` or ``runs.db`` ends with two
version rows; from then on every process fails with "Version table 'alembic_version' has more
than one head present" and nothing runs. Created once, here, before the others, that cannot
happen; a home broken that way earlier is repaired (the tables are the current schema, so the
stray older row goes), or the error says what to do.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import yaml

from analytics_assets import settings

logger = logging.getLogger(__name__)

POSTGRES_URL_ENV = "DAGSTER_POSTGRES_URL"
# runs, event logs and schedules in one PostgreSQL database (dagster-postgres)
POSTGRES_STORAGE = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
SQLITE_STORAGE_FILES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
"""Dagster's SQLite storages under DAGSTER_HOME that every process opens at start."""


def repo_config(base: Path | None = None) -> dict:
    """The repo's ``dagster.yaml`` as it is (tests and benchmarks change a block of it)."""
    return yaml.safe_load((base or settings.REPO_ROOT / "dagster.yaml").read_text()) or {}


def instance_config(base: Path | None = None) -> dict:
    """The instance configuration: ``dagster.yaml`` of the repo, with a ``storage`` block for
    PostgreSQL when ``$DAGSTER_POSTGRES_URL`` is set (else SQLite under ``DAGSTER_HOME``)."""
    config = repo_config(base)
    if os.environ.get(POSTGRES_URL_ENV):
        config["storage"] = POSTGRES_STORAGE
    return config


def write_instance(dagster_home: Path | None = None, config: dict | None = None) -> Path:
    """Write ``$DAGSTER_HOME/dagster.yaml`` (idempotent; ``config``: instead of
    :func:`instance_config`); returns its path."""
    home = dagster_home or settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    header = "# written by `analytics dagster-home` from the repo's dagster.yaml\n"
    text = yaml.safe_dump(instance_config() if config is None else config, sort_keys=False)
    path.write_text(header + text)
    return path


def prepare_instance(dagster_home: Path | None = None, config: dict | None = None) -> Path:
    """``dagster.yaml`` written, a broken SQLite storage repaired, and the storage created by
    this one process, before any other starts; returns the yaml's path."""
    import dagster as dg

    home = dagster_home or settings.dagster_home()
    path = write_instance(home, config)
    repair_sqlite_storage(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.get_latest_materialization_event(dg.AssetKey("events"))
    return path


def _alembic_head() -> str:
    """The newest revision of Dagster's storage schema (the one Alembic folder all its SQL
    storages share)."""
    import dagster
    from alembic.script import ScriptDirectory

    folder = Path(dagster.__file__).parent / "_core" / "storage" / "alembic"
    return ScriptDirectory(str(folder)).get_current_head()


def repair_sqlite_storage(dagster_home: Path) -> list[str]:
    """Repair storages whose ``alembic_version`` has several rows, from processes that created
    a new home at once: the tables are the current schema, so the head revision is kept and
    the others go. Returns what was repaired; raises with the fix if the head is not there."""
    repaired = []
    for name in SQLITE_STORAGE_FILES:
        database = dagster_home / name
        if not database.exists():
            continue
        with sqlite3.connect(database) as conn:
            try:
                versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
            except sqlite3.OperationalError:  # no version table yet: Dagster stamps it
                continue
            if len(versions) < 2:
                continue
            head = _alembic_head()
            if head not in versions:
                raise RuntimeError(
                    f"{database} records several schema versions ({', '.join(versions)}), none "
                    f"of them Dagster's current one ({head}): Dagster cannot open it. Stop "
                    f"Dagster, move {dagster_home} aside (its runs and sensor cursors go with "
                    "it) and run `analytics dagster-home` again."
                )
            conn.execute("DELETE FROM alembic_version WHERE version_num <> ?", (head,))
        logger.warning("%s: kept schema version %s of %s", database, head, versions)
        repaired.append(name)
    return repaired

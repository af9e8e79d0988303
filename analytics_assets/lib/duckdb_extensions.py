"""DuckDB's extensions for the lakehouse, loaded with no network.

DuckLake and its catalog back ends (SQLite, PostgreSQL) are DuckDB extensions. DuckDB signs the
binaries it publishes, and the PyPI wheels ``duckdb-extension-ducklake`` (``-sqlite``,
``-postgres``) carry exactly those signed binaries for one DuckDB version: this module puts
them into an extension directory under the names DuckDB looks for
(``<dir>/v<duckdb version>/<platform>/<name>.duckdb_extension``), so ``LOAD`` (and the
autoloading of ``ATTACH 'ducklake:...'``) finds them with the signature check on and nothing
downloaded. Where the wheels are missing (another DuckDB version, another platform) and a network
exists, ``INSTALL`` from DuckDB's repository is the other path: :func:`load` tries it last.

The directory is private to the virtual environment (``<venv>/duckdb_extensions``) unless
``$ANALYTICS_DUCKDB_EXTENSIONS`` names another; ``analytics sql``'s shell is pointed at it.

**Signature checks.** DuckDB verifies an extension's signature at every ``LOAD``: 0.15-0.29 s
per extension here (measured 2026-12-06: ducklake 0.16-0.29 s, sqlite 0.14-0.26 s; 0.3-0.4
CPU-s per process for the two), paid by every run process. The binaries loaded from the
private directory are links to the wheels' files, which uv checked against the hashes in
``uv.lock`` when it installed them, so the platform's connections load them without DuckDB's
second check (``allow_unsigned_extensions``: 2-3 ms). ``ANALYTICS_DUCKDB_VERIFY_EXTENSIONS=1``
(or any other directory) keeps DuckDB's check. No connection that runs other people's SQL
(the read API's sandbox) can ``LOAD`` anything: it refuses every statement but ``SELECT``.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from importlib import util
from pathlib import Path

import duckdb

EXTENSIONS = {
    # name DuckDB loads: the wheel's package and the binary's file name in it
    "ducklake": ("duckdb_extension_ducklake", "ducklake"),
    "sqlite_scanner": ("duckdb_extension_sqlite", "sqlite"),
    "postgres_scanner": ("duckdb_extension_postgres", "postgres"),
    "httpfs": ("duckdb_extension_httpfs", "httpfs"),
}


def private_directory() -> Path:
    """The virtual environment's own extension directory."""
    return Path(sys.prefix) / "duckdb_extensions"


def directory() -> Path:
    """The extension directory every connection of the platform uses."""
    configured = os.environ.get("ANALYTICS_DUCKDB_EXTENSIONS")
    return Path(configured).expanduser() if configured else private_directory()


def verify_signatures() -> bool:
    """Whether DuckDB checks the signatures at ``LOAD`` (see the module)."""
    if os.environ.get("ANALYTICS_DUCKDB_VERIFY_EXTENSIONS") in ("1", "true", "yes"):
        return True
    return directory() != private_directory()


def _version() -> str:
    return f"v{duckdb.__version__}"


@cache
def _platform() -> str:
    with duckdb.connect() as conn:
        return conn.execute("PRAGMA platform").fetchone()[0]


def wheel_binary(name: str) -> Path | None:
    """The signed binary an installed extension wheel carries for this DuckDB, if any."""
    package, stem = EXTENSIONS[name]
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    found = root / "extensions" / _version() / f"{stem}.duckdb_extension"
    return found if found.is_file() else None


def place(name: str, target: Path | None = None) -> Path | None:
    """Link the wheel's binary for ``name`` into the extension directory (replacing a link that
    points elsewhere, e.g. into an older virtual environment); the path placed, or ``None`` when
    no wheel carries it. A file DuckDB's ``INSTALL`` put there is left alone."""
    source = wheel_binary(name)
    if source is None:
        return None
    folder = (target or directory()) / _version() / _platform()
    path = folder / f"{name}.duckdb_extension"
    if path.is_symlink() and path.resolve() == source.resolve():
        return path
    if path.exists() and not path.is_symlink():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{os.getpid()}.link"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(source)
    os.replace(temporary, path)  # atomic: a process loading it at the same time sees one file
    return path


def prepare(names: tuple[str, ...] = ("ducklake", "sqlite_scanner", "postgres_scanner")) -> Path:
    """Place every wheel-carried extension of ``names`` in the extension directory (once per
    process and directory); the directory."""
    return _prepare_at(directory(), names)


@cache
def _prepare_at(target: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        place(name, target)
    return target


def config() -> dict[str, object]:
    """The connection settings that make DuckDB load the placed binaries and nothing else:
    no download behind the user's back (``load`` says how to install where it is wanted)."""
    return {
        "extension_directory": str(prepare()),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
        "allow_unsigned_extensions": not verify_signatures(),
    }


def load(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """``LOAD name``; where no wheel carries it and it is not installed, ``INSTALL`` it from
    DuckDB's repository first (needs a network), with a clear error if that fails too."""
    try:
        conn.execute(f"LOAD {name}")
        return
    except duckdb.Error as first:
        try:
            conn.execute(f"INSTALL {name}")
            conn.execute(f"LOAD {name}")
        except duckdb.Error as second:
            package = EXTENSIONS.get(name, (name,))[0].replace("_", "-")
            raise RuntimeError(
                f"DuckDB extension {name!r} cannot be loaded for DuckDB {duckdb.__version__} "
                f"({first}); installing it from DuckDB's repository failed too ({second}). "
                f"Install the wheel {package}=={duckdb.__version__} (uv sync does), or run "
                f"with a network once."
            ) from second

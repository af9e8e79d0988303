"""Safe SQL identifiers, shared by every domain (transactions: ``lib/lakehouse.py``)."""

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def identifier(name: str) -> str:
    """``name`` if it is safe to put into SQL as a table or column name; else ``ValueError``."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a safe table name or column name")
    return name

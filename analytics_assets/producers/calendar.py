"""The calendar a home already holds, so that new simulated events join it rather than land
decades away from it.

The demo's events are dated 1997-98 (CDNOW's calendar, and a simulation started on it): a
simulation dated this week beside them would read as 28 silent years, turning every customer
into a churned one and moving KPIs and the audit by decades. Read from the lake (what readers
read), never from the warehouse file, so it works while the platform runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

SIMULATED_PREFIX = "cust-"


@dataclass(frozen=True)
class HomeCalendar:
    first_day: date
    last_day: date
    simulated_customers: int
    """One more than the highest simulated customer number (``cust-0000042`` -> 43; 0: none),
    so that new simulated customers never take an existing customer's id."""

    def holds(self, first: date, days: int) -> bool:
        """Whether the window of ``days`` days from ``first`` touches this calendar (or starts
        the day after it ends)."""
        return first <= self.last_day + timedelta(days=1) and (
            first + timedelta(days=days - 1) >= self.first_day
        )

    def last_days(self, days: int) -> date:
        """The first day of a window of ``days`` days ending on this calendar's last day."""
        return self.last_day - timedelta(days=days - 1)


def home_calendar() -> HomeCalendar | None:
    """The days of the events the home's lakehouse holds, and its simulated customers
    (``None``: no events yet)."""
    from analytics_assets.lib import lake

    conn = lake.connect()
    try:
        if not lake.has_table(conn, "events"):
            return None
        first, last, highest = conn.execute(
            f"""
            SELECT min(occurred_at AT TIME ZONE 'UTC')::DATE,
                   max(occurred_at AT TIME ZONE 'UTC')::DATE,
                   max(TRY_CAST(regexp_extract(customer_id, '^{SIMULATED_PREFIX}(\\d+)$', 1)
                       AS BIGINT))
            FROM events
            """
        ).fetchone()
    finally:
        conn.close()
    if first is None:
        return None
    return HomeCalendar(first, last, 0 if highest is None else highest + 1)

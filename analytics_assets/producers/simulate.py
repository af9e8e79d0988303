"""A seeded synthetic clickstream with heterogeneous customers.

Each customer draws their own traits once, so behaviour differs the way real customer bases
do (and churn and lifetime value are learnable downstream):

* visit rate: sessions per day ~ Gamma (a few heavy users, a long tail of occasional ones);
* dropout: after each session the customer leaves for good with probability p ~ Beta;
* conversion: the chance a session with a cart ends in a purchase ~ Beta;
* basket size ~ 1 + Poisson(mean ~ Gamma), and price level ~ Gamma (big and small spenders);
* a preferred device.

Sessions follow a Poisson process per customer from their acquisition day until dropout or the
end of the window. Within a session: page views, maybe a search, cart adds (and removals), and
for converting sessions a checkout and a purchase.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

DEVICES = np.array(["desktop", "mobile", "tablet"])


@dataclass(frozen=True)
class SimulationConfig:
    customers: int = 1_000
    days: int = 90
    seed: int = 7
    start: datetime | None = None
    """First day of the window (UTC); default: ``days`` before now, so recent data is fresh."""
    first_customer: int = 0
    """Number of the first customer (``cust-0000500`` for 500): new customers beside those of
    an earlier simulation."""

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 1:
            raise ValueError("a simulation needs at least one customer and one day")
        if self.first_customer < 0:
            raise ValueError("the first customer's number cannot be negative")

    def window_start(self) -> datetime:
        if self.start is not None:
            return self.start if self.start.tzinfo else self.start.replace(tzinfo=UTC)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.days)

    @property
    def name(self) -> str:
        """``sim-<seed>-<first day>-<days>d-<customers>c``: the prefix of this simulation's
        file names and event ids. The same command on another day simulates another window,
        so it writes new names (a claimed name never carries new content) and new event ids
        (its events are not taken for duplicates); the same command again writes the same
        files, which the platform finds already committed."""
        name = f"sim-{self.seed}-{self.window_start():%Y%m%d}-{self.days}d-{self.customers}c"
        return f"{name}-from{self.first_customer}" if self.first_customer else name


def _customers(rng: np.random.Generator, config: SimulationConfig) -> dict[str, np.ndarray]:
    n = config.customers
    return {
        "acquired_day": rng.uniform(0, config.days * 0.6, n),
        "visit_rate": rng.gamma(shape=0.9, scale=0.5, size=n) + 0.01,
        "dropout": rng.beta(1.3, 12.0, n),
        "conversion": rng.beta(2.0, 4.0, n),
        "basket_mean": rng.gamma(shape=2.0, scale=0.6, size=n),
        "price_level": rng.gamma(shape=3.0, scale=9.0, size=n) + 2.0,
        "device": rng.choice(3, size=n, p=[0.45, 0.45, 0.10]),
    }


def _sessions(rng: np.random.Generator, traits: dict, days: int) -> dict[str, np.ndarray]:
    """Session start times (days from window start) and owner index, in owner order."""
    n = traits["visit_rate"].size
    sessions_until_dropout = rng.geometric(traits["dropout"])
    owner = np.repeat(np.arange(n), sessions_until_dropout)
    gaps = rng.exponential(1.0 / traits["visit_rate"][owner])
    totals = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(sessions_until_dropout)[:-1]])
    offset = np.repeat(totals[first] - gaps[first], sessions_until_dropout)
    start = traits["acquired_day"][owner] + (totals - offset)
    keep = start < days
    return {"owner": owner[keep], "start": start[keep]}


def simulate_events(config: SimulationConfig) -> pl.DataFrame:
    """All events of the simulation, sorted by time, with deterministic ids."""
    rng = np.random.default_rng(config.seed)
    traits = _customers(rng, config)
    sessions = _sessions(rng, traits, config.days)
    owner, start = sessions["owner"], sessions["start"]
    s = owner.size
    page_views = 1 + rng.poisson(3.0, s)
    searches = (rng.random(s) < 0.35).astype(np.int64)
    carts = rng.binomial(page_views, 0.18)
    removes = rng.binomial(carts, 0.15)
    buys = (carts > removes) & (rng.random(s) < traits["conversion"][owner])
    checkouts = buys.astype(np.int64)
    purchases = buys.astype(np.int64)

    kinds = ["page_view", "search", "add_to_cart", "remove_from_cart", "checkout", "purchase"]
    counts = np.stack([page_views, searches, carts, removes, checkouts, purchases], axis=1)
    per_session = counts.sum(axis=1)
    session_of_event = np.repeat(np.arange(s), per_session)
    kind_of_event = np.repeat(np.tile(np.arange(6), s), counts.ravel())
    # events of a session keep the funnel order; seconds between clicks ~ Exponential(45 s)
    step = rng.exponential(45.0, session_of_event.size)
    first_event = np.concatenate([[0], np.cumsum(per_session)[:-1]]).astype(np.int64)
    elapsed = np.cumsum(step)
    if s:
        elapsed -= np.repeat(elapsed[first_event] - step[first_event], per_session)
    occurred = start[session_of_event] * 86_400.0 + elapsed
    who = owner[session_of_event]
    is_purchase = kind_of_event == 5
    quantity = np.where(kind_of_event >= 2, 1 + rng.poisson(traits["basket_mean"][who]), 0)
    unit_price = traits["price_level"][who] * rng.lognormal(0.0, 0.25, who.size)
    amount = np.round(quantity * unit_price, 2)
    product = rng.integers(1, 5_000, who.size)

    base = config.window_start()
    frame = pl.DataFrame(
        {
            "customer_id": pl.Series(who + config.first_customer)
            .cast(pl.String)
            .str.zfill(7)
            .str.replace(r"^", "cust-"),
            "session_id": pl.Series(session_of_event).cast(pl.String).str.replace(r"^", "s-"),
            "seconds": occurred,
            "kind": kind_of_event,
            "product_id": pl.Series(product).cast(pl.String).str.replace(r"^", "sku-"),
            "quantity": quantity,
            "amount": amount,
            "device": DEVICES[traits["device"][who]],
            "is_purchase": is_purchase,
        }
    )
    frame = frame.sort("seconds", maintain_order=True).with_row_index("_n")
    return frame.select(
        pl.format("{}-{}", pl.lit(config.name), pl.col("_n")).alias("event_id"),
        pl.col("kind")
        .replace_strict(dict(enumerate(kinds)), return_dtype=pl.String)
        .alias("event_type"),
        "customer_id",
        "session_id",
        (pl.lit(base) + pl.duration(microseconds=(pl.col("seconds") * 1e6).cast(pl.Int64))).alias(
            "occurred_at"
        ),
        pl.when(pl.col("kind") > 0).then(pl.col("product_id")).alias("product_id"),
        pl.when(pl.col("kind") >= 2).then(pl.col("quantity")).alias("quantity"),
        pl.when(pl.col("is_purchase")).then(pl.col("amount")).alias("amount"),
        pl.when(pl.col("is_purchase")).then(pl.lit("USD")).alias("currency"),
        "device",
        pl.when(pl.col("kind") == 1)
        .then(pl.format('{{"query": "{}"}}', pl.col("product_id")))
        .alias("properties"),
    )


def batches(
    events: pl.DataFrame, events_per_batch: int, config: SimulationConfig
) -> Iterator[tuple[str, pl.DataFrame]]:
    """Consecutive slices in time order, named ``<config.name>-<number>``."""
    for number, start in enumerate(range(0, events.height, events_per_batch)):
        yield f"{config.name}-{number:06d}", events.slice(start, events_per_batch)

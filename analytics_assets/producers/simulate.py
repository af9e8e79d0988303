"""A seeded synthetic clickstream with heterogeneous customers.

Each customer draws their own traits once, so behaviour differs the way real customer bases
do (and churn and lifetime value are learnable downstream):

* visit rate: sessions per day ~ Gamma (a few heavy users, a long tail of occasional ones);
* dropout: after each session the customer leaves for good with probability p ~ Beta;
* conversion: the chance a session with a cart ends in a purchase ~ Beta;
* basket size ~ 1 + Poisson(mean ~ Gamma), and price level ~ Gamma (big and small spenders);
* a preferred device.

Experiments (``SimulationConfig.experiments``) with a known true effect: from its start day,
each customer's first session exposes them (an ``experiment_exposure`` event) to one variant,
drawn with equal weights; from then on each of their sessions' purchase probability is
multiplied by ``1 + effect`` of that variant (control: 1). An effect of 0 for every variant is an
A/A test. Without experiments the stream is exactly what it was (no random draw moves).

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

from analytics_assets.lib.names import EXPERIMENT_NAME

DEVICES = np.array(["desktop", "mobile", "tablet"])
EXPOSURE = 6
"""The kind number of ``experiment_exposure`` among the simulated event kinds."""


@dataclass(frozen=True)
class SimulatedExperiment:
    """An experiment with a known true effect: ``effects`` per treatment (relative change of a
    session's purchase probability), against a control."""

    name: str
    effects: tuple[float, ...]
    start_fraction: float = 1 / 3
    """Where in the window it starts (a third of the way: customers have a history before)."""

    @property
    def variants(self) -> list[str]:
        if len(self.effects) == 1:
            return ["control", "treatment"]
        return ["control", *(f"v{i + 1}" for i in range(len(self.effects)))]

    @classmethod
    def parse(cls, text: str) -> SimulatedExperiment:
        """``NAME=EFFECT[,EFFECT...]``: ``green_button=0.1``, ``aa_check=0``."""
        import re

        name, _, effects = text.partition("=")
        if not re.match(EXPERIMENT_NAME, name) or not effects:
            raise ValueError(f"{text!r}: expected NAME=EFFECT[,EFFECT...], as green_button=0.1")
        try:
            values = tuple(float(e) for e in effects.split(","))
        except ValueError:
            raise ValueError(f"{text!r}: effects are numbers, as 0.1 or -0.05") from None
        if any(v <= -1 for v in values):
            raise ValueError(f"{text!r}: an effect below -1 makes a negative probability")
        return cls(name, values)


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
    experiments: tuple[SimulatedExperiment, ...] = ()

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
        if self.first_customer:
            name = f"{name}-from{self.first_customer}"
        if self.experiments:  # other experiments, other events: other names
            import hashlib

            spec = repr([(e.name, e.effects, e.start_fraction) for e in self.experiments])
            name = f"{name}-x{hashlib.sha256(spec.encode()).hexdigest()[:8]}"
        return name


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


def _exposures(config: SimulationConfig, owner: np.ndarray, start: np.ndarray):
    """Per experiment: the exposing session of each exposed customer and their variant; and
    each session's purchase-probability multiplier."""
    multiplier = np.ones(owner.size)
    exposed = []
    for i, experiment in enumerate(config.experiments):
        # its own generator: the simulation's other draws stay where they were
        rng = np.random.default_rng([config.seed, 1_000 + i])
        variant_of = rng.integers(0, len(experiment.variants), config.customers)
        eligible = np.flatnonzero(start >= config.days * experiment.start_fraction)
        customers, first = np.unique(owner[eligible], return_index=True)
        session = eligible[first]
        exposed.append((experiment, session, variant_of[customers]))
        exposure_time = np.full(config.customers, np.inf)
        exposure_time[customers] = start[session]
        effect = np.array([0.0, *experiment.effects])[variant_of[owner]]
        multiplier *= np.where(start >= exposure_time[owner], 1 + effect, 1.0)
    return exposed, multiplier


def simulate_events(config: SimulationConfig) -> pl.DataFrame:
    """All events of the simulation, sorted by time, with deterministic ids."""
    rng = np.random.default_rng(config.seed)
    traits = _customers(rng, config)
    sessions = _sessions(rng, traits, config.days)
    owner, start = sessions["owner"], sessions["start"]
    s = owner.size
    exposed, multiplier = _exposures(config, owner, start)
    page_views = 1 + rng.poisson(3.0, s)
    searches = (rng.random(s) < 0.35).astype(np.int64)
    carts = rng.binomial(page_views, 0.18)
    removes = rng.binomial(carts, 0.15)
    chance = np.minimum(1.0, traits["conversion"][owner] * multiplier)
    buys = (carts > removes) & (rng.random(s) < chance)
    checkouts = buys.astype(np.int64)
    purchases = buys.astype(np.int64)

    kinds = [
        "page_view", "search", "add_to_cart", "remove_from_cart", "checkout", "purchase",
        "experiment_exposure",
    ]  # fmt: skip
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

    arms = [pl.repeat(None, who.size, dtype=pl.String, eager=True)]
    for experiment, session, variant in exposed:
        # the exposure comes first in its session: at the session's start, before any click
        who = np.concatenate([who, owner[session]])
        session_of_event = np.concatenate([session_of_event, session])
        occurred = np.concatenate([occurred, start[session] * 86_400.0])
        kind_of_event = np.concatenate([kind_of_event, np.full(session.size, EXPOSURE)])
        quantity = np.concatenate([quantity, np.zeros(session.size, dtype=quantity.dtype)])
        amount = np.concatenate([amount, np.zeros(session.size)])
        product = np.concatenate([product, np.zeros(session.size, dtype=product.dtype)])
        is_purchase = np.concatenate([is_purchase, np.zeros(session.size, dtype=bool)])
        labels = [
            f'{{"experiment": "{experiment.name}", "variant": "{v}"}}' for v in experiment.variants
        ]
        arms.append(pl.Series(labels, dtype=pl.String).gather(variant))

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
            "arm": pl.concat(arms),
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
        pl.when(pl.col("kind").is_between(1, 5)).then(pl.col("product_id")).alias("product_id"),
        pl.when(pl.col("kind").is_between(2, 5)).then(pl.col("quantity")).alias("quantity"),
        pl.when(pl.col("is_purchase")).then(pl.col("amount")).alias("amount"),
        pl.when(pl.col("is_purchase")).then(pl.lit("USD")).alias("currency"),
        "device",
        pl.when(pl.col("kind") == 1)
        .then(pl.format('{{"query": "{}"}}', pl.col("product_id")))
        .otherwise(pl.col("arm"))
        .alias("properties"),
    )


def batches(
    events: pl.DataFrame, events_per_batch: int, config: SimulationConfig
) -> Iterator[tuple[str, pl.DataFrame]]:
    """Consecutive slices in time order, named ``<config.name>-<number>``."""
    for number, start in enumerate(range(0, events.height, events_per_batch)):
        yield f"{config.name}-{number:06d}", events.slice(start, events_per_batch)

from datetime import datetime

import polars as pl

from analytics_assets.defs.ingest.parsing import parse_batch
from analytics_assets.defs.ingest.validation import validate_batch
from analytics_assets.producers import simulate
from analytics_assets.producers.files import write_batch

CONFIG = simulate.SimulationConfig(customers=800, days=60, seed=3, start=datetime(2024, 1, 1))


def test_same_seed_same_events() -> None:
    assert simulate.simulate_events(CONFIG).equals(simulate.simulate_events(CONFIG))


def test_every_simulated_event_is_valid(tmp_path) -> None:
    events = simulate.simulate_events(CONFIG)
    path = write_batch(events, tmp_path, "sim", "jsonl")
    result = validate_batch(parse_batch(path.read_bytes(), path.name))
    assert result.quarantined.height == 0
    assert result.clean.height == events.height


def test_customers_behave_heterogeneously() -> None:
    events = simulate.simulate_events(CONFIG)
    purchases = events.filter(pl.col("event_type") == "purchase")
    customers = events.select("customer_id").unique()
    per_customer = customers.join(
        purchases.group_by("customer_id").len(), on="customer_id", how="left"
    ).fill_null(0)["len"]
    # overdispersed: a common Poisson rate would give variance == mean
    assert per_customer.var() > 3 * per_customer.mean()
    assert (per_customer == 0).mean() > 0.2 and (per_customer >= 5).mean() > 0.05
    spend = purchases.group_by("customer_id").agg(pl.col("amount").mean())["amount"]
    assert spend.quantile(0.9) > 2 * spend.quantile(0.1)
    # some customers stop: their last event is well before the end of the window
    last = events.group_by("customer_id").agg(pl.col("occurred_at").max())["occurred_at"]
    assert (last < datetime(2024, 2, 1).astimezone()).mean() > 0.2
    assert set(events["device"].unique()) == {"desktop", "mobile", "tablet"}


def test_sessions_follow_the_funnel() -> None:
    events = simulate.simulate_events(CONFIG)
    per_session = events.group_by("session_id").agg(pl.col("customer_id").n_unique())
    assert per_session["customer_id"].max() == 1
    checkouts = events.filter(pl.col("event_type") == "checkout").height
    assert checkouts == events.filter(pl.col("event_type") == "purchase").height


def test_batches_are_time_ordered_slices() -> None:
    events = simulate.simulate_events(CONFIG)
    parts = list(simulate.batches(events, 5_000, CONFIG))
    assert sum(p.height for _, p in parts) == events.height
    assert parts[0][0] == "sim-3-20240101-60d-800c-000000"
    assert parts[0][1]["occurred_at"].max() <= parts[1][1]["occurred_at"].min()


def test_another_window_never_reuses_a_name_or_an_event_id() -> None:
    """The same command a week later (the demo's hint run twice) simulates another window:
    new file names and new event ids, so nothing it writes is taken for a re-sent batch or a
    duplicate."""
    later = simulate.SimulationConfig(customers=800, days=60, seed=3, start=datetime(2024, 1, 8))
    first, second = simulate.simulate_events(CONFIG), simulate.simulate_events(later)
    assert not set(first["event_id"]) & set(second["event_id"])
    names = {n for n, _ in simulate.batches(first, 5_000, CONFIG)}
    assert not names & {n for n, _ in simulate.batches(second, 5_000, later)}


def test_experiments_change_only_what_they_should(tmp_path) -> None:
    """With experiments, every event (the exposures too) is valid; each exposed customer has one
    exposure per experiment, at their first session from its start; an effect of 0 leaves the
    purchases as they were, and a positive one adds purchases only after exposure."""
    from dataclasses import replace

    aa = replace(CONFIG, experiments=(simulate.SimulatedExperiment.parse("aa=0"),))
    lift = replace(CONFIG, experiments=(simulate.SimulatedExperiment.parse("up=0.8"),))
    base, with_aa, with_lift = (simulate.simulate_events(c) for c in (CONFIG, aa, lift))
    path = write_batch(with_aa, tmp_path, "sim", "jsonl")
    result = validate_batch(parse_batch(path.read_bytes(), path.name))
    assert result.quarantined.height == 0
    exposures = with_aa.filter(pl.col("event_type") == "experiment_exposure")
    assert exposures["customer_id"].is_unique().all()
    assert exposures["occurred_at"].min() >= datetime(2024, 1, 21).astimezone()
    assert set(exposures["properties"].str.json_path_match("$.variant")) == {"control", "treatment"}
    strip = lambda f: f.filter(pl.col("event_type") != "experiment_exposure").drop("event_id")  # noqa: E731
    assert strip(with_aa).equals(base.drop("event_id"))
    purchases = lambda f: f.filter(pl.col("event_type") == "purchase").height  # noqa: E731
    assert purchases(with_lift) > purchases(base)
    assert lift.name != aa.name != CONFIG.name


def test_experiment_specs_are_checked() -> None:
    import pytest

    assert simulate.SimulatedExperiment.parse("p=0.05,-0.05").variants == ["control", "v1", "v2"]
    for bad in ("noeffect", "x=", "x=abc", "has space=0.1", "x=-1.5"):
        with pytest.raises(ValueError):
            simulate.SimulatedExperiment.parse(bad)

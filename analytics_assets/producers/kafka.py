"""Produce events to a Kafka topic: one record per event, its value the same JSON object a
JSON-lines batch file holds, its key the customer id (a customer's events stay in order on one
partition)."""

from __future__ import annotations

import io

import polars as pl

from analytics_assets.lib import kafka_source


def send_batch(frame: pl.DataFrame, topic: str, config: dict) -> int:
    """Send ``frame``'s events to ``topic`` with an idempotent producer; returns how many the
    broker acknowledged."""
    buffer = io.BytesIO()
    frame.write_ndjson(buffer)
    values = buffer.getvalue().splitlines()
    keys = [str(c).encode() for c in frame["customer_id"].to_list()]
    return kafka_source.produce(config, topic, values, keys)

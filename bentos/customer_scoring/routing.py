"""Which model answers for a customer: a stable hash of the customer id against the share of
traffic given to the challenger (the same customer always meets the same model)."""

from __future__ import annotations

import hashlib

import numpy as np

_SCALE = float(2**64)


def bucket(customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the customer id."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_challenger(customer_ids: list[str], share: float) -> np.ndarray:
    """Per customer, whether the challenger answers (``share`` of customers, by hash)."""
    if share <= 0.0:
        return np.zeros(len(customer_ids), dtype=bool)
    return np.fromiter(
        (bucket(c) < share for c in customer_ids), dtype=bool, count=len(customer_ids)
    )

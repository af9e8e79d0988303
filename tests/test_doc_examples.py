"""The docs' REST examples name customers a demo home holds (``make demo-check`` sends them to
the running services and fails if none is known; the e2e loop test runs that check)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import demo_check  # noqa: E402 (scripts/ is not a package)


def test_every_example_names_a_cdnow_customer_of_the_sample_too() -> None:
    from analytics_assets.producers import cdnow

    examples = demo_check.doc_examples()
    assert {doc for doc, _, _ in examples} == set(demo_check.DOCS_WITH_EXAMPLES)
    assert {"churn", "clv", "customer"} <= {endpoint for _, endpoint, _ in examples}
    # the sample (what the e2e loop replays) is a subset of the master log the demo replays
    sample = set(cdnow.read_transactions(cdnow.dataset_path(cdnow.SAMPLE))["customer_id"])
    for doc, endpoint, body in examples:
        ids = body.get("customer_ids") or [body["customer_id"]]
        assert set(ids) & sample, (doc, endpoint, ids)

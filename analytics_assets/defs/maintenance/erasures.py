"""``customer_erasures``: the erasures done (``analytics erase-customer``, the read API's
``POST /admin/erase``), each a materialization with its receipt; the asset is not computed by
Dagster, it records what the erasure did outside a run."""

import dagster as dg

customer_erasures = dg.AssetSpec(
    "customer_erasures",
    deps=["events"],
    group_name="maintenance",
    description=(
        "Customers erased from every store, one materialization per erasure: its receipt "
        "(ids only as salted hashes), the rows and files removed per store, the days whose "
        "analytics were rebuilt. Verify one with `analytics erase-customer --verify RECEIPT`."
    ),
    kinds={"file"},
)

"""The read API's own Prometheus metrics, beside BentoML's on ``/metrics``: live subscribers,
dropped subscribers, exports streaming and rows exported. Made when the service starts
(``prometheus_client`` must see the worker's multiprocess folder, set after this module's
import; see ``bentoml.metrics``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReaderMetrics:
    live_subscribers: object
    live_dropped: object
    exports_streaming: object
    export_rows: object


def make() -> ReaderMetrics:
    import prometheus_client as prom

    return ReaderMetrics(
        prom.Gauge(
            "analytics_reader_live_subscribers",
            "Subscribers of the live feed (GET /live) now",
            multiprocess_mode="livesum",
        ),
        prom.Counter(
            "analytics_reader_live_dropped",
            "Live-feed subscribers dropped for falling too far behind",
        ),
        prom.Gauge(
            "analytics_reader_exports_streaming",
            "Exports (GET /export) streaming now",
            multiprocess_mode="livesum",
        ),
        prom.Counter("analytics_reader_export_rows", "Rows of the exports started"),
    )

"""Raw, clean and quarantined events: one landed micro-batch per partition."""

import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.defs.ingest import landing, tables
from analytics_assets.defs.ingest.batch import BatchOutcome, Status, ingest_file, quarantine_whole
from analytics_assets.defs.ingest.landing import Claim, claims_from_tags
from analytics_assets.defs.ingest.schema import EVENT_COLUMNS, Reason, event_dtypes
from analytics_assets.lib import atomic_files, faults
from analytics_assets.lib.kafka_source import OffsetRange
from analytics_assets.metadata import files_check, files_check_spec, preview
from analytics_assets.partitions import batches
from analytics_assets.resources import LandingZone

GROUP = "ingest"

EVENTS_COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, str(dtype)) for name, dtype in event_dtypes().items()]
    + [dg.TableColumn("batch_id", "String"), dg.TableColumn("ingested_at", "Datetime(UTC)")]
)


@dg.multi_asset(
    name="ingest_batch",
    specs=[
        dg.AssetSpec(
            "raw_events",
            group_name=GROUP,
            description="A landed micro-batch file as read: one partition per file.",
            kinds={"file"},
        ),
        dg.AssetSpec(
            "events",
            deps=["raw_events"],
            group_name=GROUP,
            description=(
                "Validated, cleaned events, unique by event_id, timestamps in UTC. "
                "The source of truth for everything downstream."
            ),
            kinds={"duckdb"},
            metadata={
                "dagster/column_schema": EVENTS_COLUMN_SCHEMA,
                "dagster/table_name": "events",
            },
        ),
        dg.AssetSpec(
            "quarantined_events",
            deps=["raw_events"],
            group_name=GROUP,
            description=(
                "Rows (or whole files) that failed validation, each with a reason code and "
                "the raw record, so nothing received is lost."
            ),
            kinds={"duckdb"},
            metadata={"dagster/table_name": "quarantined_events"},
        ),
    ],
    check_specs=[files_check_spec("events"), files_check_spec("quarantined_events")],
    partitions_def=batches,
    # a backlog of small files is claimed as one run over a range of batches
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def ingest_batch(
    context: dg.AssetExecutionContext, landing_zone: LandingZone, warehouse: DuckDBResource
):
    """Read each landed file of the run (one batch each), check it is the file the sensor
    claimed, validate it against the event schema and commit it in its own transaction; then
    move it to the archive (or to quarantine when it could not be ingested)."""
    claims = claims_from_tags(context.run.tags)
    done: list[tuple[BatchOutcome, Path | None]] = []
    failed: dict[str, str] = {}
    with warehouse.get_connection() as conn:
        for batch_id in context.partition_keys:
            try:
                done.append(_ingest(context, conn, landing_zone, batch_id, claims.get(batch_id)))
            except Exception as exc:  # one batch's failure does not hold up the others
                if last_attempt(context):
                    _quarantine_failed(context, conn, landing_zone, batch_id, claims, exc)
                if len(context.partition_keys) == 1:
                    raise
                context.log.error(f"Batch {batch_id} failed: {exc}")
                failed[batch_id] = f"{type(exc).__name__}: {exc}"
        if done:
            yield from _results(done, failed)
            yield files_check(conn, "events")
            yield files_check(conn, "quarantined_events")
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(context.partition_keys)} batches failed; the "
            "others are committed. The run is retried; re-materialize a failed partition to "
            "retry it again.",
            metadata={"failed_batches": dg.MetadataValue.json(failed)},
        )


def last_attempt(context) -> bool:
    """Whether Dagster will not retry this run if it fails (dagster.yaml ``run_retries``)."""
    instance = context.instance
    if not instance.run_retries_enabled:
        return True
    tags = context.run.tags
    allowed = int(tags.get("dagster/max_retries", instance.run_retries_max_retries))
    return int(tags.get("dagster/retry_number", "0")) >= allowed


def _quarantine_failed(context, conn, landing_zone, batch_id: str, claims, error) -> None:
    """A batch that failed on its last attempt is quarantined whole (``ingest_failed``, with
    the error) and its file moved to quarantine: visible, alerted, never silently skipped."""
    claim = claims.get(batch_id)
    path = (
        landing_zone.root_path / claim.file_name
        if claim
        else landing.find_batch_file(landing_zone.root_path, batch_id)
    )
    if path is None or not path.is_file():
        return
    try:
        digest = atomic_files.file_sha256(path)
        info = tables.BatchFile(
            batch_id,
            path.name,
            digest,
            path.stat().st_size,
            datetime.fromtimestamp(path.stat().st_ctime, tz=UTC),
        )
        detail = f"failed on its last attempt: {type(error).__name__}: {error}"[:2000]
        quarantine_whole(conn, info, Reason.INGEST_FAILED, detail, time.perf_counter())
        moved = landing_zone.quarantine_file(path, digest)
    except Exception as again:  # the warehouse itself is failing: the file stays put
        context.log.error(f"Batch {batch_id}: could not be quarantined either: {again}")
        return
    context.log.error(f"Batch {batch_id}: {detail}; quarantined, file moved to {moved}.")


def _strip_erased(conn, batch_id: str, archived: Path) -> None:
    """The archived copy of a file, without the records of erased customers (quarantined as
    ``erased_customer``, with no record): the archive keeps nothing of theirs either."""
    from analytics_assets.lib import event_files

    numbers = {
        n
        for (n,) in conn.execute(
            "SELECT record_number FROM quarantined_events WHERE batch_id = ? AND reason = ?",
            [batch_id, Reason.ERASED_CUSTOMER],
        ).fetchall()
    }
    event_files.rewrite_without(archived, lambda number, _customer: number in numbers)


def _ingest(context, conn, landing_zone: LandingZone, batch_id: str, claim: Claim | None):
    offsets = OffsetRange.parse(batch_id)
    if offsets is not None:
        return _ingest_kafka(context, conn, offsets), None
    if claim is not None:
        path = landing_zone.root_path / claim.file_name
        if not path.is_file():
            path = None
    else:  # a person re-materializing: whatever file carries the id, landed or archived
        path = landing.find_batch_file(landing_zone.root_path, batch_id) or landing.find_archived(
            landing_zone.archive_path, batch_id
        )
    if path is None:
        committed = tables.ledger_row(conn, batch_id)
        if claim is not None and committed and committed["file_sha256"] == claim.sha256:
            # committed and archived by an earlier attempt of this run
            return _unchanged(conn, claim, committed), None
        raise dg.Failure(
            description=f"No file for batch {batch_id!r} in the landing zone"
            + (f" (claimed {claim.file_name!r}, removed since?)." if claim else "."),
            metadata={"landing_root": landing_zone.root},
        )
    landed_at = datetime.fromtimestamp(path.stat().st_ctime, tz=UTC)
    outcome = ingest_file(
        conn, path, batch_id, landed_at, claim=claim, max_bytes=settings.max_file_bytes()
    )
    moved_to = None
    if outcome.moves_to_quarantine or outcome.moves_to_archive:
        faults.point(faults.AFTER_COMMIT)
        # after the commit: a crash in between finds the same file, and the ledger says done
        if outcome.moves_to_quarantine:
            moved_to = landing_zone.quarantine_file(path, outcome.file.sha256)
        elif path.parent == landing_zone.root_path:
            day = outcome.result.committed_at.astimezone(UTC).date()
            moved_to = landing_zone.archive_file(path, outcome.file.sha256, day)
            if outcome.result.reasons.get(Reason.ERASED_CUSTOMER):
                _strip_erased(conn, batch_id, moved_to)
    result = outcome.result
    if outcome.claimed_sha256:
        context.log.warning(
            f"Batch {batch_id}: {path.name} was replaced after the sensor claimed it (sha256 "
            f"{outcome.claimed_sha256[:12]}, now {outcome.file.sha256[:12]}); the content "
            "found now is what this run ingests."
        )
    if outcome.status == Status.FILE_QUARANTINED:
        context.log.error(
            f"Batch {batch_id}: file {path.name} quarantined as {outcome.reason} "
            f"({outcome.file_error}); moved to {moved_to}, recorded in quarantined_events "
            f"under batch {outcome.file.batch_id}."
        )
        if outcome.reason == Reason.BATCH_NAME_RESENT:
            _alert_resent(context, outcome, moved_to)
    elif outcome.status == Status.ALREADY_COMMITTED:
        context.log.info(
            f"Batch {batch_id}: {path.name} is already committed with this content; archived."
        )
    else:
        context.log.info(
            f"Batch {batch_id}: {result.rows_in} records, {result.clean} clean, "
            f"{result.quarantined} quarantined in {outcome.seconds:.2f}s"
        )
    return outcome, moved_to


def _ingest_kafka(context, conn, requested: OffsetRange) -> BatchOutcome:
    """An offset range from Kafka: read from where the ledger ends to the range's end, commit
    it with its ledger row, then commit the offsets to the broker (lag monitoring only)."""
    from functools import partial

    from analytics_assets.defs.ingest.kafka import ingest_range, next_offsets
    from analytics_assets.lib import kafka_source

    bootstrap = settings.kafka_bootstrap()
    if bootstrap is None:
        raise dg.Failure(
            f"Batch {requested.batch_id} is a Kafka range; KAFKA_BOOTSTRAP_SERVERS is unset"
        )
    config = kafka_source.client_config(bootstrap, settings.kafka_client_config())
    outcome = ingest_range(conn, requested, partial(kafka_source.read_range, config))
    faults.point(faults.AFTER_COMMIT)
    # where the ledger ends (never backwards), after a covered range too: a run killed after
    # its commit did not get here
    done = next_offsets(conn, requested.topic)[requested.partition]
    try:
        kafka_source.commit_offset(
            config, settings.kafka_group(), requested.topic, requested.partition, done
        )
    except Exception as exc:  # the ledger is what counts; the broker's offsets are a view
        context.log.warning(f"Batch {requested.batch_id}: offsets not committed: {exc}")
    if outcome.status == Status.INGESTED:
        context.log.info(
            f"Batch {requested.batch_id}: {outcome.result.rows_in} records from "
            f"{outcome.file.file_name}, {outcome.result.clean} clean, "
            f"{outcome.result.quarantined} quarantined"
        )
    else:
        context.log.info(f"Batch {requested.batch_id}: already committed (covered by the ledger)")
    return outcome


def _unchanged(conn, claim: Claim, committed: dict) -> BatchOutcome:
    info = tables.BatchFile(
        claim.batch_id, claim.file_name, claim.sha256, claim.size, committed["landed_at"]
    )
    return BatchOutcome(
        info, tables.result_from_ledger(conn, committed), 0.0, status=Status.ALREADY_COMMITTED
    )


def _alert_resent(context, outcome: BatchOutcome, moved_to: Path | None) -> None:
    from analytics_assets.lib import alerts

    alerts.raise_alert(
        {
            "alert_id": f"resent:{outcome.file.batch_id}",
            "kind": "batch_name_resent",
            "run_id": context.run.run_id,
            "job_name": context.run.job_name,
            "message": outcome.file_error,
            "file": str(moved_to),
        }
    )


def _results(done: list[tuple[BatchOutcome, Path | None]], failed: dict[str, str]):
    """One materialization per asset for the run: a run of several batches records the same
    metadata on each of their partitions, so it sums them and lists every batch."""
    if len(done) == 1 and not failed:
        yield from _batch_results(*done[0])
        return
    outcomes = [outcome for outcome, _ in done]
    per_batch = pl.DataFrame(
        [
            {
                "batch_id": o.file.batch_id,
                "file": o.file.file_name,
                "status": o.status,
                "records": o.result.rows_in,
                "clean": o.result.clean,
                "quarantined": o.result.quarantined,
                "landed_to_commit_s": _latency(o),
            }
            for o in outcomes
        ]
    )
    batches = preview(per_batch, rows=per_batch.height)
    yield dg.MaterializeResult(
        asset_key="raw_events",
        metadata={
            "files": [o.file.file_name for o in outcomes],
            "bytes": sum(o.file.size or 0 for o in outcomes),
            "rows": sum(o.result.rows_in for o in outcomes),
            "batches": batches,
            "failed_batches": dg.MetadataValue.json(failed),
        },
    )
    days = sorted({d for o in outcomes for d in o.result.days_touched})
    latencies = [
        x
        for o, x in zip(outcomes, per_batch["landed_to_commit_s"].to_list(), strict=True)
        if x is not None and o.status in (Status.INGESTED, Status.FILE_QUARANTINED)
    ]
    first = next((o.validated for o in outcomes if o.validated), None)
    yield dg.MaterializeResult(
        asset_key="events",
        metadata={
            "dagster/row_count": sum(o.result.clean for o in outcomes),
            "days_touched": [d.isoformat() for d in days],
            "landed_to_commit_s": max(latencies, default=None),
            "ingest_seconds": round(sum(o.seconds for o in outcomes), 3),
            "batches": batches,
            "preview": preview(first.clean.select(EVENT_COLUMNS) if first else None),
        },
    )
    reasons: dict[str, int] = {}
    for o in outcomes:
        for reason, count in o.result.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    yield dg.MaterializeResult(
        asset_key="quarantined_events",
        metadata={
            "dagster/row_count": sum(o.result.quarantined for o in outcomes),
            "by_reason": dg.MetadataValue.json(reasons),
            "batches": batches,
        },
    )


def _latency(outcome: BatchOutcome) -> float | None:
    landed, committed = outcome.file.landed_at, outcome.result.committed_at
    return (committed - landed).total_seconds() if landed and committed else None


def _batch_results(outcome: BatchOutcome, moved_to: Path | None):
    batch_file, result = outcome.file, outcome.result
    latency = _latency(outcome)
    raw_meta: dict[str, object] = {
        "file": batch_file.file_name,
        "bytes": batch_file.size,
        "sha256": batch_file.sha256,
        "rows": result.rows_in,
        "status": outcome.status,
    }
    if outcome.file_error:
        raw_meta["file_error"] = outcome.file_error
    if moved_to is not None:
        raw_meta["moved_to"] = dg.MetadataValue.path(str(moved_to))
    if outcome.extra_columns:
        raw_meta["ignored_columns"] = outcome.extra_columns
    if outcome.claimed_sha256:
        raw_meta["replaced_after_claim"] = f"claimed sha256 {outcome.claimed_sha256}"
    yield dg.MaterializeResult(asset_key="raw_events", metadata=raw_meta)
    validated = outcome.validated
    yield dg.MaterializeResult(
        asset_key="events",
        metadata={
            "dagster/row_count": result.clean,
            "days_touched": [d.isoformat() for d in result.days_touched],
            "landed_to_commit_s": latency,
            "ingest_seconds": round(outcome.seconds, 3),
            "preview": preview(validated.clean.select(EVENT_COLUMNS) if validated else None),
            **outcome.extra_metadata,
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantined_events",
        metadata={
            "dagster/row_count": result.quarantined,
            "by_reason": dg.MetadataValue.json(result.reasons),
            "preview": preview(validated.quarantined if validated else None),
        },
    )

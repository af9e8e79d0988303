"""``landing_sensor``: turns each new file in the landing zone into a partition and a run."""

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.landing import (
    Claim,
    LandedFile,
    Refused,
    batch_id_for,
    claims_from_tags,
    claims_tag,
    scan,
)
from analytics_assets.lib.names import RUN_QUEUE_TAG, STREAMING_QUEUE
from analytics_assets.metadata import RANGE_END_TAG, RANGE_START_TAG
from analytics_assets.partitions import batches
from analytics_assets.resources import LandingZone

_REFUSED_MEMORY = 1_000


@dataclass
class Cursor:
    """What the sensor has claimed: per file name, the fingerprint (name, size, mtime) of the
    file it claimed, for as long as that file is in the landing zone.

    A file is claimed when its name is not claimed with this fingerprint. There is no
    clock watermark: a file whose ctime is in the past (a clock stepped back, a network mount,
    a rename racing the scan) is claimed like any other. Committed files leave the landing zone
    (the run archives them), so the scan stays as small as the backlog.

    The cursor is saved with the tick's runs; a tick that dies before (a killed daemon, an
    abandoned tick) leaves it as it was, so its files are claimed again: the run keys make
    Dagster drop the requests it already launched, and a run finds a batch the ledger already
    has with the same content a no-op.
    """

    claimed: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    runs: dict[str, list] = field(default_factory=dict)
    """Per claimed file: ``[run key, claimed at (epoch s), times requested again]``."""

    @classmethod
    def parse(cls, raw: str | None) -> "Cursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        # an older cursor (a ctime watermark) has no claims: every file present is claimed
        # once more and each run finds its batch in the ledger
        return cls(data.get("claimed", {}), data.get("refused", []), data.get("runs", {}))

    def dump(self) -> str:
        return json.dumps(
            {
                "claimed": self.claimed,
                "refused": self.refused[-_REFUSED_MEMORY:],
                "runs": {n: r for n, r in self.runs.items() if n in self.claimed},
            },
            separators=(",", ":"),
        )


@dataclass
class Plan:
    claims: list[LandedFile]
    reclaimed: list[tuple[str, str]]
    refused: list[Refused]
    cursor: Cursor


def plan_claims(
    items: Iterable[LandedFile | Refused],
    cursor: Cursor,
    known_batches: set[str],
    max_files: int,
) -> Plan:
    """Decide which files one tick claims; pure so it can be tested without Dagster.

    ``known_batches`` (the partitions that exist) only explains a claim: a batch id that was
    claimed before under another fingerprint (a replaced or re-sent file) is claimed again and
    reported, and the run decides against the ledger what it is.
    """
    present: set[str] = set()
    refused: list[Refused] = []
    candidates: list[LandedFile] = []
    for item in items:
        if isinstance(item, Refused):
            if item.name not in cursor.refused:
                refused.append(item)
            continue
        present.add(item.path.name)
        if cursor.claimed.get(item.path.name) != item.fingerprint:
            candidates.append(item)
    candidates.sort(key=lambda f: (f.ctime_ns, f.path.name))
    claims: list[LandedFile] = []
    reclaimed: list[tuple[str, str]] = []
    taken: set[str] = set()
    for item in candidates:
        if len(claims) == max_files:
            break
        if item.batch_id in taken:  # two files, one batch id: the second waits a tick
            continue
        taken.add(item.batch_id)
        claims.append(item)
        if item.path.name in cursor.claimed or item.batch_id in known_batches:
            reclaimed.append(
                (
                    item.path.name,
                    f"batch {item.batch_id} was claimed before; this file is new or changed, so "
                    "it is claimed again and its run checks it against the ledger",
                )
            )
    claimed = {name: f for name, f in cursor.claimed.items() if name in present}
    claimed.update({item.path.name: item.fingerprint for item in claims})
    next_cursor = Cursor(claimed, cursor.refused + [r.name for r in refused], dict(cursor.runs))
    return Plan(claims=claims, reclaimed=reclaimed, refused=refused, cursor=next_cursor)


BATCHES_TAG = "analytics/batches"


def run_requests(claims: list[Claim], per_run: int) -> list[dg.RunRequest]:
    """One run per file; under a backlog, one run per group of up to ``per_run`` files (a
    range of batch partitions), so that small files do not each pay a run's start-up.

    The run key names the batches and their content: a request repeated after a tick that
    died is dropped by Dagster, while new content under an old name gets a run of its own.
    """
    requests = []
    for start in range(0, len(claims), per_run):
        group = claims[start : start + per_run]
        first, last = group[0].batch_id, group[-1].batch_id
        names = ",".join(claim.file_name for claim in group)
        content = hashlib.sha256("".join(c.sha256 for c in group).encode()).hexdigest()[:16]
        tags = {
            "analytics/landing_file": names[:200],
            BATCHES_TAG: ",".join(claim.batch_id for claim in group)[:4000],
            RUN_QUEUE_TAG: STREAMING_QUEUE,
            **claims_tag(group),
        }
        if len(group) == 1:
            requests.append(
                dg.RunRequest(run_key=f"{first}@{content}", partition_key=first, tags=tags)
            )
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{first}..{last}@{content}",
                tags={RANGE_START_TAG: first, RANGE_END_TAG: last, **tags},
            )
        )
    return requests


LOST_RETRY_S = 60.0
"""A claimed file whose run failed with a retry promised (``dagster/will_retry``) and no retry
launched this long after, or that has no run at all, is requested again (twice at most)."""
MAX_REQUESTS_AGAIN = 2


def lost_claims(
    instance: dg.DagsterInstance, cursor: Cursor, now: float
) -> list[tuple[str, str | None]]:
    """Claimed files (still in the landing zone) whose run will not come: the healing of last
    resort when Dagster's retry daemon did not act on a failure (seen once: a run killed in
    the daemon's first seconds was marked "will retry" and never retried)."""
    lost = []
    for name, (run_key, claimed_at, again) in cursor.runs.items():
        if name not in cursor.claimed or now - claimed_at < LOST_RETRY_S:
            continue
        if again >= MAX_REQUESTS_AGAIN:
            continue
        records = instance.get_run_records(
            dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1
        )
        if not records:
            lost.append((name, None))
            continue
        run, ended = records[0].dagster_run, records[0].end_time
        if (
            run.status == dg.DagsterRunStatus.FAILURE
            and run.tags.get("dagster/will_retry") == "true"
            and "dagster/auto_retry_run_id" not in run.tags
            and ended is not None
            and now - ended >= LOST_RETRY_S
        ):
            lost.append((name, run.run_id))
    return lost


# The streaming lane: a batch's run ingests it and brings the customers it touched online.
STREAMING_LANE = dg.AssetSelection.assets(ingest_batch) | dg.AssetSelection.assets(
    "streamed_features"
)


def build_landing_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        target=STREAMING_LANE,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Claims new micro-batch files in the landing zone: one partition and one run each, "
            "which ingests the batch and brings the customers it touched online."
        ),
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZone):
        cursor = Cursor.parse(context.cursor)
        known = set(context.instance.get_dynamic_partitions(batches.name))
        plan = plan_claims(
            scan(landing_zone.root_path), cursor, known, settings.sensor_max_files_per_tick()
        )
        for item in plan.refused:
            context.log.warning(f"refused {item.name!r}: {item.reason}")
        for name, why in plan.reclaimed:
            context.log.warning(f"{name!r}: {why}")
        claims = []
        for item in plan.claims:
            try:
                claims.append(Claim.of(item))
            except FileNotFoundError:  # gone since the scan: nothing to claim
                plan.cursor.claimed.pop(item.path.name, None)
        now = time.time()
        lost = [
            (name, run_id)
            for name, run_id in lost_claims(context.instance, plan.cursor, now)
            if name not in {claim.file_name for claim in claims}  # claimed anew this tick
        ]
        requests = run_requests(claims, settings.files_per_run())
        for request in requests:
            for claim in claims_from_tags(request.tags).values():
                plan.cursor.runs[claim.file_name] = [request.run_key, now, 0]
        for name, failed_run in lost:
            run_key, _, again = plan.cursor.runs[name]
            path = landing_zone.root_path / name
            try:
                stat = path.stat()
                item = LandedFile(path, batch_id_for(name) or name, stat.st_ctime_ns, stat.st_size)
                claim = Claim.of(item)
            except FileNotFoundError:  # archived or quarantined meanwhile
                continue
            (request,) = run_requests([claim], 1)
            request = request.with_replaced_attrs(
                run_key=f"{run_key.split('~')[0]}~again{again + 1}"
            )
            context.log.warning(
                f"{name!r}: the run of its claim ({run_key}) failed and was not retried, or "
                f"never started; requested again ({again + 1} of {MAX_REQUESTS_AGAIN})"
            )
            plan.cursor.runs[name] = [request.run_key, now, again + 1]
            if failed_run is not None:  # taken over here: Dagster must not retry it as well
                context.instance.add_run_tags(failed_run, {"dagster/will_retry": "false"})
            requests.append(request)
            claims.append(claim)
        context.update_cursor(plan.cursor.dump())
        if not requests:
            return dg.SkipReason("no new files in the landing zone")
        new_keys = [claim.batch_id for claim in claims if claim.batch_id not in known]
        return dg.SensorResult(
            run_requests=requests,
            # added in claim order: a group's batches are a contiguous range of partitions
            dynamic_partitions_requests=[batches.build_add_request(new_keys)] if new_keys else [],
        )

    return landing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    """The landing sensor; and one sensor per Kafka topic when ``KAFKA_BOOTSTRAP_SERVERS`` and
    ``KAFKA_TOPICS`` are set (otherwise the Kafka source is off)."""
    from analytics_assets.defs.ingest.kafka_sensors import build_kafka_sensor

    interval = settings.sensor_interval_seconds()
    sensors = [build_landing_sensor(interval)]
    if settings.kafka_bootstrap():
        sensors += [
            build_kafka_sensor(topic, STREAMING_LANE, interval) for topic in settings.kafka_topics()
        ]
    return dg.Definitions(sensors=sensors)

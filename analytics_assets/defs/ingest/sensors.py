"""``landing_sensor``: turns each new file in the landing zone into a partition and a run."""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.landing import LandedFile, Refused, scan
from analytics_assets.defs.ingest.partitions import batches
from analytics_assets.metadata import RANGE_END_TAG, RANGE_START_TAG
from analytics_assets.resources import LandingZone

_REFUSED_MEMORY = 1_000


@dataclass
class Cursor:
    """Files are claimed in (ctime, name) order; the cursor is the last one claimed.

    Renaming a finished file into the landing zone updates its ctime, so a file that a slow
    producer renames late still sorts after everything already claimed.
    """

    ctime_ns: int = 0
    names: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> "Cursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("ctime_ns", 0), data.get("names", []), data.get("refused", []))

    def dump(self) -> str:
        return json.dumps(
            {
                "ctime_ns": self.ctime_ns,
                "names": self.names,
                "refused": self.refused[-_REFUSED_MEMORY:],
            }
        )

    def is_new(self, item: LandedFile) -> bool:
        return item.ctime_ns > self.ctime_ns or (
            item.ctime_ns == self.ctime_ns and item.path.name not in self.names
        )


@dataclass
class Plan:
    claims: list[LandedFile]
    skipped: list[tuple[str, str]]
    refused: list[Refused]
    cursor: Cursor


def plan_claims(
    items: Iterable[LandedFile | Refused],
    cursor: Cursor,
    known_batches: set[str],
    max_files: int,
) -> Plan:
    """Decide which files one tick claims; pure so it can be tested without Dagster."""
    new_files: list[LandedFile] = []
    refused: list[Refused] = []
    for item in items:
        if isinstance(item, Refused):
            if item.name not in cursor.refused:
                refused.append(item)
        elif cursor.is_new(item):
            new_files.append(item)
    new_files.sort(key=lambda f: (f.ctime_ns, f.path.name))
    taken = new_files[:max_files]
    claims: list[LandedFile] = []
    skipped: list[tuple[str, str]] = []
    claimed_ids = set(known_batches)
    for item in taken:
        if item.batch_id in claimed_ids:
            skipped.append((item.path.name, f"batch id {item.batch_id} is already claimed"))
        else:
            claims.append(item)
            claimed_ids.add(item.batch_id)
    next_cursor = Cursor(
        cursor.ctime_ns, list(cursor.names), cursor.refused + [r.name for r in refused]
    )
    if taken:
        last = taken[-1].ctime_ns
        same = [f.path.name for f in taken if f.ctime_ns == last]
        next_cursor.names = (cursor.names + same) if last == cursor.ctime_ns else same
        next_cursor.ctime_ns = last
    return Plan(claims=claims, skipped=skipped, refused=refused, cursor=next_cursor)


BATCHES_TAG = "analytics/batches"


def run_requests(claims: list[LandedFile], per_run: int) -> list[dg.RunRequest]:
    """One run per file; under a backlog, one run per group of up to ``per_run`` files (a
    range of batch partitions), so that small files do not each pay a run's start-up."""
    requests = []
    for start in range(0, len(claims), per_run):
        group = claims[start : start + per_run]
        first, last = group[0].batch_id, group[-1].batch_id
        names = ",".join(item.path.name for item in group)
        if len(group) == 1:
            requests.append(
                dg.RunRequest(
                    run_key=first,
                    partition_key=first,
                    tags={"analytics/landing_file": names[:200], BATCHES_TAG: first},
                )
            )
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{first}..{last}",
                tags={
                    RANGE_START_TAG: first,
                    RANGE_END_TAG: last,
                    BATCHES_TAG: ",".join(item.batch_id for item in group)[:4000],
                    "analytics/landing_file": names[:200],
                },
            )
        )
    return requests


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
        for name, why in plan.skipped:
            context.log.info(f"skipped {name!r}: {why}")
        context.update_cursor(plan.cursor.dump())
        if not plan.claims:
            return dg.SkipReason("no new files in the landing zone")
        keys = [item.batch_id for item in plan.claims]
        return dg.SensorResult(
            run_requests=run_requests(plan.claims, settings.files_per_run()),
            # added in claim order: a group's batches are a contiguous range of partitions
            dynamic_partitions_requests=[batches.build_add_request(keys)],
        )

    return landing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[build_landing_sensor(settings.sensor_interval_seconds())])

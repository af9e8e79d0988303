"""The code location: everything under ``defs/`` plus the shared resources."""

from pathlib import Path

import dagster as dg

from analytics_assets.resources import build_resources


def build_definitions() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # One process per run: steps share it instead of paying an interpreter start each.
        dg.Definitions(resources=build_resources(), executor=dg.in_process_executor),
    )


defs = build_definitions()

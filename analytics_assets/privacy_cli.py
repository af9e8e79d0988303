"""``analytics erase-customer`` and ``analytics api-key``: erasing customers with a receipt,
and the API keys (with roles) of the services."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from analytics_assets import settings


@click.command("erase-customer")
@click.argument("customer_ids", nargs=-1)
@click.option("--reason", help="Why (the receipt records it), e.g. a request's reference.")
@click.option(
    "--from-file",
    "from_file",
    type=click.File("r"),
    help="Ids to erase, one per line ('-': standard input), besides those given.",
)
@click.option(
    "--verify",
    "receipt_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scan every store again for a receipt's customers: clean, or what was found.",
)
@click.option("--json", "as_json", is_flag=True, help="End with the receipt as one JSON line.")
def erase_customer(
    customer_ids: tuple[str, ...],
    reason: str | None,
    from_file,
    receipt_path: Path | None,
    as_json: bool,
) -> None:
    """Erase customers from every store the platform writes (the lakehouse and its older
    snapshots, feature snapshots, the online store, training sets, holdouts, the prediction
    log, archived and quarantined files), keep their later events out, and write a receipt
    under ANALYTICS_HOME/erasures. Running it again carries on a killed erasure. An unknown id
    gets a receipt that says nothing was found."""
    from analytics_assets.lib import erasure

    if receipt_path is not None:
        if customer_ids or from_file:
            raise click.UsageError("--verify takes a receipt, not ids")
        try:
            receipt, findings = erasure.verify_file(receipt_path)
        except erasure.ErasureError as exc:
            raise click.ClickException(str(exc)) from exc
        if findings:
            click.echo(f"NOT CLEAN: receipt {receipt.receipt_id}")
            for finding in findings:
                click.echo(f"  {finding}")
            sys.exit(1)
        customers = len(receipt.id_hashes)
        click.echo(f"clean: no store holds the {customers} customer(s) of {receipt.receipt_id}")
        return
    ids = list(customer_ids)
    if from_file is not None:
        ids += [line.strip() for line in from_file if line.strip()]
    if reason is None:
        raise click.UsageError("say why: --reason TEXT (the receipt records it)")
    started = time.perf_counter()
    try:
        receipt, path = erasure.erase(ids, reason, log=click.echo)
    except erasure.ErasureError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report_to_dagster(receipt, path))
    click.echo(
        f"{'erased' if receipt.found_anything else 'nothing found for'} "
        f"{len(receipt.id_hashes)} customer(s) in {time.perf_counter() - started:.1f}s; "
        f"receipt {path}"
    )
    for store, counts in sorted(receipt.stores.items()):
        click.echo(f"  {store:40} {counts['rows']:>10,} rows {counts['files']:>7,} files")
    if as_json:  # the last line, one JSON object: what POST /admin/erase answers with
        click.echo(json.dumps(json.loads(receipt.to_json()) | {"path": str(path)}))


def report_to_dagster(receipt, path: Path) -> str:
    """A ``customer_erasures`` materialization with the receipt, and an ``events`` one with
    the days the customers' events touched: the events_sensor rebuilds those days' analytics
    and feature snapshots without them."""
    home = settings.dagster_home()
    if not (home / "dagster.yaml").exists():
        return f"no Dagster instance at {home}: nothing to rebuild there"
    try:
        import dagster as dg
    except ImportError:  # the read API's bento runs this command without Dagster
        return "Dagster is not installed here: the days to rebuild are in the receipt"
    stores = {store: dict(counts) for store, counts in receipt.stores.items()}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "customer_erasures",
                description=f"erasure {receipt.receipt_id}: {receipt.reason}",
                metadata={
                    "receipt": dg.MetadataValue.path(str(path)),
                    "customers": len(receipt.id_hashes),
                    "found": receipt.found_anything,
                    "stores": dg.MetadataValue.json(stores),
                    "snapshots_expired": receipt.snapshots_expired,
                    "history_from": receipt.history_from or "-",
                    "days_touched": len(receipt.days_touched),
                    "verified": receipt.verified,
                },
            )
        )
        if receipt.days_touched:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "events",
                    description=f"customers erased ({receipt.receipt_id})",
                    metadata={"days_touched": receipt.days_touched, "erasure": receipt.receipt_id},
                )
            )
    return (
        f"reported to Dagster ({home}): customer_erasures, and {len(receipt.days_touched)} "
        "days to rebuild"
    )


@click.group("api-key")
def api_key() -> None:
    """The services' API keys, each with roles (scorer, analyst, admin), stored hashed in
    ANALYTICS_API_KEYS_FILE; the services reload the file when it changes."""


@api_key.command("add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["scorer", "analyst", "admin"]),
    help="Repeat for several.",
)
def api_key_add(name: str, roles: tuple[str, ...]) -> None:
    """Create a key NAME with ROLEs; prints the key once (only its hash is stored)."""
    from analytics_assets.lib import api_keys

    try:
        key = api_keys.add(settings.api_keys_path(), name, list(roles))
    except api_keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name} ({', '.join(roles)}): {key}", err=True)
    click.echo(key)


@api_key.command("list")
def api_key_list() -> None:
    """The keys' names and roles (never the keys)."""
    from analytics_assets.lib import api_keys

    try:
        keys = api_keys.load(settings.api_keys_path())
    except api_keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps([k.public() for k in keys.values()], indent=1))


@api_key.command("revoke")
@click.argument("name")
def api_key_revoke(name: str) -> None:
    """Remove the key NAME (the services refuse it once they reload, within a second)."""
    from analytics_assets.lib import api_keys

    try:
        api_keys.revoke(settings.api_keys_path(), name)
    except api_keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {name}")


if __name__ == "__main__":  # python -m analytics_assets.privacy_cli IDS --reason R (the read API)
    erase_customer()

"""mmtk store ls|info|verify|gc: inspect and maintain the feature store."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import Json, Store, open_store
from mmtk.errors import CheckFailed

app = typer.Typer(
    help="Inspect and maintain the feature store.",
    no_args_is_help=True,
    epilog="Examples:\n\n  mmtk store ls\n\n  mmtk store info efficientnet-lite0 --json\n\n  mmtk store verify && mmtk store gc",
)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("ls")
@handle_errors
def ls_command(store: Store = None, json_out: Json = False) -> None:
    """List the feature sets in the store."""
    feature_store = open_store(store)
    sets = feature_store.feature_sets()
    if json_out:
        output.print_json({"store": str(feature_store.root), "feature_sets": sets})
        return
    from rich.table import Table

    table = Table(title=str(feature_store.root))
    for name in ("fingerprint", "backbone", "variant", "modality", "kind", "dim", "items", "size"):
        numeric = name in ("dim", "items", "size")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=numeric or name == "backbone")
    for s in sets:
        table.add_row(
            s["fingerprint"][:12], s["backbone"], s["variant"], s["modality"], s["kind"], str(s["dim"]), str(s["items"]),
            _human_bytes(s["bytes"]),
        )
    output.stdout().print(table)


@app.command("info")
@handle_errors
def info_command(
    name: Annotated[str, typer.Argument(help="Backbone spec or fingerprint prefix.", show_default=False)],
    store: Store = None,
    json_out: Json = False,
) -> None:
    """Show one feature set: item count, size and a digest of its arrays."""
    info = open_store(store).info(name)
    if json_out:
        output.print_json(info)
        return
    output.print_fields(info)


@app.command("verify")
@handle_errors
def verify_command(store: Store = None, json_out: Json = False) -> None:
    """Check every index entry against its shard; exit 1 when something is wrong."""
    report = open_store(store).verify()
    if json_out:
        output.print_json(report)
    else:
        console = output.stdout()
        for problem in report["problems"]:
            console.print(f"problem: {problem}", highlight=False)
        orphans = report.get("orphans", [])
        if orphans:
            console.print(f"{len(orphans)} orphan file(s); `mmtk store gc` removes them", highlight=False)
        console.print("store is consistent" if report["ok"] else "store has problems", highlight=False)
    if not report["ok"]:
        raise CheckFailed(f"store verify found {len(report['problems'])} problem(s)")


@app.command("gc")
@handle_errors
def gc_command(
    store: Store = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be removed.")] = False,
    json_out: Json = False,
) -> None:
    """Remove orphan shards and stale temporary files, and compact small shards."""
    report = open_store(store).gc(dry_run=dry_run)
    if json_out:
        output.print_json(report)
        return
    output.print_fields(report)

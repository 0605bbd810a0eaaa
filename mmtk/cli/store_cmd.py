"""mmtk store ls|info|verify|repair|rm|gc: inspect and maintain the feature store."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.help_format import MmtkTyper
from mmtk.cli.options import Json, Store, open_store
from mmtk.errors import CheckFailed

app = MmtkTyper(
    help="Inspect and maintain the feature store.",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n  mmtk store ls\n\n  mmtk store info efficientnet-lite0 --json\n\n"
        "  mmtk store verify || mmtk store repair\n\n  mmtk store gc"
    ),
)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Only report what would be removed.")]


def _existing_store(store):
    """The store at ``--store``; a path with no store is bad input (exit 2), never an
    empty store: these commands inspect or maintain, they do not create."""
    feature_store = open_store(store)
    feature_store.require_exists()
    return feature_store


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
    feature_store = _existing_store(store)
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
    from mmtk.backbones.registry import absolute_spec

    # The store lists local models by absolute path (hf:/home/me/tinybert), as runs record them.
    info = _existing_store(store).info(absolute_spec(name))
    if json_out:
        output.print_json(info)
        return
    output.print_fields(info)


@app.command("verify")
@handle_errors
def verify_command(store: Store = None, json_out: Json = False) -> None:
    """Check every index entry against its shard; exit 1 when something is wrong."""
    from mmtk.store.shards import repair_command as repair_hint

    feature_store = _existing_store(store)
    report = feature_store.verify()
    if json_out:
        output.print_json(report)
    else:
        console = output.stdout()
        for problem in report["problems"]:
            console.print(f"problem: {problem}", highlight=False, markup=False)
        orphans = report.get("orphans", [])
        if orphans:
            console.print(f"{len(orphans)} orphan file(s); `mmtk store gc` removes them", highlight=False, markup=False)
        console.print("store is consistent" if report["ok"] else "store has problems", highlight=False)
    if not report["ok"]:
        found = f"store verify found {len(report['problems'])} problem(s) in {feature_store.root}"
        if report["index_damaged"]:
            raise CheckFailed(found, hint=f"the index itself is damaged: move {feature_store.root} aside and extract the features again")
        raise CheckFailed(found, hint=f"drop the damaged entries (extract-features then recomputes them): {repair_hint(feature_store.root)}")


@app.command("repair")
@handle_errors
def repair_command(store: Store = None, dry_run: DryRun = False, json_out: Json = False) -> None:
    """Drop damaged entries so the next extract-features recomputes exactly those.

    Damaged: a shard whose bytes fail their checksum, or that is missing, empty or truncated (all its items go), and single items holding NaN or inf or pointing past their shard's end. Sound entries stay.
    """
    report = _existing_store(store).repair(dry_run=dry_run)
    if json_out:
        output.print_json(report)
        return
    console = output.stdout()
    for shard in report["damaged_shards"]:
        console.print(f"damaged ({shard['items']} items): {shard['problem']}", highlight=False, markup=False)
    verb = "would drop" if dry_run else "dropped"
    for feature_set in report["feature_sets"]:
        console.print(
            f"{verb} {feature_set['items']} {feature_set['backbone']} item(s) ({feature_set['fingerprint'][:12]})",
            highlight=False,
            markup=False,
        )
    if report["dropped_items"]:
        console.print("run without --dry-run to drop them" if dry_run else "run extract-features again to recompute them", highlight=False)
    else:
        console.print("nothing to repair", highlight=False)


@app.command("rm")
@handle_errors
def rm_command(
    name: Annotated[str, typer.Argument(help="Backbone spec or fingerprint prefix of the feature set.", show_default=False)],
    store: Store = None,
    json_out: Json = False,
) -> None:
    """Remove one feature set and its shard files.

    A backbone name that matches several feature sets (a pooled and a sequence one) is refused with the candidates; give a fingerprint prefix then.
    """
    from mmtk.backbones.registry import absolute_spec

    # Local models are stored under their absolute path, as `store info` looks them up.
    report = _existing_store(store).remove(absolute_spec(name))
    if json_out:
        output.print_json(report)
        return
    output.stdout().print(
        f"removed {report['backbone']} ({report['fingerprint'][:12]}): {report['items']} items, {report['shards']} shard(s)",
        highlight=False,
        markup=False,
    )


@app.command("gc")
@handle_errors
def gc_command(store: Store = None, dry_run: DryRun = False, json_out: Json = False) -> None:
    """Remove orphan shards and stale temporary files, and compact small shards."""
    report = _existing_store(store).gc(dry_run=dry_run)
    if json_out:
        output.print_json(report)
        return
    output.print_fields(report)

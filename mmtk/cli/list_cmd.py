"""mmtk list: the names a user can pick (backbones, models, OCR engines, metric suites)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from mmtk.cli import output
from mmtk.cli.errors import handle_errors
from mmtk.cli.options import Json

EXAMPLE = "Examples:\n\n  mmtk list\n\n  mmtk list backbones --json\n\n  mmtk list models --json\n\n  mmtk list suites"


CAPABILITIES = {
    "explains": "--explain", "sequences": "takes sequences", "missing": "--missing-modality mask", "fits": "fitted whole, no epochs",
    "auxiliary": "auxiliary losses (aux.* in train_log.jsonl)", "tokens": "takes word pieces (tokens@COLUMN)",
}


def shown_default(value) -> str:
    """A parameter's default as it reads after ``--model-arg KEY=``: an empty string as
    ``""`` (the model picks, e.g. gating's primary is then the first input)."""
    return '""' if value == "" else str(value)


class RegistryName(str, Enum):
    backbones = "backbones"
    models = "models"
    ocr_engines = "ocr-engines"
    suites = "suites"


def registries() -> dict:
    from mmtk.backbones import BACKBONES
    from mmtk.models import MODELS
    from mmtk.ocr.engines import ENGINES
    from mmtk.suites import SUITES

    return {"backbones": BACKBONES, "models": MODELS, "ocr-engines": ENGINES, "suites": SUITES}


@handle_errors
def list_command(
    which: Annotated[Optional[RegistryName], typer.Argument(help="Which registry (default: all).")] = None,
    json_out: Json = False,
) -> None:
    """List the registered backbones, models, OCR engines and metric suites with a line of help each.

    Models also show their --model-arg parameters with defaults and their capabilities
    (in --json: "model_params" and "model_capabilities" beside "models"); suites their
    tasks, each with its column and metrics (in --json: "suite_tasks")."""
    from mmtk.models import MODELS, model_params

    chosen = {name: reg for name, reg in registries().items() if which is None or name == which.value}
    described = {name: reg.describe() for name, reg in chosen.items()}
    params = {name: model_params(name) for name in MODELS.names()} if "models" in chosen else {}
    suite_tasks = {}
    if "suites" in chosen:
        from mmtk.suites import describe_suites

        suite_tasks = {name: entry["tasks"] for name, entry in describe_suites().items()}
    if json_out:
        if params:
            described["model_params"] = params
            described["model_capabilities"] = {name: MODELS.capabilities(name) for name in MODELS.names()}
        if suite_tasks:
            described["suite_tasks"] = suite_tasks
        output.print_json(described)
        return
    console = output.stdout()
    for name, entries in described.items():
        console.print(f"[bold]{name}[/bold]")
        width = max(len(n) for n in entries) if entries else 0
        for entry, help_text in entries.items():
            console.print(f"  {entry:<{width}}  {help_text}", highlight=False, markup=False)
            if name == "models":
                args = " ".join(f"{key}={shown_default(value)}" for key, value in params[entry].items())
                able = [
                    f"default --{cap} {on:g}" if cap in ("lr", "epochs") else CAPABILITIES.get(cap, cap)
                    for cap, on in MODELS.capabilities(entry).items() if on
                ]
                console.print(f"  {'':<{width}}  --model-arg {args}; {', '.join(able)}", highlight=False, markup=False)
            if name == "suites":
                for task, about in suite_tasks[entry].items():
                    weighed = " weighted by positive labels" if about.get("weights") == "positives" else ""
                    source = f"column {about['column']}" if "column" in about else f"mean of {len(about['of'])} tasks{weighed}"
                    console.print(f"  {'':<{width}}  {task} ({source}): {', '.join(about['metrics'])}", highlight=False, markup=False)

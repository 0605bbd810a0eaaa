"""The Typer application. It only wires commands together: each command lives in its
own module and imports the heavy library code inside its function body, so that
``mmtk --help`` and shell completion never import torch."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtk import __version__
from mmtk.cli import distill_cmd, errors, extract_cmd, evaluate_cmd, list_cmd, ocr_cmd, predict_cmd, store_cmd, train_cmd, tune_cmd
from mmtk.cli.help_format import MmtkTyper

app = MmtkTyper(
    name="mmtk",
    help="Multimodal classification: cached backbone features, fusion models, evaluation and prediction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"mmtk {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also MMTK_DEBUG=1).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    errors.set_debug(debug)


app.command("extract-features", epilog=extract_cmd.EXAMPLE)(extract_cmd.extract_features_command)
app.command("train", epilog=train_cmd.EXAMPLE)(train_cmd.train_command)
app.command("tune", epilog=tune_cmd.EXAMPLE)(tune_cmd.tune_command)
app.command("evaluate", epilog=evaluate_cmd.EXAMPLE)(evaluate_cmd.evaluate_command)
app.command("predict", epilog=predict_cmd.EXAMPLE)(predict_cmd.predict_command)
app.command("distill", epilog=distill_cmd.EXAMPLE)(distill_cmd.distill_command)
app.command("ocr-subtitles", epilog=ocr_cmd.EXAMPLE)(ocr_cmd.ocr_subtitles_command)
app.add_typer(store_cmd.app, name="store")
app.command("list", epilog=list_cmd.EXAMPLE)(list_cmd.list_command)


def main() -> None:
    errors.run(app)

"""``evaluate --report``: one self-contained HTML page with the results (an evaluate
result, or a multi-run comparison with intervals and p-values), the plots embedded as
data: URIs, every run's configuration, the command line, the mmtk version and the date.
It loads nothing from the network and runs no script, so it reads offline and prints
(``mmtk.report.page`` holds its print style)."""

from __future__ import annotations

import json
import mimetypes
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from mmtk.errors import DataError, UsageError

__all__ = ["check_destination", "render_report", "write_report"]

# What an <img> shows from a data: URI without any script or plug-in.
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp"}

PlotSpec = str | Path | tuple[str, str | Path]
RunSpec = str | Path | tuple[str, Mapping] | Mapping


def render_report(
    result: Mapping,
    *,
    plots: Sequence[PlotSpec] = (),
    runs: Sequence[RunSpec] = (),
    command: str | None = None,
    title: str | None = None,
    created: datetime | None = None,
) -> str:
    """The report's HTML (see :func:`write_report` for the arguments)."""
    from mmtk import __version__
    from mmtk.report.page import Figure, RunConfig, render
    from mmtk.report.tables import comparison_tables, is_comparison, result_tables

    comparison = is_comparison(result)
    tables = comparison_tables(result) if comparison else result_tables(result)
    created = created or datetime.now(timezone.utc)
    meta = {}
    configs = [RunConfig(name, config) for name, config in _runs(runs)]
    if comparison:
        meta["runs"] = ", ".join(str(run["run"]) for run in result["runs"])
        meta["data"] = str(result.get("data", ""))
    elif configs:
        meta["run" if len(configs) == 1 else "runs"] = ", ".join(config.name for config in configs)
    if command:
        meta["command"] = command
    meta["mmtk"] = __version__
    meta["date"] = created.isoformat(timespec="seconds")
    figures = [Figure(caption, _image_type(path), path.read_bytes()) for caption, path in _plots(plots)]
    default = "mmtk comparison report" if comparison else "mmtk evaluation report"
    return render(title=title or default, meta=meta, tables=tables, figures=figures, runs=configs)


def write_report(
    path: str | Path,
    result: Mapping,
    *,
    plots: Sequence[PlotSpec] = (),
    runs: Sequence[RunSpec] = (),
    command: str | None = None,
    title: str | None = None,
) -> Path:
    """Write the report of ``result`` (evaluate-shaped, or the multi-run comparison
    document) to ``path`` (replaced only once the whole page is written); return it.

    ``plots``: image files (PNG, ...) to embed, each a path (captioned with its file
    name) or ``(caption, path)``. ``runs``: each run's configuration, as a run directory
    (its ``config.json`` is read), a loaded ``mmtk.runs.Run``, ``(name, config dict)``,
    or a config dict alone (named "run 1", "run 2", ... by position). ``command``: the command
    line that made the result, shown as given. A missing or unreadable plot or config
    is a ``DataError`` naming it, a path that is a folder or lies in none a
    ``UsageError``; either way nothing is written."""
    from mmtk.ocr.outputs import atomic_text

    path = Path(path)
    check_destination(path)
    page = render_report(result, plots=plots, runs=runs, command=command, title=title)
    with atomic_text(path) as stream:
        stream.write(page)
    return path


def check_destination(path: str | Path) -> None:
    """Refuse a report path whose folder does not exist, or that is a folder, before
    any work is done (``UsageError``)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"report {path} is a folder", "name the HTML file to write, e.g. --report report.html")
    if not path.parent.is_dir():
        raise UsageError(f"report {path}: the folder {path.parent} does not exist", "create it first, or write the report elsewhere")


def _plots(plots: Sequence[PlotSpec]) -> list[tuple[str, Path]]:
    out = []
    for plot in plots:
        caption, file = plot if isinstance(plot, tuple) else (Path(plot).name, plot)
        file = Path(file)
        if not file.is_file():
            raise DataError(f"plot {file} does not exist", "write the plots first (evaluate --plots DIR) or leave it out")
        out.append((str(caption), file))
    return out


def _image_type(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0]
    if mime not in IMAGE_TYPES:
        raise DataError(f"plot {path} is not an image a browser shows (PNG, JPEG, GIF, SVG or WebP)", "give image files only")
    return mime


def _runs(runs: Sequence[RunSpec]) -> list[tuple[str, Mapping]]:
    from mmtk.runs import CONFIG

    out = []
    for position, run in enumerate(runs, 1):
        if isinstance(run, tuple):
            out.append((str(run[0]), run[1]))
            continue
        if isinstance(run, Mapping):
            out.append((f"run {position}", run))
            continue
        if hasattr(run, "config") and hasattr(run, "path"):  # a loaded mmtk.runs.Run
            out.append((str(run.path), run.config))
            continue
        config = Path(run) / CONFIG
        try:
            out.append((str(run), json.loads(config.read_text())))
        except FileNotFoundError:
            raise DataError(f"{run} has no {CONFIG}", "name a run directory written by `mmtk train`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{config}: not JSON ({error})", "the run is damaged; train it again") from None
    return out

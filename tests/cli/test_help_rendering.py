"""Every command's --help at 80 columns: flags shown bare, arguments named as the docs
write them, and nothing cut (option names, option help, command summaries).

Help layout has changed between Typer releases (0.29 shows ``--json <bool>`` and
``{run} {data}`` in its own layout); pyproject pins the range this test passed on."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from mmtk.cli.app import app

runner = CliRunner()


def command_tree():
    """(path, click command) for the root, every group and every command."""
    found = []

    def visit(command, path):
        found.append((path, command))
        for name in getattr(command, "commands", {}):
            visit(command.commands[name], path + (name,))

    visit(typer.main.get_command(app), ())
    return found


COMMANDS = command_tree()


def squeezed(text: str) -> str:
    """Text without whitespace, so wrapped lines compare equal to the unwrapped help."""
    return "".join(text.split())


def help_at_80(path) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_tree_is_walked():
    paths = {path for path, _ in COMMANDS}
    assert {(), ("train",), ("evaluate",), ("store",), ("store", "ls"), ("list",)} <= paths


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p) or "mmtk")
def test_help_at_80_columns(path):
    command = dict(COMMANDS)[path]
    text = help_at_80(path)
    usage = text.splitlines()[0]
    assert usage.startswith("Usage: mmtk"), usage
    assert "{" not in usage and "}" not in usage, usage
    assert "<bool>" not in text
    assert "…" not in text
    flat = squeezed(text)
    for param in command.params:
        if param.param_type_name == "argument":
            assert param.name.upper() in usage, usage
            continue
        for name in param.opts + param.secondary_opts:
            assert name in text, f"{name} missing or cut"
        if getattr(param, "is_flag", False):
            # Shown bare: the next thing after a flag's names is its help, not a type.
            long_name = max(param.opts, key=len)
            line = next(line for line in text.splitlines() if long_name in line)
            assert "<" not in line.split(long_name, 1)[1].split("  ")[0], line
        if param.help:
            assert squeezed(param.help) in flat, f"help of {param.opts} cut"
    for name, sub in getattr(command, "commands", {}).items():
        summary = (sub.help or "").strip().split("\n\n")[0].split(". ")[0].rstrip(".")
        assert squeezed(f"{name}{summary}") in flat, f"summary of {name} cut"


@pytest.mark.parametrize("path", [path for path, command in COMMANDS if command.epilog], ids=lambda p: " ".join(p) or "mmtk")
def test_examples_keep_their_lines(path):
    """Each example is printed on one line, so it can be copied as shown."""
    command = dict(COMMANDS)[path]
    lines = [line.strip() for line in help_at_80(path).splitlines()]
    examples = [line.strip() for line in command.epilog.replace("\b", "").splitlines() if line.strip().startswith("mmtk")]
    assert examples
    for example in examples:
        assert example in lines


def test_a_flag_takes_no_value():
    result = runner.invoke(app, ["list", "--json", "true"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["list", "models", "--json"])
    assert result.exit_code == 0, result.output

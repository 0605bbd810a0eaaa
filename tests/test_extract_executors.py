"""The executor registry behind ``extract_features(engine=...)`` and the config a caller
resolved itself: what the Python API promises beyond the CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest

from mmtk.backbones import resolve_backbone
from mmtk.data import read_dataset
from mmtk.errors import UsageError
from mmtk.extract import extract_features
from mmtk.extract.executors import EXECUTORS, engines, get_executor
from mmtk.store import FeatureStore
from tiny_models import write_image


@pytest.fixture
def images(tmp_path):
    rows = []
    for index in range(6):
        write_image(tmp_path / f"e{index}.png", seed=index, size=(30, 20))
        rows.append(json.dumps({"id": f"e{index}", "image": f"e{index}.png"}))
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    return read_dataset(tmp_path / "data.jsonl")


def test_every_executor_is_registered_and_importable():
    assert engines() == ["local", "cuda", "processes", "ray", "serial", "threads"]
    for name in EXECUTORS.names():
        if name == "ray" and importlib.util.find_spec("ray") is None:
            continue
        assert callable(get_executor(name))


@pytest.mark.parametrize("engine", ["threads", "processes", "serial"])
def test_a_named_local_executor_stores_what_the_default_does(images, tmp_path, engine):
    default = FeatureStore(tmp_path / "default")
    extract_features(images, "pixels:4", store=default, device="cpu")
    chosen = FeatureStore(tmp_path / engine)
    report = extract_features(images, "pixels:4", store=chosen, device="cpu", engine=engine, num_workers=2, batch_size=2)
    assert (report.engine, report.computed) == (engine, 6)
    assert chosen.info("pixels:4")["digest"] == default.info("pixels:4")["digest"]


def test_unknown_engine_and_options_for_the_local_engine_are_refused(images, tmp_path):
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(UsageError, match="unknown engine 'spark'") as error:
        extract_features(images, "pixels:4", store=store, engine="spark")
    assert error.value.hint == "choose one of: local, cuda, processes, ray, serial, threads"
    with pytest.raises(UsageError, match="the local engine takes no options"):
        extract_features(images, "pixels:4", store=store, engine_options={"address": "auto"})
    assert store.feature_sets() == []


def test_a_resolved_config_runs_as_given(images, tmp_path):
    """A caller's config (here with its own builder) is not resolved again from its spec,
    unless --sequence or options ask for another form of it."""
    built = []
    pixels = resolve_backbone("pixels:4")

    def counting_builder(config, device):
        built.append(device)
        return pixels.build(device)

    config = dataclasses.replace(pixels, builder=counting_builder)
    report = extract_features(images, config, store=FeatureStore(tmp_path / "store"), device="cpu", num_workers=1)
    assert report.computed == 6 and built == ["cpu"]

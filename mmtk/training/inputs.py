"""What a model is built for: one ``InputSpec`` per input, recorded in the run's
``config.json`` (``model.inputs``) so that ``load_run`` rebuilds the same model."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("vector", "sequence", "tokens")


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name (the feature reference), width, and whether each item
    is one vector ``(d,)`` or a sequence ``(T, d)`` of at most ``max_len`` steps (None:
    as long as the store holds), or word pieces: int64 ids ``(T,)`` of at most
    ``max_len`` pieces, ``dim`` the vocabulary size (``mmtk.tokens``)."""

    name: str
    dim: int
    kind: str = "vector"
    max_len: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"input {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if int(self.dim) < 1:
            raise ValueError(f"input {self.name!r}: dim must be positive, not {self.dim}")

    @property
    def is_sequence(self) -> bool:
        return self.kind == "sequence"

    @property
    def is_tokens(self) -> bool:
        return self.kind == "tokens"

    def to_json(self) -> dict:
        return {"name": self.name, "dim": int(self.dim), "kind": self.kind, "max_len": self.max_len}

    @classmethod
    def from_json(cls, data: dict) -> InputSpec:
        return cls(name=str(data["name"]), dim=int(data["dim"]), kind=str(data.get("kind", "vector")), max_len=data.get("max_len"))


def specs_from_json(model_config: dict) -> dict[str, InputSpec]:
    """The inputs of a run's ``model`` config; runs written before ``inputs`` existed
    recorded only ``input_dims`` (every input a pooled vector)."""
    if "inputs" in model_config:
        # input_dims stays the record of widths (readers of older runs use it): the two agree
        # in every run mmtk writes, and an edited one fails at load as a size mismatch.
        dims = model_config.get("input_dims", {})
        specs = [InputSpec.from_json(entry) for entry in model_config["inputs"]]
        return {spec.name: InputSpec(spec.name, int(dims.get(spec.name, spec.dim)), spec.kind, spec.max_len) for spec in specs}
    return {name: InputSpec(name, int(dim)) for name, dim in model_config["input_dims"].items()}

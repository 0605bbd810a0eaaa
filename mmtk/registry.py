"""A tiny name -> object registry used for backbones, models and anything else a user
picks by name. Every registry has ``register``, ``get`` and ``names``; an unknown name
fails with the list of valid ones."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from mmtk.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._capabilities: dict[str, dict] = {}

    def register(self, name: str, help: str = "", **capabilities) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", help="one line", explains=True)``;
        keyword arguments are the entry's capabilities (see ``capabilities``)."""

        def deco(obj: T) -> T:
            self.add(name, obj, help, **capabilities)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "", **capabilities) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        self._capabilities[name] = dict(capabilities)
        doc_lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        self._help[name] = help or (doc_lines[0] if doc_lines else "")

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)
        self._help.pop(name, None)
        self._capabilities.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(
                f"unknown {self.kind} {name!r}",
                f"choose one of: {', '.join(self.names())}",
            ) from None

    def capabilities(self, name: str) -> dict:
        """What the entry declared when registered (e.g. a model's ``explains``), so that
        callers can ask without building it; an unknown name fails like ``get``."""
        self.get(name)
        return dict(self._capabilities[name])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> one-line help, for ``mmtk list``."""
        return {n: self._help[n] for n in self.names()}

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

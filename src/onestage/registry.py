"""Named classes filled by a decorator (models, losses); unknown names list the valid ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from onestage.errors import OnestageError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes of one kind by name: `@registry.register("name")`, then `registry.get("name")`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that files the class under `name` (once)."""

        def register(cls: T) -> T:
            if name in self.classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self.classes[name] = cls
            return cls

        return register

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.classes)

    def get(self, name: str) -> T:
        """The class filed under `name`; an unknown name is a user error listing the valid ones."""
        if name not in self.classes:
            raise OnestageError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            )
        return self.classes[name]

    def build(self, name: str, **options: Any) -> Any:
        """An instance of the dataclass filed under `name`, configured with `options` (its
        fields); an unknown option is a user error listing the valid ones."""
        cls = self.get(name)
        valid = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise OnestageError(
                f"unknown option(s) {', '.join(unknown)} for {self.kind} {name!r}; "
                f"valid options: {', '.join(valid) or 'none'}"
            )
        return cls(**options)

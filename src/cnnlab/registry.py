"""Name -> builder registries (models, activations, optimisers, schedules, augmentations).

Same shape as timm's ``@register_model``: a small function per entry, looked up by name,
and an unknown name is an error that lists the known ones.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from cnnlab.errors import CnnlabError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None, *aliases: str) -> Callable[[T], T]:
        def add(fn: T) -> T:
            for key in (name or fn.__name__, *aliases):
                if key in self._entries:
                    raise ValueError(f"{self.kind} '{key}' is registered twice")
                self._entries[key] = fn
            return fn

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise CnnlabError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1)
        maybe = f" Did you mean '{close[0]}'?" if close else ""
        extra = f" ({self.hint})" if self.hint else ""
        return f"unknown {self.kind} '{name}'.{maybe} Known: {', '.join(self.names())}{extra}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

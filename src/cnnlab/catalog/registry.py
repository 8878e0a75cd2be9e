"""Name -> builder registries (models, activations, pooling, optimisers, schedules, augmentations, datasets).

Same shape as timm's ``@register_model``: a small function per entry, looked up by name, and an
unknown name is an error that lists the known ones. A registry is the only list of its names: config
validation, ``--help`` and the tests all ask it. An entry may carry a one-line description.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Generic, TypeVar

from cnnlab.errors import ConfigError, UnknownName

T = TypeVar("T", bound=Callable)


def suggest(name: str, names: list[str], most: int = 3, first: tuple[str, ...] = ()) -> list[str]:
    """The known names a typo most likely meant: at most ``most`` of those one or two edits away (a
    transposition is one edit: ``modle`` is ``model``'s), ``first`` first among equals; failing any, the
    closest by difflib's ratio. The one suggester of every "Did you mean" (flags, keys, registry names)."""
    ranked = sorted((_edits(name, n), n not in first, n) for n in names)
    close = [n for d, _, n in ranked if d <= max(1, len(name) // 4)][:most]
    return close or difflib.get_close_matches(name, names, n=most)


def did_you_mean(close: list[str]) -> str:
    """`` Did you mean a?``, `` Did you mean a or b?``, `` Did you mean a, b or c?`` (nothing for none)."""
    if not close:
        return ""
    return f" Did you mean {' or '.join(close) if len(close) < 3 else ', '.join(close[:-1]) + ' or ' + close[-1]}?"


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


class Registry(Generic[T]):
    def __init__(self, kind: str, hint: str = "", prefixes: dict[str, Callable[[str], T]] | None = None) -> None:
        """``prefixes``: families of names made on demand, ``{"timm:": entry_for}`` (``timm:<name>``)."""
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}
        self._prefixes = dict(prefixes or {})

    def register(self, name: str | None = None, *aliases: str, description: str = "") -> Callable[[T], T]:
        def add(fn: T) -> T:
            for key in (name or fn.__name__, *aliases):
                if key in self._entries:
                    raise ValueError(f"{self.kind} '{key}' is registered twice")
                self._entries[key] = fn
                self._descriptions[key] = description
            return fn

        return add

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        for prefix, entry_for in self._prefixes.items():
            if name.startswith(prefix):
                return entry_for(name[len(prefix):])
        raise UnknownName(self.unknown_message(name))

    def check(self, name: str) -> str:
        """``name`` if it is registered, else the UnknownName error (for validators)."""
        self.get(name)
        return name

    def build(self, name: str, **options: Any):
        """Call the entry with ``options``, each checked against its signature first (a wrong option is a
        ConfigError naming the valid ones; a TypeError from inside the builder stays a bug, not a bad option)."""
        fn = self.get(name)
        params = inspect.signature(fn).parameters
        unknown = [k for k in options if k not in params]
        if unknown:
            raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for {self.kind} "
                              f"'{name}': it takes {', '.join(params) or 'none'}")
        return fn(**options)

    def description(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name]

    def unknown_message(self, name: str) -> str:
        maybe = did_you_mean([f"'{n}'" for n in suggest(name, self.names(), most=1)])
        extra = f" ({self.hint})" if self.hint else ""
        return f"unknown {self.kind} '{name}'.{maybe} Known: {', '.join(self.names())}{extra}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def canonical_names(self) -> list[str]:
        """One name per builder (the one it was registered under first), sorted: aliases left out."""
        return sorted({fn: name for name, fn in reversed(list(self._entries.items()))}.values())

    def builders(self) -> list[T]:
        """Each builder once (an entry registered under several names counts once), in registration order."""
        return list(dict.fromkeys(self._entries.values()))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

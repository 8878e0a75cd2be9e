"""The config as a person meets it: ``--key value`` flags read into ``{key: value}`` overrides, and every key
documented with its default, its allowed values and its meaning (``cnnlab config``, ``cnnlab train --help``).

Why not pydantic-settings' ``CliSettingsSource`` (2.16.3, in the lock; tried with ``cli_kebab_case`` and
``cli_shortcuts`` for the flat names): ``--model`` and ``--augment`` are the flags people type for
``model.name`` and ``augment.preset``, and it claims both for the JSON of the whole section; boolean flags
take either a bare ``--early-stopping`` or a value, not both as here; values are JSON, so the YAML
``--blocks '[{filters: 8}]'`` stays a string; an unknown flag is argparse's "unrecognized arguments", with no
"Did you mean"; ``cnnlab datasets export``'s options are no pydantic model; and it adds ~0.2 s to every
start. The names, suggestions and messages around it would be this module's code again, plus a layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml

from cnnlab.config import _SECTIONS, NAMED, Config
from cnnlab.errors import CnnlabError

SECTION_TITLES = {"": "General", "data": "Data", "model": "Model", "optim": "Optimisation", "train": "Training",
                  "augment": "Augmentation", "transfer": "Transfer learning"}


def parse_value(text: str) -> Any:
    """A flag's value as YAML (``0.01``, ``true``, ``[64, 128]``); a bare ``64,128`` is a list."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and "," in value:
        return [parse_value(part.strip()) for part in value.split(",")]
    return value


def parse_args(args: list[str]) -> dict:
    """``--key value`` / ``--key=value`` / ``--flag`` pairs -> {key: value}, values read as YAML."""
    result, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise CnnlabError(f"unexpected argument '{arg}': config flags look like --key value (see: cnnlab config)")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"
        result[key] = parse_value(value)
        i += 1
    return result


@dataclass
class KeyDoc:
    section: str  # "" for the top-level keys
    name: str
    default: Any
    allowed: str  # "a|b|c" for choices, "true|false", else the value's type
    description: str


def _allowed(annotation: Any, name: str = "") -> str:
    if name in NAMED:
        return "|".join(NAMED[name].names())
    args = [a for a in get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "|".join(m.value for m in annotation)
    if get_origin(annotation) is Literal:
        return "|".join(map(str, get_args(annotation)))
    if annotation is bool or bool in args:
        return "true|false"
    if args and get_origin(annotation) is Union:
        return "|".join(_allowed(a) for a in args)
    if get_origin(annotation) in (list, tuple):
        return "list"
    return getattr(annotation, "__name__", str(annotation)).replace("str", "text")


def key_docs() -> list[KeyDoc]:
    """Every config key with its default, its allowed values and its one line of meaning, by section:
    the one source of ``cnnlab config`` and ``cnnlab train --help``."""
    docs = [KeyDoc("", n, f.default, _allowed(f.annotation, n), f.description or "")
            for n, f in Config.model_fields.items() if n not in _SECTIONS]
    for section in _SECTIONS:
        for n, f in Config.model_fields[section].annotation.model_fields.items():
            docs.append(KeyDoc(section, n, f.default, _allowed(f.annotation, n), f.description or ""))
    return docs


def commented_yaml(cfg: Optional[Config] = None) -> str:
    """The config as YAML with each key's meaning and allowed values as a comment."""
    tree = (cfg or Config()).model_dump(mode="json")
    lines, section = [], ""
    for doc in key_docs():
        if doc.section != section:
            section = doc.section
            lines.append(f"{section}:")
        value = tree[doc.section][doc.name] if doc.section else tree[doc.name]
        text = yaml.safe_dump({doc.name: value}, default_flow_style=True, width=10**6).strip()[1:-1]
        indent = "  " if doc.section else ""
        lines.append(f"{indent}{text}  # {doc.description} [{doc.allowed}]")
    return "\n".join(lines) + "\n"

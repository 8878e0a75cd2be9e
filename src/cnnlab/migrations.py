"""Config schema versions: a config tree written by any earlier cnnlab, brought to the current version.

A renamed or added key migrates here instead of breaking old run directories (their config.yaml holds
the version that wrote it; a config file a person wrote is the current version).
"""
from __future__ import annotations

from cnnlab.errors import ConfigError

SCHEMA_VERSION = 4  # of config.yaml in a run directory; 1: the runs before it carried a version


def _v1_to_v2(tree: dict) -> dict:
    """Version 2 added train.channels_last (by default on for the custom CNNs on the CPU) and train.compile:
    a version-1 run trained with neither, so it keeps both off and resumes exactly as it was."""
    train = dict(tree.get("train") or {})
    train.setdefault("channels_last", False)
    train.setdefault("compile", False)
    return {**tree, "train": train}


def _v2_to_v3(tree: dict) -> dict:
    """Version 3 added class weights, the balanced sampler, target standardisation, calibration and loggers,
    and made the epochs, learning rate, schedule and augmentation default to a recipe: a version-2 run had
    none of the new ones, and its file holds the values it trained with, except where they were unset."""
    sections = {name: dict(tree.get(name) or {}) for name in ("data", "optim", "train", "augment")}
    sections["data"].setdefault("sampler", "shuffle")
    sections["data"].setdefault("standardize", False)
    sections["optim"].setdefault("class_weights", "none")
    sections["optim"].setdefault("lr", 0.001)
    sections["optim"].setdefault("schedule", "none")
    sections["train"].setdefault("epochs", 10)
    sections["train"].setdefault("calibrate", False)
    sections["train"].setdefault("logger", "csv")
    sections["augment"].setdefault("preset", "none")
    return {**tree, **sections}


def _v3_to_v4(tree: dict) -> dict:
    """Version 4 added label smoothing (by default 0.1 from scratch): a version-3 run trained without it, so
    it keeps it off and resumes exactly as it was."""
    optim = dict(tree.get("optim") or {})
    optim.setdefault("label_smoothing", 0.0)
    return {**tree, "optim": optim}


# schema version -> the function that brings a config tree of that version to the next one
MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def migrate(tree: dict, unversioned: int = SCHEMA_VERSION) -> dict:
    """A config tree of any schema version this cnnlab knows, as the current version (without the key).

    A tree without a version is ``unversioned``: a config file a person wrote is the current version; a
    run directory's config.yaml without one was written before versions were recorded (version 1)."""
    tree = dict(tree)
    version = tree.pop("schema_version", unversioned)
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"invalid schema_version {version!r}: a positive whole number")
    if version > SCHEMA_VERSION:
        raise ConfigError(f"this config is schema version {version}, newer than this cnnlab reads ({SCHEMA_VERSION}):"
                          f" upgrade cnnlab (pip install -U cnnlab) to use it")
    for step in range(version, SCHEMA_VERSION):
        tree = MIGRATIONS[step](tree)
    return tree

"""The errors a person sees: a message that says what was wrong and what to do, typed by what went wrong.

The CLI prints any ``CnnlabError`` on one line and exits with code 2 (``--debug`` shows the traceback);
the server answers each type with its own HTTP status (``http_status``).
"""
from __future__ import annotations


class CnnlabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""

    http_status = 500  # the server's answer when this reaches it: something on our side


class ConfigError(CnnlabError):
    """A config key, value or combination of values that cannot work."""

    http_status = 400


class UnknownName(ConfigError):
    """A name that no registry knows (model, optimizer, schedule, ...); the message lists the known ones."""


class DataError(CnnlabError):
    """A dataset that cannot be used: missing, empty, unlabelled, too small to split."""

    http_status = 422


class BadImage(DataError):
    """One input that cannot be used as an image (unreadable, corrupt, too large).

    ``reason`` says why; ``source`` names the input when it is known (a path, an upload's file name), and
    the message then names it too.
    """

    def __init__(self, reason: str, status: int = 422, source: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.source = reason, source
        self.http_status = status  # 415 for a file that is no image at all, 422 for a broken or refused one

    def __str__(self) -> str:
        return f"cannot use image {self.source}: {self.reason}" if self.source else self.reason


class WeightsError(CnnlabError):
    """A weights file, checkpoint or export that is malformed, hostile or does not fit the model."""


class RunDirError(CnnlabError):
    """A run directory that is missing, incomplete, of an unknown version, or already holds a run."""

    http_status = 404


class RunBusy(RunDirError):
    """A run directory that another process is writing now (its lock is held)."""

    http_status = 409


class Diverged(CnnlabError):
    """Training met a non-finite loss or gradient and stopped before it reached the weights."""


class MissingExtra(CnnlabError):
    """An optional dependency group is not installed; the message names the install command."""


class Interrupted(CnnlabError):
    """Ctrl-C during training: the CLI exits with 130 and says how to continue."""


class OutOfRange(ConfigError):
    """A value outside what its setting allows (a threshold of 1.5), from a flag, a Python call or a request's
    parameter: the server answers it 422, as any request it cannot process."""

    http_status = 422

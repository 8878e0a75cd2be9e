"""The errors a person sees: a message that says what was wrong and what to do.

The CLI prints any ``CnnlabError`` on one line and exits with code 2; ``--debug`` shows the traceback.
"""


class CnnlabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""


class WeightsError(CnnlabError):
    """A weights file, checkpoint or export that is malformed, hostile or does not fit the model."""


class Diverged(CnnlabError):
    """Training met a non-finite loss or gradient and stopped before it reached the weights."""


class MissingExtra(CnnlabError):
    """An optional dependency group is not installed; the message names the install command."""


class Interrupted(CnnlabError):
    """Ctrl-C during training: the CLI exits with 130 and says how to continue."""

"""The one exception type a person sees: a message that says what was wrong and what to do."""


class CnnlabError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""

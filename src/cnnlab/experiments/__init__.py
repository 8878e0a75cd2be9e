"""Experiments that answer a CNN course's questions with measured evidence: declarations (``spec``), the
built-in ones (``builtin``, registered in ``catalog``), one engine (``engine``), verdicts (``stats``) and
the page (``page``). ``cnnlab.experiment(NAME or FILE.yaml, ...)`` is the public entry."""

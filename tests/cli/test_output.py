"""cli/output.py: what the command line shows of the log, and the libraries kept quiet."""
import logging
import os
import warnings

import pytest

from cnnlab.cli import output


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def _shown(handler: logging.Handler, record: logging.LogRecord, capsys) -> str:
    """What a person sees of ``record`` when the handler sits on a logger (which applies the handler's level)."""
    sink = logging.Logger("sink", logging.DEBUG)
    sink.addHandler(handler)
    capsys.readouterr()
    sink.handle(record)
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays clean for --json output
    return captured.err


def test_info_lines_of_cnnlab_are_shown_as_written(capsys):
    handler = output.ConsoleHandler(debug=False)
    assert _shown(handler, _record("cnnlab.training", logging.INFO, "epoch 1 [of] 3"), capsys) == "epoch 1 [of] 3\n"


@pytest.mark.parametrize("level,prefix", [(logging.WARNING, "warning: "), (logging.ERROR, "error: "),
                                          (logging.CRITICAL, "error: ")])
def test_warnings_and_errors_are_marked(capsys, level, prefix):
    handler = output.ConsoleHandler(debug=False)
    assert _shown(handler, _record("cnnlab", level, "disk almost full"), capsys) == f"{prefix}disk almost full\n"


def test_without_debug_only_cnnlabs_records_pass(capsys):
    handler = output.ConsoleHandler(debug=False)
    for name in ("lightning.pytorch", "torch", "cnnlabx", "PIL"):
        assert _shown(handler, _record(name, logging.WARNING, "noise"), capsys) == "", name
    assert _shown(handler, _record("cnnlab", logging.DEBUG, "detail"), capsys) == ""  # below INFO
    assert _shown(handler, _record("cnnlab.data", logging.WARNING, "kept"), capsys) == "warning: kept\n"


def test_with_debug_every_record_passes(capsys):
    handler = output.ConsoleHandler(debug=True)
    assert _shown(handler, _record("lightning.pytorch", logging.INFO, "GPU available"), capsys) == "GPU available\n"
    assert _shown(handler, _record("cnnlab", logging.DEBUG, "detail"), capsys) == "detail\n"


@pytest.fixture
def restored(monkeypatch):
    """setup_output changes process-wide state: put it back after the test."""
    root, mine = logging.getLogger(), logging.getLogger("cnnlab")
    saved = list(root.handlers), root.level, mine.level
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    monkeypatch.setattr(output, "DEBUG", output.DEBUG)
    with warnings.catch_warnings():
        yield root
    root.handlers[:], root.level = saved[0], saved[1]
    mine.setLevel(saved[2])


def test_setup_output_without_debug_silences_warnings_here_and_in_children(restored):
    before = len(restored.handlers)
    output.setup_output(False)
    assert output.DEBUG is False
    added = restored.handlers[before:]
    assert len(added) == 1 and isinstance(added[0], output.ConsoleHandler) and added[0].level == logging.INFO
    assert restored.level == logging.INFO and logging.getLogger("cnnlab").level == logging.INFO
    assert os.environ["PYTHONWARNINGS"] == "ignore"
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn("library noise", UserWarning)
    assert seen == []


def test_setup_output_with_debug_keeps_warnings_and_lowers_the_level(restored):
    output.setup_output(True)
    assert output.DEBUG is True
    assert restored.level == logging.DEBUG and restored.handlers[-1].level == logging.DEBUG
    assert "PYTHONWARNINGS" not in os.environ
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn("library noise", UserWarning)
    assert len(seen) == 1


@pytest.fixture
def lightning_handler():
    import lightning  # noqa: F401 - its logger's handlers exist from here

    logger = logging.getLogger("lightning")
    levels = [(h, h.level) for h in logger.handlers]
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    for h, level in levels:
        h.setLevel(level)


def test_quiet_lightning_keeps_lightning_to_warnings_unless_debugging(monkeypatch, lightning_handler):
    monkeypatch.setattr(output, "DEBUG", True)
    output.quiet_lightning()
    assert lightning_handler.level == logging.INFO
    monkeypatch.setattr(output, "DEBUG", False)
    output.quiet_lightning()
    assert lightning_handler.level == logging.WARNING

"""One ``ServeOptions``: the CLI's flags, ``serve()`` and ``create_app`` take its defaults, the workers receive it
whole as one JSON document, and a wrong value is one line naming its flag."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cnnlab.errors import ConfigError
from cnnlab.serving import server
from cnnlab.serving.http import RequestTimeoutH11, request_timeout_protocol
from cnnlab.serving.options import ServeOptions, WorkerSpec


def test_the_cli_serve_and_create_app_all_take_the_defaults_of_serve_options(tiny_run, monkeypatch):
    from cnnlab.cli.app import app
    import cnnlab.cli  # noqa: F401 - registers the commands
    from cnnlab.inference import export
    from cnnlab.serving.app import create_app

    served, built, ran = [], [], []
    monkeypatch.setattr(server, "serve", lambda run, options: served.append(options))
    result = CliRunner().invoke(app, ["serve", str(tiny_run)])
    assert result.exit_code == 0, result.output
    assert served == [ServeOptions()]  # every flag's default is the option's

    monkeypatch.undo()
    monkeypatch.setattr(export, "ensure_onnx", lambda run: None)
    monkeypatch.setattr(server, "create_app", lambda run, options: built.append(options) or "app")
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: ran.append(kwargs))
    server.serve(str(tiny_run))
    assert built == [ServeOptions()] and ran[0]["host"] == "127.0.0.1" and ran[0]["port"] == 8000
    assert ran[0]["http"].timeout_s == 30.0 and ran[0]["http"].max_head == 32 * 1024 and not ran[0]["access_log"]

    made = create_app(str(tiny_run))
    assert made.state.options == ServeOptions()
    defaults = ServeOptions()
    assert (defaults.top_k, defaults.backend, defaults.max_batch, defaults.max_wait_ms, defaults.request_timeout,
            defaults.max_upload_mb) == (5, "auto", 32, 5.0, 30.0, 10.0)


def test_the_options_reach_each_worker_whole_as_one_json_document(tiny_run, monkeypatch):
    from cnnlab.serving import workers

    options = ServeOptions(workers=2, backend="torch", threshold=0.7, top_k=2, max_pixels=1000, max_batch=4,
                           allowed_hosts="models.example, *.corp.example", request_timeout=7, max_header_kb=4)
    started = []
    monkeypatch.setattr(workers, "serve_workers", lambda factory, opts: started.append((factory, opts)))
    monkeypatch.setenv(server.SERVE_ENV, "")  # restored after the test
    server.serve(str(tiny_run), options)
    [(factory, given)] = started
    assert given is options
    spec = WorkerSpec.model_validate_json(server.os.environ[server.SERVE_ENV])  # what a forked worker reads
    assert spec == WorkerSpec(run_dir=str(tiny_run), options=options)
    assert spec.options.allowed_hosts == ("models.example", "*.corp.example")
    built = []
    monkeypatch.setattr(server, "create_app", lambda run, opts: built.append((run, opts)))
    factory()
    assert built == [(str(tiny_run), options)]
    worker = workers.worker_class(options)
    assert worker.CONFIG_KWARGS["http"].timeout_s == 7 and worker.CONFIG_KWARGS["http"].max_head == 4096


@pytest.mark.parametrize("flags,says", [
    ({"max_batch": 0}, "--max-batch 0: Input should be greater than or equal to 1"),
    ({"max_wait_ms": -1}, "--max-wait-ms -1: Input should be greater than or equal to 0"),
    ({"max_header_kb": 2000}, "--max-header-kb 2000: Input should be less than or equal to 1024"),
    ({"request_timeout": 0}, "--request-timeout 0: Input should be greater than 0"),
    ({"workers": 0, "limit_concurrency": 0}, "--limit-concurrency 0: Input should be greater than or equal to 1; "
                                             "--workers 0: Input should be greater than or equal to 1"),
    ({"threshold": 1.5}, "threshold 1.5: a probability strictly between 0 and 1 (e.g. 0.8)"),
])
def test_a_wrong_option_is_one_line_naming_its_flag(flags, says):
    with pytest.raises(ConfigError) as error:
        ServeOptions.from_flags(**flags)
    assert str(error.value) == says


def test_a_wrong_serve_flag_is_refused_before_anything_starts(tiny_run, monkeypatch):
    from cnnlab.cli.app import app
    import cnnlab.cli  # noqa: F401

    monkeypatch.setattr(server, "serve", lambda run, options: pytest.fail("served with a wrong option"))
    result = CliRunner().invoke(app, ["serve", str(tiny_run), "--max-batch", "0"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "--max-batch 0" in str(result.exception)


def test_the_protocol_class_carries_the_deadline_and_the_head_limit():
    plain = request_timeout_protocol(base=RequestTimeoutH11)
    assert plain is RequestTimeoutH11 and plain.timeout_s == ServeOptions().request_timeout
    limited = request_timeout_protocol(ServeOptions(request_timeout=2.5, max_header_kb=8), base=RequestTimeoutH11)
    assert issubclass(limited, RequestTimeoutH11) and (limited.timeout_s, limited.max_head) == (2.5, 8192)
    assert RequestTimeoutH11.timeout_s == 30.0  # the base class is not changed

"""cli/deploy.py: `cnnlab export` and `cnnlab serve` pass their flags to the library whole, say what they did,
and refuse a wrong option in one line before anything starts."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


def test_serve_hands_every_flag_to_the_server_as_one_serve_options(cli, record, tmp_path):
    import cnnlab.serving.server
    from cnnlab.serving.options import ServeOptions

    server = record(cnnlab.serving.server, "serve")
    found = cli("serve", tmp_path, "--port", "8123", "--top-k", "2", "--threshold", "0.7", "--max-batch", "8",
                "--backend", "torch", "--device", "cpu")
    assert found.code == 0, found.err
    run, options = server.args
    assert run == str(tmp_path) and isinstance(options, ServeOptions)
    assert (options.port, options.top_k, options.threshold, options.max_batch, options.backend) == (8123, 2, 0.7, 8, "torch")
    defaults = ServeOptions()
    assert options.max_wait_ms == defaults.max_wait_ms and options.max_upload_mb == defaults.max_upload_mb
    assert f"serving {tmp_path} on http://127.0.0.1:8123/" in found.err


@pytest.mark.parametrize("flags", [["--threshold", "1.5"], ["--max-batch", "0"], ["--top-k", "0"],
                                   ["--backend", "tensorrt"], ["--device", "tpu"]])
def test_serve_refuses_a_wrong_option_in_one_line_and_starts_nothing(cli, record, tmp_path, flags):
    import cnnlab.serving.server

    server = record(cnnlab.serving.server, "serve")
    found = cli("serve", tmp_path, *flags)
    assert found.code == 2 and server.calls == []
    assert len(found.err_lines) == 1 and found.err_lines[0].startswith("error: ") and flags[1] in found.err


def test_export_passes_format_and_folder_and_says_what_the_file_takes(cli, record, tmp_path):
    import cnnlab.inference.export

    model = tmp_path / "export" / "model.onnx"
    done = SimpleNamespace(format="onnx", path=model, max_abs_diff=1.5e-6, max_abs_diff_other_sizes=2.5e-4)
    exporter = record(cnnlab.inference.export, "export", done)
    found = cli("export", tmp_path, "--format", "onnx", "--out", tmp_path / "export")
    assert found.code == 0, found.err
    assert exporter.args == (tmp_path, "onnx", tmp_path / "export")
    assert "max abs diff 1.50e-06, 2.50e-04 at other sizes" in found.err
    assert f"python {Path(model).parent / 'client.py'} IMAGE" in found.err

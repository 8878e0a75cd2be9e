"""The CLI answers --help, config and every argument error without importing torch, torchvision or Lightning
(seconds on a small CPU): asserted through sys.modules in a fresh interpreter, not by timing."""
import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
sys.argv = ["cnnlab"] + json.loads(sys.argv[1])
from cnnlab.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "torchvision", "lightning", "timm") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _start(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args,ok", [
    (["--help"], True), (["train", "--help"], True), (["lr-find", "--help"], True), (["config"], True),
    (["predict", "--help"], True), (["serve", "--help"], True), (["evaluate", "--help"], True),
    (["train", "data", "--modle", "cnn-small"], False), (["train", "data", "--lr", "abc"], False),
    (["train", "data", "--config", "missing.yaml"], False), (["train"], False),
])
def test_help_config_and_argument_errors_import_no_torch(args, ok):
    found = _start(args)
    assert (found["code"] in (0, None)) is ok, found
    assert found["heavy"] == [], found


def test_the_catalogue_config_and_flags_import_no_torch():
    code = ("import sys, cnnlab.catalog.names, cnnlab.config, cnnlab.flags, cnnlab.migrations; "
            "print(sorted(m for m in ('torch', 'torchvision', 'lightning', 'timm') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr

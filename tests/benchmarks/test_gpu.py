"""The GPU scripts' CPU fallback: benchmarks/gpu.py --smoke runs its loops (the bare loop, cnnlab's module with
its finiteness checks read a step late, and read at once) on the CPU at tiny sizes, so that a lent GPU's few
minutes are not spent finding out that the script is broken (gpu_path.sh --smoke runs it, with the CLI steps)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_benchmark_smoke_mode_runs_on_the_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--smoke", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["device"] == "CPU (smoke test)"
    quick = found["quick"]
    assert quick["bare_img_s"] > 0 and quick["cnnlab_img_s"] > 0 and quick["cnnlab_checks_at_once_img_s"] > 0

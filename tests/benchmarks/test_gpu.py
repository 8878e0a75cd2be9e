"""The GPU scripts' CPU fallback: benchmarks/gpu.py --smoke --ablation runs its loops (the bare loop, cnnlab's module
with its finiteness checks read a step late, read at once, and off, and a plain LightningModule) and its profile on
the CPU at tiny sizes, so that a lent GPU's few
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
    proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--smoke", "--ablation", "--rounds", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["device"] == "CPU (smoke test)"
    ablation = found["ablation"]
    assert ablation["bare_img_s"] > 0
    for variant in ("default", "checks-at-once", "no-checks", "lightning"):
        assert ablation[variant]["img_s"] > 0 and len(ablation[variant]["ratios"]) == 1
    assert "Self CPU" in proc.stdout  # the profiler's table was printed

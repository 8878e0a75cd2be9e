import ctypes
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                                reason="glibc only")

# A fresh process frees a 16 MiB tensor and reports how much freed memory malloc kept for reuse.
PROBE = """
import ctypes, sys, torch
from cnnlab.memory import tune_allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
print(tune_allocator())
x = torch.ones(4 << 20)  # 16 MiB of float32
del x
print(mallinfo2().fordblks)
"""


def _probe(**env) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**environ, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


def test_freed_batches_stay_in_the_process_for_reuse():
    tuned, kept = _probe()
    assert tuned == "True" and kept >= 16 << 20


@pytest.mark.parametrize("env", [{"CNNLAB_TUNE_MALLOC": "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_the_setting_can_be_turned_off_and_the_users_own_wins(env):
    tuned, kept = _probe(**env)
    assert tuned == "False" and kept < 16 << 20  # glibc's default: the block went back to the OS

"""The GPU path's options, run where the CPU can run them (bf16 autocast, channels_last, torch.compile),
and the device settings a person can get wrong: each one line, exit code 2, the valid values."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

import cnnlab
from cnnlab import rundir
from cnnlab.config import Config, OptimConfig, with_overrides
from cnnlab.errors import CnnlabError
from cnnlab.training import distributed
from cnnlab.training.module import ImageTask

from conftest import TINY


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("settings, says", [
    ({"distributed": "dpp"}, "unknown --distributed strategy 'dpp': use one of auto, ddp"),
    ({"precision": "fp8"}, "unknown --precision 'fp8': use one of 32-true, bf16-mixed, 16-mixed"),
    ({"accelerator": "tpu"}, "unknown --accelerator 'tpu': use one of auto, cpu, gpu, cuda"),
    ({"accelerator": "cpu", "devices": 4096}, "--devices 4096: this machine has"),
    ({"accelerator": "cpu", "precision": "16-mixed"}, "16-mixed needs a CUDA GPU"),
    ({"num_nodes": 2}, "--num-nodes 2 needs a cluster launch"),
])
def test_bad_device_settings_are_refused_before_anything_is_written(bars, tmp_path, settings, says):
    with pytest.raises(CnnlabError) as err:
        cnnlab.train(bars, tmp_path / "run", **settings)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_bad_device_setting_is_one_line_and_exit_2_and_loses_nothing(tiny_run, bars):
    before = sorted(p.name for p in tiny_run.iterdir())
    proc = _cli("train", bars, "--out", tiny_run, "--overwrite", "--distributed", "dpp")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: unknown --distributed strategy 'dpp': use one of auto, ddp"], proc.stderr
    assert sorted(p.name for p in tiny_run.iterdir()) == before  # --overwrite removed nothing
    proc = _cli("serve", tiny_run, "--device", "tpu")
    assert proc.returncode == 2 and "unknown device 'tpu': use one of auto, cpu, cuda" in proc.stderr, proc.stderr


def test_evaluate_and_predict_take_a_device(tiny_run, bars):
    with pytest.raises(CnnlabError, match="unknown device 'tpu': use one of auto, cpu, cuda"):
        cnnlab.evaluate(tiny_run, bars, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CnnlabError, match="no usable CUDA GPU"):
            cnnlab.load(tiny_run, "cuda")
    auto = cnnlab.load(tiny_run)  # auto: the GPU when there is one
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(auto.model.parameters()).device.type == auto.device.type


def test_bf16_is_refused_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    cfg = with_overrides(Config(), {"accelerator": "gpu", "precision": "bf16-mixed"})
    with pytest.raises(CnnlabError, match="Tesla T4 has no bfloat16 support; use --precision 16-mixed or 32-true"):
        distributed.check(cfg)
    distributed.check(with_overrides(cfg, {"precision": "16-mixed"}))  # fp16 is fine there
    with pytest.raises(CnnlabError, match="this machine has 1 GPUs; use 1..1"):
        distributed.check(with_overrides(cfg, {"devices": 2, "precision": "32-true"}))


def test_devices_auto_is_every_gpu_or_one_cpu_process_and_more_than_one_means_ddp(monkeypatch):
    from lightning.pytorch.strategies import DDPStrategy

    cpu = with_overrides(Config(), {"accelerator": "cpu"})
    assert distributed.world_size(cpu) == 1 and distributed.strategy(cpu) == "auto"
    assert distributed.world_size(with_overrides(cpu, {"devices": 2, "num_nodes": 3})) == 6
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    gpus = with_overrides(Config(), {"accelerator": "gpu"})  # the batches and full-batch chunks are dealt by this
    assert distributed.world_size(gpus) == 4 and isinstance(distributed.strategy(gpus), DDPStrategy)


class ConvDtype(Callback):
    """The dtype the first convolution computes in, during training."""

    def on_train_start(self, trainer, pl_module):
        self.dtypes = set()
        conv = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d))
        self.hook = conv.register_forward_hook(lambda m, i, o: self.dtypes.add(o.dtype))

    def on_train_end(self, trainer, pl_module):  # calibration afterwards runs as prediction does, in float32
        self.hook.remove()


def test_bf16_mixed_precision_trains_on_the_cpu_in_bfloat16(bars, tmp_path):
    seen = ConvDtype()
    result = cnnlab.train(bars, tmp_path / "run", epochs=3, lr=0.01, batch_size=16, precision="bf16-mixed",
                          accelerator="cpu", callbacks=[seen], **TINY)
    assert seen.dtypes == {torch.bfloat16}
    weights = load_file(result.run_dir / rundir.WEIGHTS)
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}  # weights stay float32
    assert result.metrics["train_acc"] > 0.6  # it learned, in bfloat16


def test_channels_last_gives_the_default_outputs_and_a_loadable_run(tiny_run, bars, tmp_path):
    model = cnnlab.load(tiny_run, "cpu").model.eval()
    nhwc = ImageTask(copy.deepcopy(model), "classification", 3, OptimConfig(), channels_last=True).eval()
    conv = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), model(x), atol=1e-5, rtol=1e-5)

    result = cnnlab.train(bars, tmp_path / "run", epochs=2, lr=0.01, batch_size=16, channels_last=True, **TINY)
    assert cnnlab.load(result.run_dir, "cpu").predict(sorted(bars.rglob("*.png"))[:2])  # contiguous safetensors


def test_compile_runs_the_model_through_inductor_with_the_same_outputs(tiny_run):
    from torch._dynamo.utils import counters

    model = cnnlab.load(tiny_run, "cpu").model.eval()
    compiled = ImageTask(copy.deepcopy(model), "classification", 3, OptimConfig(), compile=True).eval()
    before = counters["stats"]["unique_graphs"]
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] > before  # a graph was captured and compiled
    assert set(compiled.state_dict()) == {f"model.{k}" for k in model.state_dict()}  # the weights keep their names

"""More than one process: who writes, which settings the hardware takes, and that no rank is left waiting.

Lightning launches the processes (``--devices N`` re-runs the command once per extra local device;
torchrun and SLURM start every process themselves). Before that, every process runs the same
command, so this module tells the launching process (global rank 0, which checks the run directory
and writes it) from the others, which only train.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from cnnlab.config import Config
from cnnlab.errors import ConfigError
from cnnlab.catalog.names import Accelerator, Distributed, Precision, listed

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.5


def global_rank() -> int:
    """This process's global rank as the launchers set it, before any process group exists (0 when alone)."""
    for name in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in os.environ and (name != "SLURM_PROCID" or _slurm_launched()):
            return int(os.environ[name])
    node, local = int(os.environ.get("NODE_RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    return node * 10_000 + local  # only "is it 0" matters before Lightning knows the devices per node


def is_leader() -> bool:
    """Global rank 0: the one process that checks, creates and writes the run directory."""
    return global_rank() == 0


def _slurm_launched() -> bool:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def cluster_detected() -> bool:
    """A multi-node launch that Lightning can join: torchrun, SLURM, LSF, or MASTER_ADDR + NODE_RANK."""
    from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

    if any(env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment)):
        return True
    return "MASTER_ADDR" in os.environ and "NODE_RANK" in os.environ


def accelerator(cfg: Config) -> str:
    """The device kind this run trains on: ``cpu`` or ``cuda``."""
    wanted = cfg.train.accelerator
    if wanted == Accelerator.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if wanted in (Accelerator.GPU, Accelerator.CUDA) else "cpu"


def check(cfg: Config) -> None:
    """The device settings, checked against this machine before anything starts (one line each); their
    names were checked when the config loaded (cnnlab.catalog.names)."""
    t = cfg.train
    kind = accelerator(cfg)
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--accelerator {t.accelerator}: this machine has no usable CUDA GPU "
                          f"(use --accelerator cpu or auto)")
    available = torch.cuda.device_count() if kind == "cuda" else (os.cpu_count() or 1)
    if t.devices != "auto":
        n = int(t.devices)
        if not 1 <= n <= available:
            unit = "GPUs" if kind == "cuda" else "CPU cores (one process each)"
            raise ConfigError(f"--devices {n}: this machine has {available} {unit}; use 1..{available} or auto")
    if t.precision == Precision.FP16_MIXED and kind == "cpu":
        raise ConfigError("--precision 16-mixed needs a CUDA GPU; on the CPU use --precision bf16-mixed or 32-true "
                          f"(valid: {listed(Precision)})")
    if t.precision == Precision.BF16_MIXED and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16-mixed: {torch.cuda.get_device_name()} has no bfloat16 support; use "
                          f"--precision 16-mixed or 32-true")
    if t.num_nodes > 1 and not cluster_detected():
        raise ConfigError(f"--num-nodes {t.num_nodes} needs a cluster launch: start the command on every machine "
                          f"with torchrun, srun (SLURM), or MASTER_ADDR, MASTER_PORT and NODE_RANK set (see the "
                          f"README: More than one GPU or machine)")


def world_size(cfg: Config) -> int:
    """The processes this run trains in: ``devices`` per node x nodes. ``auto`` is Lightning's: every GPU of
    the machine, or one CPU process."""
    if cfg.train.devices != "auto":
        devices = int(cfg.train.devices)
    else:
        devices = max(1, torch.cuda.device_count()) if accelerator(cfg) == "cuda" else 1
    return devices * cfg.train.num_nodes


def strategy(cfg: Config):
    """Lightning's strategy: DDP (gloo on the CPU, NCCL on GPUs) for more than one process, else auto."""
    if cfg.train.distributed == Distributed.DDP or world_size(cfg) > 1:
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy()
    return "auto"


def rewrap(trainer) -> None:
    """Wrap the module in DDP again after parameters became trainable (two-phase fine-tuning): DDP only
    all-reduces the gradients of the parameters that were trainable when it wrapped the module, so
    without this the unfrozen blocks would train apart on each rank. Every rank calls it at the same
    epoch; the new wrapper broadcasts rank 0's weights."""
    from lightning.pytorch.strategies import DDPStrategy

    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy) or trainer.world_size == 1:
        return
    from torch.nn.parallel import DistributedDataParallel

    strategy.model = DistributedDataParallel(strategy.lightning_module, device_ids=strategy.determine_ddp_device_ids(),
                                             **strategy._ddp_kwargs)


class ProcessWatch(Callback):
    """No rank is left waiting for one that has gone.

    The launching process watches the processes Lightning started for the other local devices: when one
    exits with an error (an exception, a kill), it says so in one line, stops the others and exits. A
    started process watches its parent the same way. Under torchrun or SLURM the launcher itself stops
    the others (torchrun by default, srun with --kill-on-bad-exit).
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size == 1 or self._thread is not None:
            return
        procs = launched(trainer)
        parent = os.getppid()
        started_by_launcher = not procs and "LOCAL_RANK" in os.environ and trainer.local_rank > 0
        if not procs and not started_by_launcher:
            return
        self._thread = threading.Thread(target=self._watch, args=(procs, parent, started_by_launcher), daemon=True)
        self._thread.start()

    def _watch(self, procs, parent: int, child: bool) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            if child and os.getppid() != parent:
                log.error("the launching training process (rank 0) has stopped; stopping this one too")
                os._exit(1)
            for rank, proc in enumerate(procs, start=1):
                code = proc.poll()
                if code not in (None, 0):
                    if self._stop.is_set():  # stopped by on_exception here, which sets the flag before the kill
                        return
                    stop_children(procs)
                    log.error(f"the training process of local rank {rank} stopped (exit code {code}); its message "
                              f"is above. Stopped every process; continue with --resume once it is fixed")
                    os._exit(1)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """This process failed: stop watching (the ones it stops next are no news), then stop them."""
        self._stop.set()
        stop_children(launched(trainer))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop.set()


def launched(trainer) -> list:
    """The processes Lightning started from this one for the other local devices (none when it started none)."""
    return list(getattr(trainer.strategy.launcher, "procs", None) or [])


def stop_children(procs) -> None:
    """Stop the processes this one launched (after a failure here, so that none waits for it)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - best effort: the process is being killed anyway
            pass

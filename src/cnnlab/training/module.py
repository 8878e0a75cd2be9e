"""The LightningModule: loss, metrics, optimiser and schedule around an ImageModel.

Everything else (the loop, devices, precision, checkpoints, early stopping) is Lightning's.
"""
from __future__ import annotations

from collections import deque
from typing import Optional

import lightning as L
import torch
import torchmetrics
from torch import nn

from cnnlab.config import SCHEMA_VERSION, OptimConfig
from cnnlab.errors import Diverged
from cnnlab.catalog.optim import OPTIMIZERS, SCHEDULES
from cnnlab.catalog.names import Task

PROGRESS_EVERY = 10
AUX_WEIGHT = 0.4  # Szegedy et al. 2016 (Inception-v3): auxiliary classifier loss weight


class StandardisedMSE(nn.Module):
    def __init__(self, std: float) -> None:
        super().__init__()
        self.scale = 1.0 / float(std) ** 2

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out, y) * self.scale


class FiniteChecks:
    """Whether each step's loss, gradients and running statistics are finite, without a host round trip.

    Each step's values go into a queue as one small tensor and are read once they are on the host: on the
    CPU at the next step; on a GPU once their asynchronous copy has arrived, a step or two later (reading a
    value back at once would wait for the GPU's queue to drain every step: ResNet-50 on an H200 ran at 0.75x
    a bare loop's throughput, benchmarks/gpu.py). All of them are read before any checkpoint is written, so
    a diverged run stops with its best epoch's weights; the last update may have used the non-finite values,
    and its weights are never saved. With several processes, whose decision must be collective, each step's
    values are checked at once instead (``immediate``), before backward and before the update.
    """

    def __init__(self) -> None:
        self.pending: deque = deque()

    @staticmethod
    def immediate(task: "ImageTask") -> bool:
        return task.trainer.world_size > 1

    def push(self, values: torch.Tensor, names: list[str], step: int, epoch: int) -> None:
        values, done = values.detach().float(), None
        if values.is_cuda:
            values = torch.empty(values.shape, dtype=values.dtype, pin_memory=True).copy_(values, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        self.pending.append((values, names, step, epoch, done))

    def poll(self, task: "ImageTask", wait: bool = False) -> None:
        while self.pending and (wait or self.pending[0][-1] is None or self.pending[0][-1].query()):
            values, names, step, epoch, done = self.pending.popleft()
            if done is not None:
                done.synchronize()
            finite = torch.isfinite(values)
            if not bool(finite.all()):
                i = int((~finite).nonzero()[0])
                self.pending.clear()
                raise task._diverged(names[i], float(values[i]), step, epoch)


def watched_slots(model: nn.Module, gradients: bool) -> list[tuple[str, dict, str, bool]]:
    """(what, the dict holding it, its key, whether its gradient is meant) for every parameter (when
    ``gradients``) and floating-point buffer of ``model``: each step reads the current tensors from their
    slots (moving a module to a device replaces its buffers) without walking the module tree again."""
    slots, seen = [], set()
    kinds = [("_parameters", "the gradient of")] if gradients else []
    for attr, what in kinds + [("_buffers", "the running statistic")]:
        for prefix, module in model.named_modules():
            held = getattr(module, attr)
            for key, tensor in held.items():
                if tensor is None or id(tensor) in seen or (attr == "_buffers" and not tensor.is_floating_point()):
                    continue
                seen.add(id(tensor))
                slots.append((f"{what} {prefix + '.' if prefix else ''}{key}", held, key, attr == "_parameters"))
    return slots


class ImageTask(L.LightningModule):
    """Classification (logits + cross-entropy) or regression (linear output + MSE)."""

    def __init__(self, model: nn.Module, task: str, num_outputs: int, optim: OptimConfig,
                 monitor: str = "val_loss", full_batch_size: int = 0, backbone_lr_mult: float = 1.0,
                 check_gradients: bool = True, channels_last: bool = False, compile: bool = False,
                 config: Optional[dict] = None, class_weights: Optional[torch.Tensor] = None,
                 target_std: Optional[float] = None, lr: Optional[float] = None, watch_finite: bool = True) -> None:
        super().__init__()
        # The one rate the optimiser starts from (Lightning's tuner convention: the ``lr`` attribute); the
        # plan resolved it, --lr auto's range test included. ``backbone_lr_mult``: the backbone's ratio to it.
        self.lr = optim.lr if lr is None else float(lr)
        if config is not None:  # every checkpoint carries the resolved config (plain data: weights_only loads it)
            self.save_hyperparameters({"config": config, "schema_version": SCHEMA_VERSION})
        # NHWC activations (faster convolutions on tensor cores and oneDNN); the weights' names stay the same.
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # torch.compile'd forward, held outside the module tree so the state dict keeps its keys.
        self._forward = {"fn": torch.compile(model) if compile else model}
        # Stop at the first non-finite gradient, before the optimiser step (not with fp16 loss scaling,
        # whose scaler skips such steps by design).
        self.check_gradients = check_gradients
        self._sums: dict[str, torch.Tensor] = {}  # stage -> [loss x n, correct, n] of this epoch, on the device
        self._checks = FiniteChecks()
        self.watch_finite = watch_finite  # off only in the LR finder's probe, which drives the loss up on purpose
        self.model, self.task, self.optim_cfg, self.monitor = model, task, optim, monitor
        self.backbone_lr_mult = backbone_lr_mult
        # ``batch`` mode: the loss is rescaled so that accumulated chunks give the exact full-batch gradient.
        self.full_batch_size = full_batch_size
        if task == Task.CLASSIFICATION:
            # --class-weights auto: each class's loss weighed by its inverse frequency (a buffer: it moves with
            # the module and travels in the checkpoint)
            self.loss_fn: nn.Module = nn.CrossEntropyLoss(weight=class_weights)
            # Accuracy is counted directly (exact over the epoch); a torchmetrics object updated and logged
            # every step cost ~4 ms of a ~30 ms CPU step (benchmarks/overhead.py).
            self.metrics = nn.ModuleDict()
        else:
            # Standardised targets: the model's output is in the targets' units (ImageModel undoes the
            # scaling), and the loss is the MSE of the standardised values, MSE / std^2.
            self.loss_fn = StandardisedMSE(target_std or 1.0)
            self.metrics = nn.ModuleDict({
                f"{stage}_{name}": metric() for stage in ("train", "val", "test") for name, metric in (
                    ("mae", torchmetrics.MeanAbsoluteError),
                    ("rmse", lambda: torchmetrics.MeanSquaredError(squared=False)),
                    ("r2", torchmetrics.R2Score),
                )
            })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward["fn"](x)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        out = self(x)
        if isinstance(out, tuple):  # Inception-v3 in training: (main, auxiliary) logits
            out, aux = out
            loss = self._loss(out, y, stage) + AUX_WEIGHT * self._loss(aux, y, stage)
        else:
            loss = self._loss(out, y, stage)
        n, value = len(y), loss.detach().float()
        # Lightning's self.log costs ~1 ms per call, a tenth of a small CNN's CPU step: sum on the device
        # here and log the exact epoch means once (benchmarks/overhead.py), over every rank's images.
        # (no torch.tensor(n, device=...): a copy from the host would wait for the GPU's queue to drain)
        self._sums[stage] = self._sums.get(stage, 0) + torch.stack([value * n, self._correct(out, y), value.new_full((), n)])
        for name, metric in self.metrics.items():  # regression: torchmetrics accumulates on the device
            if name.startswith(stage):
                metric.update(out.detach(), y)
        if stage == "train" and self.trainer.is_last_batch:
            self._log_sums("train")
            self.epoch_complete = True  # a budget (max_time) can end an epoch before its last batch
        return loss

    def _loss(self, out: torch.Tensor, y: torch.Tensor, stage: str) -> torch.Tensor:
        """The training loss smooths the class targets (label_smoothing); validation and test losses are the
        data's plain negative log-likelihood, what 'best', early stopping and calibration compare."""
        smoothing = self.optim_cfg.label_smoothing if stage == "train" else None
        if smoothing:
            return nn.functional.cross_entropy(out, y, weight=self.loss_fn.weight, label_smoothing=smoothing)
        return self.loss_fn(out, y)

    def _correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task != Task.CLASSIFICATION:
            return torch.zeros((), device=y.device)
        return (out.detach().argmax(1) == y).sum().float()

    def _log_sums(self, stage: str) -> None:
        """The epoch's loss and accuracy over every rank's images: the sums are added up across ranks
        (every rank has the same number of training steps; evaluation shards are not padded)."""
        sums = self._sums.pop(stage, None)
        if sums is None:
            sums = torch.zeros(3, device=self.device)
        loss_sum, correct, count = self.trainer.strategy.reduce(sums, reduce_op="sum")
        logged = {f"{stage}_loss": loss_sum / count}
        if self.task == Task.CLASSIFICATION:
            logged[f"{stage}_acc"] = correct / count
        # sync_dist: the values are already global and equal on every rank; it keeps Lightning's
        # distributed checks satisfied at the cost of one small all-reduce an epoch.
        self.log_dict(logged, on_step=False, on_epoch=True, sync_dist=True, batch_size=1, prog_bar=stage == "val")
        for name, metric in self.metrics.items():  # logged once: Lightning computes, syncs and resets them
            if name.startswith(stage):
                self.log(name, metric, on_step=False, on_epoch=True)

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)
        for name, metric in self.metrics.items():  # an epoch cut short by a budget is never logged
            if name.startswith("train"):
                metric.reset()
        self.epoch_complete = False

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)
        if self.trainer.world_size > 1:
            # Each rank's last training step updated its own BatchNorm statistics; every rank evaluates with
            # rank 0's, the ones its checkpoint and model.safetensors keep.
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def on_validation_epoch_end(self) -> None:
        self._log_sums("val")

    def on_test_epoch_start(self) -> None:
        self._sums.pop("test", None)

    def on_test_epoch_end(self) -> None:
        self._log_sums("test")

    def _diverged(self, what: str, value: float, step: Optional[int] = None, epoch: Optional[int] = None) -> Diverged:
        step = self.global_step if step is None else step
        epoch = self.current_epoch if epoch is None else epoch
        return Diverged(f"training diverged in epoch {epoch + 1}, step {step}: {what} is {value:g}. "
                        f"Lower the learning rate (--lr, now {self.lr:g}), or with mixed precision try "
                        f"--precision 32-true")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        self._checks.poll(self)  # earlier steps' checks whose values have reached the host
        loss = self._shared_step(batch, "train")
        if self.watch_finite and self._checks.immediate(self):  # before backward: nothing non-finite reaches the weights
            if not self._all_finite(bool(torch.isfinite(loss))):
                raise self._diverged("the loss" if not torch.isfinite(loss) else "another rank's loss", float(loss))
        elif self.watch_finite:
            self._checks.push(loss.reshape(1), ["the loss"], self.global_step, self.current_epoch)
        if batch_idx % PROGRESS_EVERY == 0 and self.trainer.progress_bar_callback is not None:
            # the bar redraws every 10th step anyway; with no bar (a log file), nothing reads it
            self.log("loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, logger=False)
        if self.full_batch_size:
            # Lightning divides by the accumulation count K; scale so the sum over chunks is sum(loss_i) / N.
            # DDP then averages over the ranks, each holding its share of the set: times the world size.
            k = self.trainer.accumulate_grad_batches
            loss = loss * len(batch[1]) * k * self.trainer.world_size / self.full_batch_size
        return loss

    def _all_finite(self, finite: bool) -> bool:
        """Whether every rank's values are finite: all ranks stop together, or none does."""
        if self.trainer.world_size == 1:
            return finite
        return self.trainer.strategy.reduce_boolean_decision(finite, all=True)

    def on_train_start(self) -> None:
        self._slots = None  # after the move to the device, and after any callback's change of check_gradients

    def _watched(self) -> tuple[list[str], list[torch.Tensor]]:
        if getattr(self, "_slots", None) is None:
            self._slots = watched_slots(self.model, self.check_gradients)
        names, tensors = [], []
        for what, held, key, gradient in self._slots:
            tensor = held[key].grad if gradient else held[key]
            if tensor is not None:  # a frozen parameter has no gradient
                names.append(what)
                tensors.append(tensor)
        return names, tensors

    def on_before_optimizer_step(self, optimizer) -> None:
        """Before each update: gradients and the statistics the forward pass updated (BatchNorm's running
        mean and variance can overflow while the normalised loss stays finite) must all be finite. One norm
        per tensor (torch._foreach_norm, one pass over the gradients) is what is checked."""
        if not self.watch_finite:
            return
        names, tensors = self._watched()
        if not tensors:
            return
        norms = torch.stack(torch._foreach_norm(tensors))
        if not self._checks.immediate(self):
            self._checks.push(norms, names, self.global_step, self.current_epoch)
            return
        if not self._all_finite(bool(torch.isfinite(norms).all())):  # one sync per step; on failure find which
            if bool(torch.isfinite(norms).all()):
                raise self._diverged("another rank's gradient or statistic", float("nan"))
            i = int((~torch.isfinite(norms)).nonzero()[0])
            raise self._diverged(names[i], float(norms[i]))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.trainer.is_last_batch:  # every check of the epoch is read before its checkpoint is written
            self._checks.poll(self, wait=True)

    def on_train_epoch_end(self) -> None:  # a budget can end the epoch early; before its checkpoint
        self._checks.poll(self, wait=True)

    def on_train_end(self) -> None:
        self._checks.poll(self, wait=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def param_groups(self) -> list[dict]:
        """Trainable parameters; with a backbone multiplier, the backbone gets ``lr x backbone_lr_mult``."""
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        features = getattr(getattr(self.model, "net", None), "features", None)
        if self.backbone_lr_mult == 1.0 or features is None:
            return [{"params": trainable}]
        backbone = {id(p) for p in features.parameters()}
        groups = [{"params": [p for p in trainable if id(p) not in backbone]},
                  {"params": [p for p in trainable if id(p) in backbone], "lr": self.lr * self.backbone_lr_mult}]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self):
        optim = self.optim_cfg.model_copy(update={"lr": self.lr})  # the builders read the rate from the config
        opt = OPTIMIZERS.get(optim.optimizer)(self.param_groups(), optim)
        sched = SCHEDULES.get(optim.schedule)(opt, optim, self.trainer, self.monitor)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}

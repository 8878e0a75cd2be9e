"""The training module's finiteness checks: read a step late (no host round trip a step), yet always before a
checkpoint is written, naming what went non-finite, where."""
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

import cnnlab
from cnnlab import files, rundir
from cnnlab.errors import Diverged
from cnnlab.training.module import FiniteChecks, watched_slots
from conftest import TINY

STEPS = 3  # 48 training images of the bars fixture, batches of 16


class Poison(Callback):
    """Before one update (the module's own check runs after the callbacks'), fill one tensor with inf."""

    def __init__(self, epoch: int, batch: int, pick) -> None:
        self.epoch, self.batch, self.pick = epoch, batch, pick

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.now = (trainer.current_epoch, batch_idx)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.now == (self.epoch, self.batch):
            with torch.no_grad():
                self.pick(pl_module.model).fill_(float("inf"))


def first_weight_gradient(model: nn.Module) -> torch.Tensor:
    return next(p for p in model.parameters() if p.dim() > 1).grad


def first_running_var(model: nn.Module) -> torch.Tensor:
    return next(b for n, b in model.named_buffers() if n.endswith("running_var"))


def checkpoint_epochs_and_finiteness(out):
    found = {}
    for ckpt in (out / rundir.CHECKPOINTS).glob("*.ckpt"):
        state = files.load_torch(ckpt)
        found[ckpt.name] = (state["epoch"], all(torch.isfinite(v).all() for v in state["state_dict"].values()
                                                if v.is_floating_point()))
    return found


@pytest.mark.parametrize("pick,what", [(first_weight_gradient, "the gradient of net.features.0.body.0.0.weight"),
                                       (first_running_var, "the running statistic net.features.0.body.0.1.running_var")],
                         ids=["gradient", "running-statistic"])
def test_a_non_finite_value_at_an_epochs_last_step_stops_the_run_before_its_checkpoint(tmp_path, bars, pick, what):
    # The last step of the second epoch: its values are read before that epoch's checkpoints are written
    # (without that read, the next read would come a step later, after the checkpoint saved inf weights).
    out = tmp_path / "run"
    with pytest.raises(Diverged) as caught:
        cnnlab.train(bars, out, epochs=3, batch_size=16, optimizer="adam", lr=0.01,
                     callbacks=[Poison(1, STEPS - 1, pick)], **TINY)
    assert str(caught.value).startswith(f"training diverged in epoch 2, step {2 * STEPS - 1}: {what} is inf.")
    saved = checkpoint_epochs_and_finiteness(out)
    assert saved and all(epoch == 0 and finite for epoch, finite in saved.values()), saved


def test_a_non_finite_value_mid_epoch_is_caught_at_the_next_step(tmp_path, bars):
    seen = []

    class Steps(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.global_step)

    with pytest.raises(Diverged, match=r"in epoch 1, step 0: the gradient of .* is inf"):
        cnnlab.train(bars, tmp_path / "run", epochs=2, batch_size=16, callbacks=[Poison(0, 0, first_weight_gradient),
                                                                               Steps()], **TINY)
    assert seen == [0, 1]  # read at the start of the next step, not a whole epoch later


class Stub:
    def _diverged(self, what, value, step, epoch):
        return Diverged(f"{what} {value:g} {step} {epoch}")


def test_finite_checks_read_a_step_late_report_the_first_failure_and_forget_the_rest():
    checks = FiniteChecks()
    checks.push(torch.tensor([1.0, 2.0]), ["a", "b"], 0, 0)
    checks.poll(Stub())  # finite: nothing raised, nothing left
    assert not checks.pending
    checks.push(torch.tensor([1.0, float("nan"), float("inf")]), ["a", "b", "c"], 7, 2)
    checks.push(torch.tensor([float("inf")]), ["later"], 8, 2)
    with pytest.raises(Diverged, match="^b nan 7 2$"):
        checks.poll(Stub())
    assert not checks.pending


def test_watched_slots_are_the_parameters_then_the_float_buffers_and_follow_replaced_buffers():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(shared, shared))
    slots = watched_slots(model, gradients=True)
    expected = [f"the gradient of {n}" for n, _ in model.named_parameters()] + \
               [f"the running statistic {n}" for n, b in model.named_buffers() if b.is_floating_point()]
    assert [what for what, *_ in slots] == expected  # the shared layer once; num_batches_tracked (int) not at all
    model[1].running_var = torch.full((2,), float("inf"))  # as moving a module to a device replaces its buffers
    what, held, key, gradient = next(s for s in slots if s[0].endswith("running_var"))
    assert held[key] is model[1].running_var and not gradient
    assert [w for w, *_ in watched_slots(model, gradients=False)] == expected[len(list(model.parameters())):]

"""The plan: one frozen, fully concrete set of settings, made once before anything is built or written."""
from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import cnnlab
from cnnlab import rundir
from cnnlab.config import Config, TransferConfig, with_overrides
from cnnlab.data.prepare import prepare
from cnnlab.errors import ConfigError
from cnnlab.models.registry import resolve_preprocessing
from cnnlab.catalog import strategies
from cnnlab.training.lr_find import MIN_LR, RangeTest
from cnnlab.training.plan import Plan, make_plan, settle
from cnnlab.catalog.strategies import NAMES, STRATEGIES
from cnnlab.training.transfer import TransferSchedule
from conftest import TINY

SRC = Path(cnnlab.__file__).parent


def _plan(bars, find_lr=None, **overrides):
    cfg = with_overrides(Config(), {**TINY, "batch_size": 16, **overrides})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(bars)})})
    settled = settle(cfg)
    prepared = prepare(settled.config, lambda probed: resolve_preprocessing(settled.config, probed, settled.weights))
    return make_plan(settled, prepared, find_lr=find_lr), prepared


def _loose(tree, path=""):
    """Every leaf of a config tree that is still a choice left open (None or "auto") among the settings the
    plan resolves."""
    resolved = {"optim.lr", "optim.schedule", "train.epochs", "augment.preset", "train.channels_last",
                "model.head", "model.dense"}
    found = []
    for key, value in tree.items():
        here = f"{path}{key}"
        if isinstance(value, dict):
            found += _loose(value, f"{here}.")
        elif here in resolved and (value is None or value == "auto"):
            found.append(here)
    return found


def test_the_plan_is_frozen_and_every_setting_it_resolves_is_concrete(bars):
    plan, prepared = _plan(bars)
    assert not _loose(plan.config.model_dump(mode="json"))
    assert (plan.lr, plan.config.optim.lr) == (0.003, 0.003)  # from scratch: the recipe's rate
    assert plan.epochs == plan.config.train.epochs == 30  # 48 training images: 3 steps an epoch -> the 30 cap
    assert plan.strategy is STRATEGIES.get("full") and plan.weights == "none" and not plan.cached
    assert (plan.monitor, plan.mode, plan.num_outputs) == ("val_loss", "min", len(prepared.classes))
    assert (plan.machine.accelerator, plan.machine.world_size) == ("cpu", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.lr = 0.1


def test_lr_auto_is_found_on_a_probe_plan_and_the_plan_keeps_the_number(bars):
    probes = []

    def find_lr(probe: Plan) -> RangeTest:
        probes.append(probe)
        return RangeTest(0.0123, (1e-6, 1.0), (2.0, 1.0))

    plan, _ = _plan(bars, find_lr=find_lr, lr="auto")
    assert len(probes) == 1 and probes[0].lr == MIN_LR == probes[0].config.optim.lr  # the test's lowest rate
    assert plan.lr == plan.config.optim.lr == 0.0123 and plan.range_test.lr == 0.0123
    assert "auto" not in json.dumps(plan.config.model_dump(mode="json")["optim"])
    with pytest.raises(AssertionError, match="concrete"):  # a plan cannot carry "auto"
        dataclasses.replace(plan, config=plan.config.model_copy(update={"optim": plan.config.optim.model_copy(
            update={"lr": "auto"})}))


def test_the_weights_path_is_looked_at_once(tmp_path, bars, tiny_run, monkeypatch):
    from cnnlab.models import registry, weights
    from cnnlab.training import source_run

    calls = []

    def counted(value):
        calls.append(value)
        return weights.kind(value)

    monkeypatch.setattr(registry, "kind", counted)
    monkeypatch.setattr(source_run, "kind", counted)
    cnnlab.train(bars, tmp_path / "run", epochs=1, weights=str(tiny_run), batch_size=16, progress=False)
    assert calls == [str(tiny_run)]


class _Rates(Callback):
    def on_train_start(self, trainer, pl_module):
        self.task_lr = pl_module.lr
        self.groups = [g["lr"] for g in trainer.optimizers[0].param_groups]


def test_lr_auto_reaches_the_optimizer_through_the_tasks_one_lr_attribute(tmp_path, bars, tiny_run, monkeypatch):
    """The range test's rate is the task's ``lr`` (Lightning's tuner attribute), set when the task is built from
    the plan; fine-tune's backbone group takes backbone_lr_mult of it. config.yaml is written once, with it."""
    from cnnlab import files

    written, write_text = [], files.write_text
    monkeypatch.setattr(files, "write_text", lambda path, text: (written.append(Path(path).name), write_text(path, text)))
    rates = _Rates()
    out = tmp_path / "run"
    cnnlab.train(bars, out, weights=str(tiny_run), lr="auto", strategy="fine-tune", unfreeze=1, backbone_lr_mult=0.25,
                 schedule="none", epochs=1, batch_size=16, progress=False, callbacks=[rates])
    found = json.loads((out / rundir.LR_FIND_JSON).read_text())["suggestion"]
    assert rates.task_lr == found and rates.groups == pytest.approx([found, found * 0.25])
    assert written.count(rundir.CONFIG) == 1 and rundir.load_run_config(out).optim.lr == found
    hparams = torch.load(rundir.checkpoint(out), weights_only=True)["hyper_parameters"]
    assert hparams["config"]["optim"]["lr"] == found


def test_the_joining_blocks_take_the_ratio_of_the_optimizers_rate_not_the_configs():
    """Two-phase reads the head's starting rate from the optimizer, as Lightning's BackboneFinetuning does: a
    rate the config never held (the range test's, or a schedule's) is the one that counts."""
    net = torch.nn.Module()
    net.features = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    net.blocks = lambda: [[net.features[0]], [net.features[1]]]
    module = SimpleNamespace(model=SimpleNamespace(net=net), trainer=SimpleNamespace(strategy=None, world_size=1))
    head = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    optimizer.param_groups[0]["initial_lr"] = 0.04  # what a scheduler records: the rate before it moved it
    schedule = TransferSchedule(strategies.get("two-phase"), unfreeze=1, head_epochs=2, backbone_lr_mult=0.25)
    schedule.freeze_before_training(SimpleNamespace(model=module.model))
    schedule.finetune_function(module, 1, optimizer)
    assert len(optimizer.param_groups) == 1  # still the head-only epochs
    schedule.finetune_function(module, 2, optimizer)
    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["lr"] == pytest.approx(0.04 * 0.25)
    assert all(p.requires_grad for p in net.features[1].parameters())
    assert not any(p.requires_grad for p in net.features[0].parameters())


# ----------------------------------------------------------------------------- strategies: one list, objects
def test_the_config_validates_the_strategy_against_the_registry_once():
    assert get_args(TransferConfig.model_fields["strategy"].annotation) == NAMES == ("auto", *STRATEGIES.names())
    with pytest.raises(ConfigError) as err:
        with_overrides(Config(), {"strategy": "two-phaze"})
    assert all(name in str(err.value) for name in NAMES)


@pytest.mark.parametrize("name,freezes,cacheable,schedule,ratio", [
    ("feature-extract", True, True, "onecycle", 1.0), ("fine-tune", True, False, "onecycle", 0.1),
    ("full", False, False, "onecycle", 1.0), ("two-phase", True, False, "cosine", 1.0)])
def test_each_strategy_says_what_it_freezes_caches_and_how_it_sets_rates(name, freezes, cacheable, schedule, ratio):
    s = strategies.get(name)
    assert (s.freezes_backbone, s.cacheable, s.default_schedule, s.backbone_ratio(0.1)) == (freezes, cacheable,
                                                                                          schedule, ratio)


def test_auto_is_two_phase_from_pretrained_weights_and_full_from_scratch():
    assert strategies.resolve("auto", "imagenet").name == "two-phase" == strategies.resolve("auto", "run").name
    assert strategies.resolve("auto", "none").name == "full"
    assert strategies.resolve("fine-tune", "none").name == "fine-tune"


def test_no_module_but_the_registry_compares_or_maps_strategy_names():
    names = set(STRATEGIES.names())
    found = []
    for path in SRC.rglob("*.py"):
        if path.name == "strategies.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            constants = []
            if isinstance(node, ast.Compare):
                constants = [node.left, *node.comparators]
                constants += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts]
            elif isinstance(node, ast.Dict):
                constants = [k for k in node.keys if k is not None]
            found += [f"{path.relative_to(SRC)}:{c.lineno} {c.value}" for c in constants
                      if isinstance(c, ast.Constant) and c.value in names]
    assert not found, found


def test_the_strategy_catalogue_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, cnnlab.catalog.strategies, cnnlab.config; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr

import copy
import json

import pytest
import torch
import torchvision
import yaml
from lightning.pytorch.callbacks import Callback

import cnnlab
from cnnlab import rundir
from cnnlab.errors import CnnlabError

RESNET = {"model": "resnet18", "input_size": 32, "batch_size": 16, "progress": False, "lr": 0.01}


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """A 'pretrained' ResNet-18 file with non-trivial BatchNorm statistics (no download needed)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return path


class Snapshot(Callback):
    """The backbone's full state (weights and BatchNorm statistics) at the start and after epoch 0."""

    def on_train_start(self, trainer, pl_module):
        self.start = copy.deepcopy(pl_module.model.net.state_dict())
        self.groups = [g["lr"] for g in trainer.optimizers[0].param_groups]

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            self.after_first = copy.deepcopy(pl_module.model.net.state_dict())


def _final(run_dir):
    return cnnlab.load(run_dir).model.net.state_dict()


def _same(a, b, prefix):
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_feature_extract_keeps_backbone_and_batchnorm_stats_bit_identical(tmp_path, bars, resnet_weights):
    snap = Snapshot()
    # Augmentation on: no feature caching, the frozen backbone runs in every training step.
    result = cnnlab.train(bars, tmp_path / "run", epochs=2, strategy="feature-extract", weights=str(resnet_weights),
                          hflip=0.5, callbacks=[snap], **RESNET)
    final = _final(result.run_dir)
    assert _same(final, snap.start, "features.")  # weights and running_mean/var/num_batches_tracked
    assert not _same(final, snap.start, "head.")
    assert len(snap.groups) == 1  # only the head's parameters reach the optimiser


def test_cached_features_train_the_same_head_only(tmp_path, bars, resnet_weights):
    result = cnnlab.train(bars, tmp_path / "run", epochs=2, strategy="feature-extract", weights=str(resnet_weights),
                          **RESNET)
    loaded = torch.load(resnet_weights, weights_only=True)
    final = _final(result.run_dir)
    assert torch.equal(final["features.layer3.0.conv1.weight"], loaded["layer3.0.conv1.weight"])
    assert torch.equal(final["features.bn1.running_var"], loaded["bn1.running_var"])
    assert float(rundir.read_csv(result.run_dir / rundir.METRICS)[-1]["train_acc"]) > 0.5
    assert cnnlab.evaluate(result.run_dir, bars, split="all")["accuracy"] > 0.5


def test_fine_tune_trains_the_top_blocks_at_a_lower_rate(tmp_path, bars, resnet_weights):
    snap = Snapshot()
    result = cnnlab.train(bars, tmp_path / "run", epochs=1, strategy="fine-tune", unfreeze=1, backbone_lr_mult=0.1,
                          weights=str(resnet_weights), schedule="none", callbacks=[snap], **RESNET)
    final = _final(result.run_dir)
    assert not _same(final, snap.start, "features.layer4.")
    assert _same(final, snap.start, "features.layer3.") and _same(final, snap.start, "features.conv1.")
    assert snap.groups == pytest.approx([0.01, 0.001])


def test_two_phase_unfreezes_after_the_head_epochs(tmp_path, bars, resnet_weights):
    snap = Snapshot()
    result = cnnlab.train(bars, tmp_path / "run", epochs=2, head_epochs=1, unfreeze=1, weights=str(resnet_weights),
                          schedule="cosine", callbacks=[snap], **RESNET)
    assert _same(snap.after_first, snap.start, "features.")  # phase 1: head only
    final = _final(result.run_dir)
    assert not _same(final, snap.start, "features.layer4.")  # phase 2: top block trained
    assert _same(final, snap.start, "features.layer2.")
    rows = rundir.read_csv(result.run_dir / rundir.METRICS)
    assert rows[0]["lr_0_1"] == "" and float(rows[1]["lr_0_1"]) > 0  # the backbone's group joined in epoch 1


@pytest.mark.parametrize("flags,message", [
    ({"strategy": "fine-tune", "unfreeze": 9}, "--unfreeze 9 is more than resnet18 has: 5 blocks"),
    ({"schedule": "onecycle"}, "onecycle schedule cannot follow two-phase"),
])
def test_bad_transfer_settings(tmp_path, bars, resnet_weights, flags, message):
    with pytest.raises(CnnlabError, match=message):
        cnnlab.train(bars, tmp_path / "run", epochs=1, weights=str(resnet_weights), **{**RESNET, **flags})


def test_transfer_from_a_previous_run_to_other_classes(tmp_path, tiny_run, shapes_dir):
    snap = Snapshot()
    result = cnnlab.train(shapes_dir, tmp_path / "run", epochs=1, weights=str(tiny_run), progress=False,
                          callbacks=[snap])
    source = cnnlab.load(tiny_run).model.net.state_dict()
    assert all(torch.equal(snap.start[k], v) for k, v in source.items() if k.startswith("features."))
    run = rundir.Run.open(result.run_dir)
    assert run.classes == ["circle", "square", "triangle"]
    assert run.config.model.blocks == rundir.Run.open(tiny_run).config.model.blocks  # the source's architecture
    assert run.pre.size == (16, 16) and run.pre.channels == 3
    assert run.training_info()["strategy"] == "two-phase"


def test_a_run_of_another_model_is_refused(tmp_path, tiny_run, shapes_dir):
    with pytest.raises(CnnlabError, match="holds a cnn-small, not a resnet18"):
        cnnlab.train(shapes_dir, tmp_path / "run", model="resnet18", weights=str(tiny_run), epochs=1)


SEEDS = 8
PER_CLASS = 2
EPOCHS = 5
MARGIN = 0.05
FROZEN = {"strategy": "feature-extract"}


def few_shot_transfer(root, seeds=SEEDS, per_class=PER_CLASS, pretrain_epochs=2, transfer=FROZEN, first_seed=0,
                      epochs=EPOCHS):
    """Digits 5-9 with ``per_class`` images a class and ``epochs`` epochs, from scratch and from a cnn-small
    pretrained on digits 0-4 (by default its features frozen, the head trained on them).

    Each seed draws its own training images and trains both models with that seed; returns
    [(scratch accuracy, transferred accuracy)] on the 500 test digits 5-9. benchmarks/transfer.py prints
    the spread of this exact setting.
    """
    import shutil

    import numpy as np

    from cnnlab.data.samples import export

    export("mnist-5k", root / "mnist")

    def subset(split, dst, classes, n=None, seed=0):
        rng = np.random.default_rng(seed)
        for c in classes:
            files = sorted((root / "mnist" / split / c).glob("*.png"))
            if n:
                files = [files[i] for i in rng.choice(len(files), n, replace=False)]
            (dst / c).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, dst / c / f.name)

    low, high = [str(i) for i in range(5)], [str(i) for i in range(5, 10)]
    subset("train", root / "source", low)
    cnnlab.train(root / "source", root / "pre", epochs=pretrain_epochs, lr=0.003, schedule="onecycle", val_split=0.0,
                 progress=False, overwrite=True)
    results = []
    for seed in range(first_seed, first_seed + seeds):
        target = root / f"target-{seed}"
        subset("train", target / "train", high, per_class, seed)
        subset("test", target / "test", high)
        common = {"progress": False, "batch_size": 10, "val_split": 0.0, "lr": 0.003, "epochs": epochs, "seed": seed,
                  "overwrite": True}
        cnnlab.train(target, root / f"scratch-{seed}", **common)
        cnnlab.train(target, root / f"transfer-{seed}", weights=str(root / "pre"), **transfer, **common)
        results.append((cnnlab.evaluate(root / f"scratch-{seed}", target, plot=False)["accuracy"],
                        cnnlab.evaluate(root / f"transfer-{seed}", target, plot=False)["accuracy"]))
    return results


def test_transfer_beats_scratch_with_few_images_on_the_mean_of_eight_seeds(tmp_path):
    """Transfer from digits 0-4 to digits 5-9 with 2 images a class and 5 epochs. One seed's gain is noisy
    (its spread is about 0.11: which 2 images are drawn matters), so the test asserts on the mean of 8 seeds,
    whose standard error is about 0.04: the mean gain measured here is about 0.21, four standard errors
    above the required 0.05 (benchmarks/transfer.py prints these figures)."""
    import statistics

    results = few_shot_transfer(tmp_path)
    gains = [transferred - scratch for scratch, transferred in results]
    assert statistics.mean(gains) >= MARGIN, results


def test_lr_auto_with_two_phase_gives_the_joining_blocks_their_share_of_the_found_rate(tmp_path, bars, tiny_run):
    """--lr auto used to reach the transfer schedule as the string "auto" ("auto" * 0.1: a TypeError, and a
    half-written run): the rate is found first, and the blocks that join take it times backbone_lr_mult."""
    out = tmp_path / "run"
    result = cnnlab.train(bars, out, weights=str(tiny_run), lr="auto", epochs=3, head_epochs=1, batch_size=16,
                          progress=False)
    found = json.loads((out / rundir.LR_FIND_JSON).read_text())["suggestion"]
    config = yaml.safe_load((out / rundir.CONFIG).read_text())
    assert config["optim"]["lr"] == found and config["transfer"]["strategy"] == "auto" and result.epochs == 3
    rows = rundir.read_csv(out / rundir.METRICS)
    assert float(rows[0]["lr"]) == pytest.approx(found, rel=1e-5) and not rows[0].get("lr_0_1")  # head only
    mult = config["transfer"]["backbone_lr_mult"]
    assert mult < 1 and float(rows[1]["lr_0_1"]) == pytest.approx(found * mult, rel=1e-5)  # the top blocks joined
    assert rundir.read_weights_metadata(out / rundir.WEIGHTS)["config"]["optim"]["lr"] == found

"""The augmentation experiment: cnnlab's presets on 1,000 training images, and a negative control that does not
preserve the label; --quick asserts the directions with margins measured against the seed spread."""
from __future__ import annotations

import statistics

import pytest

import cnnlab
from cnnlab.catalog.augmentations import PRESETS
from cnnlab.config import load_config
from cnnlab.experiments.catalog import EXPERIMENTS

EXP = EXPERIMENTS.get("augmentation")()


@pytest.mark.parametrize("quick", [True, False])
def test_every_arm_is_a_valid_cnnlab_config_on_the_same_1000_images(quick):
    budget = EXP.budget(quick)
    configs = {arm.name: load_config(overrides={**budget.overrides, **arm.overrides}) for arm in EXP.arms}
    assert {c.data.train_images for c in configs.values()} == {1000}
    assert configs["none"].augment.preset == "none" and configs["none"].augment.vflip is None
    # the negative control is the no-augmentation arm plus one vertical flip, nothing else
    assert configs["vflip"].augment.preset == "none" and configs["vflip"].augment.vflip == 0.5
    assert configs["vflip"].model_dump(exclude={"augment"}) == configs["none"].model_dump(exclude={"augment"})


def test_light_preserves_digit_labels_and_standard_does_not():
    light, standard = PRESETS.get("light")(), PRESETS.get("standard")()
    assert not {"hflip", "vflip"} & light.keys()  # rotation, shift and zoom only: a 6 stays a 6
    assert standard.get("hflip") == 0.5  # a mirrored digit is no digit: the page reports what it costs


@pytest.mark.slow
def test_augmentation_quick(tmp_path):
    r = cnnlab.experiment("augmentation", quick=True, seeds=2, out=tmp_path)
    none, light = r.values("none", "test_error"), r.values("light", "test_error")
    vflip, standard = r.values("vflip", "test_error"), r.values("standard", "test_error")
    for arm in r.figures:
        for f in r.figures[arm]:
            assert f["scalars"]["test_error"] == pytest.approx(1 - f["scalars"]["test_accuracy"])
    # 3 quick seeds (--train-images 1000, 15 epochs): none 4.3-4.6%, light 2.8-3.2% (0.64-0.70x, mean 0.68x,
    # log10 sd 0.025), standard 8.5-9.8% (1.98-2.23x), vertical flip 7.3-9.0% (1.70-2.05x). At 30 epochs (the
    # earlier quick budget, twice the time): light 0.56-0.61x, standard 1.44-1.54x, vflip 1.58-1.69x.
    # The claim is on the median of the seeds (#27): the mean ratio of the two seeds is below 0.8.
    assert statistics.mean(li / n for li, n in zip(light, none)) < 0.8
    assert all(v > 1.25 * n for v, n in zip(vflip, none))
    assert all(s > 1.2 * n for s, n in zip(standard, none))
    page = r.html_path.read_text()
    assert "upside down" in page and "label" in page

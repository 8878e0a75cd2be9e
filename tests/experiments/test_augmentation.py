"""The augmentation experiment: cnnlab's presets on 1,000 training images, and a negative control that does not
preserve the label; --quick asserts the directions with margins measured against the seed spread."""
from __future__ import annotations

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
    # 3 quick seeds (30 epochs): none 4.8-5.6%, light 3.1-4.0% (0.55-0.82x a seed, 0.68x of the means), standard
    # 8.2-11.5% (1.5-2.3x), vertical flip 7.0-8.5% (1.25-1.74x). The test errors are of 1,000 images (a binomial sd
    # of ~0.6 points at 5%), so the margins are on the means of the seeds.
    assert sum(light) < 0.9 * sum(none)
    assert sum(vflip) > 1.1 * sum(none)
    assert sum(standard) > 1.3 * sum(none)
    page = r.html_path.read_text()
    assert "upside down" in page and "label" in page

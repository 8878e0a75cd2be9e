"""The transfer experiment: arms that are ordinary cnnlab trainings from a source run (--weights RUN --strategy),
class subsets materialised under the experiment's folder, source runs shared by every arm of a seed, and in
--quick mode (2 seeds) the claims with margins measured over 3 seeds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.config import load_config
from cnnlab.errors import CnnlabError
from cnnlab.experiments import engine, units
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.course import QUESTIONS
from cnnlab.experiments.probes import transfer as probe
from cnnlab.experiments.probes import transfer_data as tdata
from cnnlab.experiments.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

EXP = EXPERIMENTS.get("transfer")()


def _digits(root: Path, train: int = 40, test: int = 3) -> Path:
    """A stand-in for the exported digits: train/ and test/ class folders 0-9 of tiny PNGs."""
    for split, count in (("train", train), ("test", test)):
        for c in range(10):
            folder = root / split / str(c)
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((8, 8), c * 20 + i % 7, np.uint8)).save(folder / f"{c}{i:03d}{split[1]}.png")
    return root


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*.png")}


def test_every_arm_is_a_cnnlab_training_that_differs_only_in_weights_and_strategy(tmp_path):
    arms = {a.name: a.params for a in EXP.arms}
    assert set(arms) == {"scratch", "feature-extract", "fine-tune", "two-phase", "far", "random"}
    assert {a.probe for a in EXP.arms} == {"cnnlab.experiments.probes.transfer:arm"}
    configs = {}
    for name, p in arms.items():
        weights = None if p["source"] == "none" else tmp_path / f"source-{p['source']}"
        overrides = probe.target_overrides(weights, p["strategy"], 30, 3)
        configs[name] = load_config(overrides=overrides)  # a valid cnnlab config, as `cnnlab train` takes it
        assert overrides["seed"] == 3 and overrides["augment"] == "none"
    assert configs["scratch"].model.weights == "none" and configs["scratch"].transfer.strategy == "full"
    assert configs["random"].model.weights == "none" and configs["random"].transfer.strategy == "feature-extract"
    assert configs["far"].model.weights.endswith("source-far") and configs["far"].transfer.strategy == "fine-tune"
    for name in ("feature-extract", "fine-tune", "two-phase"):
        assert configs[name].model.weights.endswith("source-near") and configs[name].transfer.strategy == name
    same = {c.model_dump_json(exclude={"model": {"weights"}, "transfer": {"strategy"}}) for c in configs.values()}
    assert len(same) == 1  # the network, epochs, seed and data handling are the same in every arm


def test_budgets_train_at_the_sizes_of_the_issue():
    assert EXP.quick.params["sizes"] == [10, 250] and EXP.quick.seeds == 2
    assert EXP.full.params["sizes"] == [10, 50, 250] and EXP.full.seeds == 5
    for budget in (EXP.quick, EXP.full):
        assert len(budget.params["epochs"]) == len(budget.params["sizes"])
        assert set(budget.params["control_sizes"]) <= set(budget.params["sizes"]) and 10 in budget.params["control_sizes"]
    assert probe._sizes([10, 250], [30, 5], True, [10]) == {10: 30}
    assert probe._sizes([10, 250], [30, 5], False, [10]) == {10: 30, 250: 5}
    with pytest.raises(CnnlabError, match="one epoch count per size"):
        probe._sizes([10, 250], [30], False, [])
    with pytest.raises(CnnlabError, match="not among the sizes"):
        probe._sizes([10, 250], [30, 5], True, [50])


def test_target_subsets_are_seeded_nested_disjoint_and_share_the_test_digits(tmp_path):
    digits, out = _digits(tmp_path / "digits"), tmp_path / "out"
    small, large = tdata.target(digits, out, 0, 5), tdata.target(digits, out, 0, 10)
    assert small.is_relative_to(out / "data") and large.is_relative_to(out / "data")
    for c in tdata.TARGET:
        s_train, l_train = _names(small / "train" / c), _names(large / "train" / c)
        assert len(s_train) == 5 and len(l_train) == 10 and s_train < l_train  # nested: a learning curve
        assert len(_names(small / "val" / c)) == tdata.VAL_PER_CLASS
        assert _names(small / "val" / c) == _names(large / "val" / c)  # one validation set per seed
        assert not _names(large / "val" / c) & l_train
    assert sorted(p.name for p in (small / "train").iterdir()) == list(tdata.TARGET)
    assert (small / "test").is_symlink() and _names(small / "test") == _names(digits / "test") - {
        p.name for c in tdata.NEAR for p in (digits / "test" / c).iterdir()}
    other = tdata.target(digits, out, 1, 5)
    assert _names(other / "train") != _names(small / "train")  # another seed, another draw
    assert (small / "train" / "5").iterdir().__next__().stat().st_nlink >= 2  # links to the export, not copies
    near = tdata.near_source(digits, out)
    assert sorted(p.name for p in near.iterdir() if not p.name.startswith(".")) == list(tdata.NEAR)
    assert _names(near) == {p.name for c in tdata.NEAR for p in (digits / "train" / c).iterdir()}


def test_materialising_again_reuses_the_folder_and_never_takes_over_a_foreign_one(tmp_path):
    digits, out = _digits(tmp_path / "digits"), tmp_path / "out"
    first = tdata.target(digits, out, 0, 5)
    stamp = (first / tdata.DONE).stat().st_mtime_ns
    assert tdata.target(digits, out, 0, 5) == first and (first / tdata.DONE).stat().st_mtime_ns == stamp
    foreign = out / "data" / "target" / "seed-2" / "n-5"
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(CnnlabError, match="not finished by the transfer experiment"):
        tdata.target(digits, out, 2, 5)
    assert (foreign / "mine.txt").read_text() == "keep"
    with pytest.raises(CnnlabError, match="lacks"):
        tdata.exported(str(tmp_path / "digits" / "train"), out)  # class folders, no train/ and test/


def test_a_shared_run_is_reused_when_finished_and_refused_with_another_setting(tmp_path, tiny_run, bars, monkeypatch):
    import shutil

    import cnnlab.training.fit as fit

    run = tmp_path / "trainings" / "source-near" / "seed-0"
    shutil.copytree(tiny_run, run)
    setting = {"data": os.path.relpath(bars, run), "overrides": {"epochs": 2}}
    Path(str(run) + ".setting.json").write_text(json.dumps(setting))
    monkeypatch.setattr(fit, "train", lambda *a, **k: pytest.fail("a finished shared run is read, not trained"))
    assert probe.shared_run(run, bars, {"epochs": 2}) == run
    with pytest.raises(CnnlabError, match="another setting"):
        probe.shared_run(run, bars, {"epochs": 3})
    Path(str(run) + ".setting.json").unlink()  # a run the experiment did not make: never continued or reused
    with pytest.raises(CnnlabError, match="not made by the transfer experiment"):
        probe.shared_run(run, bars, {"epochs": 2})


def test_a_probe_that_takes_out_gets_the_experiment_folder_and_others_do_not(tmp_path, monkeypatch):
    from cnnlab.experiments.spec import Arm, Budget

    seen = {}

    def sharing(seed, data, out, k=1):
        seen.update(out=out, k=k)
        return {"scalars": {"x": 1.0}}

    def plain(seed, data, k=1):  # no ``out``: called exactly as before
        return {"scalars": {"x": float(k)}}

    monkeypatch.setattr(units, "resolve_probe", lambda ref: sharing if ref == "m:sharing" else plain)
    budget = Budget(2, "digits", params={"k": 3})
    for name in ("sharing", "plain"):
        unit = units.Unit("e", Arm(name, probe=f"m:{name}"), 0, budget, "digits",
                          str(units.unit_dir(tmp_path, name, 0)))
        figures = units.run(unit)
        assert "out" not in figures["setting"]["params"]
    assert seen == {"out": str(tmp_path), "k": 3}
    assert figures["scalars"] == {"x": 3.0}


def test_test_accuracy_reads_a_finished_evaluation_of_the_same_data_and_evaluates_otherwise(tmp_path, tiny_run,
                                                                                           monkeypatch):
    import shutil

    import cnnlab.evaluation.metrics as metrics

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "evaluation.json").write_text(json.dumps({"data": "/d/n-10", "split": "test", "accuracy": 0.123}))
    monkeypatch.setattr(metrics, "evaluate", lambda run_dir, data, plot: {"accuracy": 0.5})
    assert probe.test_accuracy(run, Path("/d/n-10")) == 0.123
    assert probe.test_accuracy(run, Path("/d/n-50")) == 0.5  # another folder: evaluated, not read


def test_units_hand_the_experiment_folder_only_to_probes_that_take_it(tmp_path):
    plan = engine.plan(EXP, tmp_path, None, 2, True, None)
    assert {units.experiment_dir(u) for u in plan} == {tmp_path}
    assert all("out" not in u.setting()["params"] for u in plan)  # where it ran is no setting of the figures
    assert plan[0].data == "mnist-5k"  # probe arms: no export up front; the probe exports and links what it needs


def test_transfer_is_registered_with_its_sources_checks_and_plots():
    papers = {c.source.paper for c in EXP.checks}
    assert any("Yosinski" in p for p in papers) and any("Kornblith" in p for p in papers)
    assert EXP.checks[0].metric == "test_accuracy_10" and (EXP.checks[0].arm, EXP.checks[0].other) == (
        "fine-tune", "scratch")
    assert {p.x for p in EXP.plots} == {"images_per_class"}
    assert EXP.scale_note and "random" in EXP.scale_note
    assert {q.number for q in QUESTIONS if "transfer" in q.experiments} == {10, 14}


@pytest.mark.slow
def test_transfer_quick(tmp_path):
    r = cnnlab.experiment("transfer", quick=True, seeds=2, out=tmp_path)
    verdicts = [(c.claim, c.verdict) for c in r.checks]
    # 3 quick seeds (10 and 250 images per class): scratch 0.848-0.874 at 10, 0.972-0.984 at 250; fine-tuning from
    # digits 0-4 0.880-0.892 at 10 (gain +0.006 to +0.044, sd 0.019: far from the 0.1 "wide margin", so the
    # headline is not supported at this scale) and 0.968-0.972 at 250 (gain -0.012 to -0.002; gap_excess -0.034
    # to -0.005); feature extraction 0.968-0.972 at 250 (fine-tuning minus it: -0.002 to +0.002); the far source
    # 0.864-0.876 at 10 (near minus far +0.016 to +0.024); frozen random features 0.836-0.874 at 10 (transferred
    # frozen features minus them +0.018 to +0.054).
    assert r.checks[0].verdict == NOT_SUPPORTED
    gains = r.values("fine-tune", "gain_10")
    assert all(-0.03 < g < 0.08 for g in gains), gains
    assert [c.verdict for c in r.checks[2:]] == [SUPPORTED] * 3, verdicts
    # The gap check's seed 0 sits ~0.3 sd below its limit (-0.005): another CPU's rounding may leave its 2-seed
    # interval straddling 0, so the test asserts it is never contradicted and each seed's excess stays small.
    assert r.checks[1].verdict in (SUPPORTED, INCONCLUSIVE), verdicts
    assert all(g < 0.01 for g in r.values("fine-tune", "gap_excess"))
    for seed in range(2):
        at = {arm: r.figures[arm][seed]["scalars"] for arm in r.figures}
        assert at["fine-tune"]["test_accuracy_250"] > at["feature-extract"]["test_accuracy_250"] - 0.01
        assert at["fine-tune"]["test_accuracy_10"] > at["far"]["test_accuracy_10"] + 0.005
        assert at["feature-extract"]["test_accuracy_10"] > at["random"]["test_accuracy_10"] + 0.005
        assert at["scratch"]["test_accuracy_250"] > 0.96 > 0.92 > at["scratch"]["test_accuracy_10"]
        assert at["fine-tune"]["gain_10"] == pytest.approx(at["fine-tune"]["test_accuracy_10"]
                                                           - at["scratch"]["test_accuracy_10"])
    assert sorted(p.name for p in (tmp_path / "trainings").iterdir()) == [
        "far-fine-tune", "near-feature-extract", "near-fine-tune", "near-two-phase", "none-feature-extract",
        "none-full", "source-far", "source-near"]  # one source run per seed, shared by every arm that needs it
    page = r.html_path.read_text()
    assert "random" in page and 'id="verdict"' in page and page.count('class="plot"') == 2

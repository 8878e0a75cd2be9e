"""The engine: a user's YAML experiment end to end, identical figures for the same seeds, resuming after a
kill, strict JSON, and the verdict rule."""
from __future__ import annotations

import json
import math

import pytest
import yaml

import cnnlab
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.experiments import stats
from cnnlab.experiments.spec import Check, Source
from conftest import TINY

SETTINGS = {**TINY, "epochs": 3, "lr": 0.01, "batch_size": 16, "optimizer": "adam"}


def _yaml(tmp_path, data, **extra) -> str:
    spec = {"name": "dropout-here", "question": "Does dropout change the validation loss here?",
            "data": str(data), "seeds": 2, "settings": SETTINGS,
            "arms": {"none": {"dropout": 0.0}, "half": {"dropout": 0.5}},
            "measure": "train_loss", "expect": "none < half", **extra}
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _deterministic(result) -> dict:
    """Every figure except those that measure time."""
    return {arm: [{k: v for k, v in f["scalars"].items() if "second" not in k} for f in figs]
            for arm, figs in result.figures.items()}


@pytest.mark.slow
def test_user_yaml_gets_a_page_and_a_verdict_and_the_same_seeds_give_the_same_figures(tmp_path, bars):
    # Dropout 0.5 on a 16-unit dense layer raises the *training* loss (noise on the training pass): a
    # direction far outside seed noise on bars, so the verdict is decided by the interval.
    path = _yaml(tmp_path, bars)
    first = cnnlab.experiment(path, out=tmp_path / "one")
    assert first.verdict == "supported"
    assert len(first.ran) == 4 and all((tmp_path / "one" / "runs" / arm / f"seed-{s}" / "model.safetensors").is_file()
                                       for arm in ("none", "half") for s in (0, 1))
    doc = json.loads(first.json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert doc["schema_version"] == 1 and doc["seeds"] == [0, 1] and doc["verdict"] == "supported"
    assert doc["command"].startswith("cnnlab experiment run ") and path in doc["command"]
    assert set(doc["versions"]) >= {"torch", "cnnlab"}
    assert len(doc["figures"]["half"]) == 2 and "train_loss" in doc["figures"]["half"][0]["scalars"]
    page = first.html_path.read_text()
    assert 'id="verdict"' in page and "Supported" in page and "data:image/png;base64," in page
    assert page.index("Question.") < page.index('id="verdict"') < page.index("<h2>Checks")
    second = cnnlab.experiment(path, out=tmp_path / "two")
    assert _deterministic(second) == _deterministic(first)
    assert [c.outcome.effects for c in second.checks] == [c.outcome.effects for c in first.checks]


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_killed_experiment_resumes_without_retraining_finished_runs(tmp_path, bars):
    path = _yaml(tmp_path, bars)
    out = tmp_path / "exp"

    def kill_after_first(unit, status):
        if status == "ran":
            raise Killed(unit.arm.name)

    with pytest.raises(Killed):
        cnnlab.experiment(path, out=out, hook=kill_after_first)
    done = out / "runs" / "none" / "seed-0" / "model.safetensors"
    stamp = done.stat().st_mtime_ns
    seen = []
    result = cnnlab.experiment(path, out=out, hook=lambda unit, status: seen.append((unit.arm.name, unit.seed, status)))
    assert ("none", 0, "reused") in seen and sum(s == "ran" for *_, s in seen) == 3
    assert result.reused == ["none/seed-0"] and done.stat().st_mtime_ns == stamp
    again = []  # a third call: everything is finished, nothing runs
    cnnlab.experiment(path, out=out, hook=lambda unit, status: again.append(status))
    assert again == ["reused"] * 4


def test_a_run_killed_mid_training_continues_from_its_checkpoint(tmp_path, bars):
    from cnnlab.experiments import units
    from cnnlab.experiments.engine import plan, resolve

    exp = resolve(_yaml(tmp_path, bars, seeds=1))
    unit = plan(exp, tmp_path / "exp", None, 1, False, None)[0]
    cnnlab.train(unit.data, unit.path, **{**units.train_overrides(unit), "epochs": 1})  # as if killed after epoch 1
    figures = units.run(unit)
    assert figures["scalars"]["epochs"] == 1.0  # resumed the run as it was configured, not a new one


def test_bad_yaml_is_one_clear_error(tmp_path, bars):
    with pytest.raises(ConfigError, match="expect names arm 'nope'"):
        cnnlab.experiment(_yaml(tmp_path, bars, expect="nope < half"), out=tmp_path / "x")
    with pytest.raises(ConfigError, match="arm 'half'.*unknown flag '--dropuot'. Did you mean --dropout"):
        cnnlab.experiment(_yaml(tmp_path, bars, arms={"none": {}, "half": {"dropuot": 0.5}}), out=tmp_path / "x")
    with pytest.raises(CnnlabError, match="unknown experiment 'activatons'. Did you mean 'activations'"):
        cnnlab.experiment("activatons")


def test_a_unit_measured_with_another_setting_is_refused_not_overwritten(tmp_path, bars):
    from cnnlab.experiments import units
    from cnnlab.experiments.engine import plan, resolve

    exp = resolve(_yaml(tmp_path, bars))
    unit = plan(exp, tmp_path / "exp", None, 1, False, None)[0]
    unit.path.mkdir(parents=True)
    (unit.path / units.FIGURES).write_text(json.dumps({"setting": {"other": 1}}))
    with pytest.raises(CnnlabError, match="another setting"):
        units.finished(unit)


CHECK = Check("a below b", Source("x"), "m", "a", "<", other="b")


@pytest.mark.parametrize("a,b,verdict", [
    ([1.0, 1.1, 0.9, 1.0, 1.05], [2.0, 2.2, 1.9, 2.1, 2.0], stats.SUPPORTED),  # every seed: a well below b
    ([2.0, 2.2, 1.9, 2.1, 2.0], [1.0, 1.1, 0.9, 1.0, 1.05], stats.NOT_SUPPORTED),  # the other way
    ([1.0, 2.0, 1.0, 2.0, 1.5], [2.0, 1.0, 2.0, 1.0, 1.5], stats.INCONCLUSIVE),  # mixed signs
    ([1.0], [2.0], stats.INCONCLUSIVE),  # one seed: no interval, whatever it shows
])
def test_verdict_follows_the_interval_of_paired_differences(a, b, verdict):
    outcome = stats.decide(CHECK, a, b)
    assert outcome.verdict == verdict
    assert outcome.mean == pytest.approx(sum(y - x for x, y in zip(a, b)) / len(a))


def test_log_scale_margin_is_a_factor_and_exact_checks_need_every_seed():
    log = Check("a 10x below b", Source("x"), "m", "a", "<", other="b", by=10, scale="log")
    assert stats.decide(log, [1e-3, 2e-3], [1.0, 1.0]).verdict == stats.SUPPORTED  # >= 500x
    assert stats.decide(log, [0.5, 0.4], [1.0, 1.0]).verdict == stats.NOT_SUPPORTED  # 2-2.5x, below 10x
    assert stats.decide(log, [1e-3, 2e-3], [1.0, 1.0]).mean == pytest.approx(math.log10(1 / math.sqrt(2e-6)))
    exact = Check("tiny", Source("x"), "err", "a", "<", value=1e-6, exact=True)
    assert stats.decide(exact, [1e-9, 1e-8], [1e-6, 1e-6]).verdict == stats.SUPPORTED
    assert stats.decide(exact, [1e-9, 1e-3], [1e-6, 1e-6]).verdict == stats.INCONCLUSIVE

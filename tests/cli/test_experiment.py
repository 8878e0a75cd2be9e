"""cli/experiment.py: experiment list shows each built-in experiment's question and claim; experiment run hands
its options to the engine (replaced by a recorder here) and prints the verdicts."""
import pytest

from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.engine import CheckResult, ExperimentResult
from cnnlab.experiments.stats import Outcome


def test_list_shows_every_experiment_with_its_headline_claim(cli):
    found = cli("experiment", "list")
    assert found.code == 0
    text = " ".join(found.out.split())
    for name in EXPERIMENTS.names():
        exp = EXPERIMENTS.get(name)()
        assert name in text
        assert " ".join(exp.checks[0].claim.split()[:3]) in text, name


def _check(claim: str, verdict: str) -> CheckResult:
    outcome = Outcome(verdict, [], None, None, None, 0.0, "paired bootstrap", [], [])
    return CheckResult(claim, "lower", "a paper", "1", "val_loss", "linear", False, outcome)


@pytest.fixture
def engine(record, tmp_path):
    import cnnlab.experiments.engine

    result = ExperimentResult(
        name="depth", question="Does depth help?", verdict="supported",
        checks=[_check("deeper is [better]", "supported"), _check("wider is worse", "not supported")],
        seeds=[0, 1], figures={}, out=tmp_path, json_path=tmp_path / "experiment.json",
        html_path=tmp_path / "experiment.html", ran=["a/seed-0", "a/seed-1", "b/seed-0"], reused=["b/seed-1"])
    return record(cnnlab.experiments.engine, "run_experiment", result)


def test_run_passes_its_options_to_the_engine(cli, engine, tmp_path):
    found = cli("experiment", "run", "depth", "--data", "digits", "--seeds", "2", "--quick", "-o", tmp_path,
                "--jobs", "2", "--accelerator", "cpu")
    assert found.code == 0, found.err
    assert engine.args == ("depth", "digits")
    assert engine.kwargs == {"seeds": 2, "quick": True, "out": tmp_path, "jobs": 2, "device": "cpu"}


def test_run_defaults_leave_the_choices_to_the_experiment(cli, engine):
    cli("experiment", "run", "depth.yaml")
    assert engine.args == ("depth.yaml", None)
    assert engine.kwargs == {"seeds": None, "quick": False, "out": None, "jobs": 1, "device": None}


def test_run_prints_each_verdict_and_where_the_page_is(cli, engine, tmp_path):
    found = cli("experiment", "run", "depth")
    text = " ".join(found.out.split())
    assert "depth: Does depth help?" in text
    assert "deeper is [better]" in text and "wider is worse" in text and text.count("no figures") == 2
    assert "not supported" in text
    assert found.err_lines == ["3 arm x seed runs measured, 1 read from before", "verdict: supported",
                               f"page: {tmp_path / 'experiment.html'}", f"figures: {tmp_path / 'experiment.json'}"]


@pytest.mark.parametrize("args,option", [(["--seeds", "0"], "--seeds"), (["--jobs", "0"], "--jobs")])
def test_run_counts_start_at_one(cli, engine, args, option):
    found = cli("experiment", "run", "depth", *args)
    assert found.code == 2 and option in found.err and engine.calls == []


def test_run_names_an_unknown_experiment_in_one_line(cli):
    found = cli("experiment", "run", "no-such-experiment")
    assert found.code == 2 and len(found.err_lines) == 1 and "no-such-experiment" in found.err

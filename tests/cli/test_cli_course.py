"""cli/course.py: `cnnlab course` passes its budget, seeds, jobs and folder to run_course and names the page."""
from __future__ import annotations


def test_course_passes_its_options_and_names_the_page(cli, record, tmp_path):
    import cnnlab.experiments.course

    runner = record(cnnlab.experiments.course, "run_course", tmp_path / "c" / "index.html")
    found = cli("course", "--quick", "--out", tmp_path / "c", "--seeds", "2", "--jobs", "2", "--accelerator", "cpu")
    assert found.code == 0, found.err
    assert runner.args == (tmp_path / "c",)
    kwargs = dict(runner.kwargs)
    hook = kwargs.pop("hook")
    assert kwargs == {"quick": True, "seeds": 2, "jobs": 2, "device": "cpu"} and callable(hook)
    assert found.err_lines[-1] == f"course page: {tmp_path / 'c' / 'index.html'}"


def test_course_says_which_experiments_ran_and_which_are_missing(cli, record, tmp_path, monkeypatch):
    import cnnlab.experiments.course

    def fake(out, **kwargs):
        kwargs["hook"]("backprop", "ran")
        kwargs["hook"]("pooling", "missing")
        return out / "index.html"

    monkeypatch.setattr(cnnlab.experiments.course, "run_course", fake)
    found = cli("course", "--out", tmp_path)
    assert found.code == 0, found.err
    assert found.err_lines[:2] == ["backprop: done", "pooling: no such experiment yet"]


def test_course_refuses_zero_seeds_before_running(cli, record, tmp_path):
    import cnnlab.experiments.course

    runner = record(cnnlab.experiments.course, "run_course")
    found = cli("course", "--seeds", "0", "--out", tmp_path)
    assert found.code == 2 and runner.calls == []


def test_course_says_which_experiments_it_read_from_the_folder(cli, tmp_path, monkeypatch):
    import cnnlab.experiments.course

    def fake(out, **kwargs):
        kwargs["hook"]("pooling", "read")
        return out / "index.html"

    monkeypatch.setattr(cnnlab.experiments.course, "run_course", fake)
    found = cli("course", "--quick", "--out", tmp_path)
    assert found.code == 0, found.err
    assert found.err_lines[0] == f"pooling: finished before, read from {tmp_path / 'pooling'}"

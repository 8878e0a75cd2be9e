"""cnnlab course: the 15 questions, each with its answer, the evidence of its experiments and a command."""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from cnnlab.experiments import course

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "results"


def test_the_course_names_fifteen_questions_each_with_evidence_and_a_command():
    assert [q.number for q in course.QUESTIONS] == list(range(1, 16))
    assert all(q.answer and q.experiments and q.command.startswith("cnnlab ") for q in course.QUESTIONS)
    topics = {q.topic for q in course.QUESTIONS}
    assert {"Activation functions", "Backpropagation", "Pooling", "Transfer learning", "Metrics"} <= topics


def test_the_page_shows_each_measured_verdict_and_says_what_is_not_measured(tmp_path):
    docs = course.read_documents(PUBLISHED)
    assert docs, "no published experiment results under docs/results"
    page = course.course_page(docs)
    assert len(re.findall(r'<section class="q"', page)) == 15
    for name, doc in docs.items():
        assert f'href="{name}/experiment.html"' in page
        assert f'<span class="v {"supported" if doc["verdict"] == "supported" else "not-supported"}">{doc["verdict"]}' in page \
            or doc["verdict"] == "inconclusive"
    missing = [n for n in course.experiment_names() if n not in docs]
    assert page.count('class="v not-measured"') >= len(missing)
    thumbs = re.findall(r'<img class="thumb"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert thumbs and all(base64.b64decode(t)[:8] == b"\x89PNG\r\n\x1a\n" for t in thumbs)


def test_run_course_runs_each_experiment_once_and_resumes(tmp_path, monkeypatch):
    q = course.Question(3, "Backpropagation", "Does backpropagation compute the true gradient?", "Yes.",
                        ("backprop", "no-such-experiment"), "cnnlab experiment run backprop --quick")
    monkeypatch.setattr(course, "QUESTIONS", (q,))
    said = []
    index = course.run_course(tmp_path, quick=True, seeds=1, hook=lambda name, what: said.append((name, what)))
    assert said == [("backprop", "ran"), ("no-such-experiment", "missing")]
    doc = json.loads((tmp_path / "backprop" / "experiment.json").read_text())
    page = index.read_text()
    assert doc["checks"][0]["measured"].split(" (")[0] in page and "no-such-experiment" in page
    stamp = (tmp_path / "backprop" / "experiment.json").stat().st_mtime_ns
    figures = sorted(p.stat().st_mtime_ns for p in (tmp_path / "backprop").rglob("figures.json"))
    course.run_course(tmp_path, quick=True, seeds=1)  # a second run reads every arm x seed back
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "backprop").rglob("figures.json")) == figures
    assert (tmp_path / "backprop" / "experiment.json").stat().st_mtime_ns >= stamp


def _one_question(monkeypatch, name: str) -> None:
    q = course.Question(3, "Backpropagation", "Does backpropagation compute the true gradient?", "Yes.", (name,),
                        f"cnnlab experiment run {name} --quick")
    monkeypatch.setattr(course, "QUESTIONS", (q,))


def test_a_finished_experiment_in_the_folder_is_read_not_run_and_gets_its_page(tmp_path, monkeypatch):
    import cnnlab.experiments.engine

    def never(*args, **kwargs):
        raise AssertionError("ran an experiment the folder already holds")

    _one_question(monkeypatch, "backprop")
    monkeypatch.setattr(cnnlab.experiments.engine, "run_experiment", never)
    published = json.loads((PUBLISHED / "backprop.json").read_text())
    (tmp_path / "backprop").mkdir()
    (tmp_path / "backprop" / "experiment.json").write_text(json.dumps(published))
    said = []
    page = course.run_course(tmp_path, quick=True, hook=lambda name, what: said.append((name, what))).read_text()
    assert said == [("backprop", "read")]  # a full run answers a quick course
    assert published["checks"][0]["measured"] in html.unescape(page)
    own = (tmp_path / "backprop" / "experiment.html").read_text()
    assert f"Verdict: {published['verdict']}" in html.unescape(own) or published["verdict"] in own


def test_a_quick_or_smaller_experiment_does_not_answer_a_larger_course(tmp_path, monkeypatch):
    published = json.loads((PUBLISHED / "backprop.json").read_text())
    folder = tmp_path / "backprop"
    folder.mkdir()
    (folder / "experiment.json").write_text(json.dumps({**published, "quick": True, "seeds": [0, 1]}))
    assert course.finished(folder, quick=True, seeds=None)["seeds"] == [0, 1]
    assert course.finished(folder, quick=True, seeds=2) is not None
    assert course.finished(folder, quick=False, seeds=None) is None  # the full course runs it at full size
    assert course.finished(folder, quick=True, seeds=3) is None  # more seeds asked than it holds
    assert course.finished(tmp_path / "nothing", quick=True, seeds=None) is None

"""Which folders training may write and empty (src/cnnlab/training/claim.py), through cnnlab.train."""
import logging
import shutil

import pytest

import cnnlab
from cnnlab import ownership, rundir
from cnnlab.errors import ConfigError, RunDirError
from conftest import TINY, write_images

QUICK = {**TINY, "epochs": 1, "lr": 0.01, "batch_size": 16}


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("overwrite", [False, True], ids=["train", "overwrite"])
def test_a_folder_that_is_no_cnnlab_run_is_refused_and_left_as_it_was(tmp_path, bars, overwrite):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("x: 1\n")
    (project / "notes.txt").write_text("keep\n")
    before = _tree(project)
    with pytest.raises(RunDirError, match="is not a cnnlab run .*holds config.yaml, notes.txt.*nothing was changed"):
        cnnlab.train(bars, project, overwrite=overwrite, **QUICK)
    assert _tree(project) == before and sorted(p.name for p in project.iterdir()) == ["config.yaml", "notes.txt"]


@pytest.mark.parametrize("overwrite", [False, True], ids=["train", "overwrite"])
def test_a_run_directory_never_overlaps_its_data(tmp_path, overwrite):
    data = write_images(tmp_path / "data", {"a": 8, "b": 8})
    before = _tree(data)
    with pytest.raises(RunDirError, match="lies inside the training data .*nothing was changed"):
        cnnlab.train(data, data / "a" / "run", overwrite=overwrite, **QUICK)
    with pytest.raises(RunDirError, match="holds the training data .*nothing was changed"):
        cnnlab.train(data, data, overwrite=overwrite, **QUICK)
    run = tmp_path / "run"  # a proven run that the data was put into
    cnnlab.train(data, run, **QUICK)
    shutil.copytree(data, run / "data")
    inside = _tree(run)
    with pytest.raises(RunDirError, match="holds the training data"):
        cnnlab.train(run / "data", run, overwrite=overwrite, **QUICK)
    assert _tree(data) == before and _tree(run) == inside and not (data / "a" / "run").exists()


def test_overwrite_empties_only_what_cnnlab_wrote(tmp_path, bars, caplog):
    out = tmp_path / "run"
    cnnlab.train(bars, out, **QUICK)
    first = ownership.read_marker(out)["run_id"]
    (out / "notes.txt").write_text("mine\n")
    (out / rundir.EVALUATION).write_text("{}")  # another model's figures: must go
    (out / rundir.EXPORT).mkdir()
    (out / rundir.EXPORT / rundir.ONNX).write_bytes(b"old")
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        cnnlab.train(bars, out, overwrite=True, seed=1, **QUICK)
    assert (out / "notes.txt").read_text() == "mine\n"
    assert not (out / rundir.EVALUATION).exists() and not (out / rundir.EXPORT).exists()
    assert ownership.read_marker(out)["run_id"] != first and (out / rundir.WEIGHTS).is_file()
    assert "kept 1 entries cnnlab did not write: notes.txt" in caplog.text


def test_a_start_that_fails_before_training_leaves_no_run_behind(tmp_path, bars, tiny_run):
    out = tmp_path / "run"
    # Refused after the data and the model are built (two-phase cannot take one-cycle), before training.
    with pytest.raises(ConfigError, match="onecycle schedule cannot follow two-phase"):
        cnnlab.train(bars, out, weights=str(tiny_run), schedule="onecycle", **QUICK)
    assert not rundir.holds_run(out) and rundir.foreign_entries(out) == []
    assert sorted(p.name for p in out.iterdir()) == [ownership.LOCK, ownership.MARKER]
    result = cnnlab.train(bars, out, weights=str(tiny_run), schedule="cosine", **QUICK)  # the retry, no --overwrite
    assert result.epochs == 1 and rundir.holds_run(out)


def test_resume_of_a_folder_that_is_no_run_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("x: 1\n")
    with pytest.raises(RunDirError, match="nothing to resume .* holds no cnnlab run"):
        cnnlab.train(out=tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_run_from_before_markers_is_resumed_and_overwritten(tmp_path, bars, tiny_run):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / ownership.MARKER).unlink()
    (run / ownership.LOCK).unlink()
    assert cnnlab.train(out=run, resume=True).epochs == 3  # already complete: nothing to do
    assert ownership.read_marker(run) is not None  # it carries a marker now
    (run / ownership.MARKER).unlink()
    cnnlab.train(bars, run, overwrite=True, **QUICK)
    assert len(rundir.read_csv(run / rundir.METRICS)) == 1

"""Artifacts that describe themselves: config.yaml's schema version (older runs still load), the config
and preprocessing inside model.safetensors and inside every checkpoint."""
import json
import shutil

import pytest
import yaml

import cnnlab
from cnnlab import files, ownership, rundir
from cnnlab.config import SCHEMA_VERSION, load_config
from cnnlab.errors import ConfigError, RunDirError


def test_config_yaml_carries_its_schema_version(tiny_run):
    tree = yaml.safe_load((tiny_run / rundir.CONFIG).read_text())
    assert tree["schema_version"] == SCHEMA_VERSION == 4
    assert load_config(tiny_run / rundir.CONFIG).model.name == "cnn-small"


def test_a_run_written_before_the_schema_version_still_loads_and_predicts(tiny_run, bars, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    tree = yaml.safe_load((old / rundir.CONFIG).read_text())
    del tree["schema_version"], tree["train"]["channels_last"], tree["train"]["compile"]  # as version 1 wrote it
    (old / rundir.CONFIG).write_text(yaml.safe_dump(tree))
    run = rundir.Run.open(old)
    assert run.config.train.channels_last is False and run.config.train.compile is False  # as version 1 trained
    png = sorted(bars.rglob("*.png"))[0]
    assert cnnlab.load(old, "cpu").predict(png)[0].label == cnnlab.load(tiny_run, "cpu").predict(png)[0].label


def test_a_version_2_run_keeps_the_recipe_it_trained_with(tiny_run, tmp_path):
    old = tmp_path / "v2"
    shutil.copytree(tiny_run, old)
    tree = yaml.safe_load((old / rundir.CONFIG).read_text())
    tree["schema_version"] = 2
    for section, key in (("data", "sampler"), ("data", "standardize"), ("optim", "class_weights"), ("optim", "lr"),
                         ("optim", "schedule"), ("train", "epochs"), ("train", "calibrate"), ("train", "logger"),
                         ("augment", "preset")):
        del tree[section][key]  # as version 2 wrote a run whose values were unset: its defaults then
    (old / rundir.CONFIG).write_text(yaml.safe_dump(tree))
    cfg = rundir.Run.open(old).config
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.train.epochs, cfg.augment.preset) == (0.001, "none", 10, "none")
    assert (cfg.optim.class_weights, cfg.data.sampler, cfg.data.standardize, cfg.train.calibrate) == \
        ("none", "shuffle", False, False)


def test_a_version_3_run_trained_without_label_smoothing_and_resumes_without_it(tiny_run, tmp_path):
    tree = yaml.safe_load((tiny_run / rundir.CONFIG).read_text())
    assert tree["optim"]["label_smoothing"] == 0.1  # today's default, from scratch, written into the run
    old = tmp_path / "v3"
    shutil.copytree(tiny_run, old)
    tree["schema_version"] = 3
    del tree["optim"]["label_smoothing"]  # version 3 had no such key: it trained with plain cross-entropy
    (old / rundir.CONFIG).write_text(yaml.safe_dump(tree))
    assert rundir.Run.open(old).config.optim.label_smoothing == 0.0


def test_a_run_of_a_newer_schema_is_a_clear_error(tiny_run, tmp_path):
    new = tmp_path / "new"
    shutil.copytree(tiny_run, new)
    tree = yaml.safe_load((new / rundir.CONFIG).read_text())
    tree["schema_version"] = 99
    (new / rundir.CONFIG).write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="schema version 99, newer than this cnnlab reads \\(4\\): upgrade cnnlab"):
        cnnlab.load(new)


def test_model_safetensors_alone_says_what_model_it_is(tiny_run):
    meta = rundir.read_weights_metadata(tiny_run / rundir.WEIGHTS)
    run = rundir.Run.open(tiny_run)
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["config"] == run.config.model_dump(mode="json")
    assert meta["preprocessing"] == json.loads((tiny_run / rundir.PREPROCESSING).read_text())
    assert meta["classes"] == run.classes == ["a", "b", "c"]


def test_checkpoints_carry_the_config(tiny_run):
    for which in (rundir.BEST, rundir.LAST):
        ckpt = files.load_torch(rundir.checkpoint(tiny_run, which))  # weights_only: plain data
        assert ckpt["hyper_parameters"]["config"] == rundir.Run.open(tiny_run).config.model_dump(mode="json")
        assert ckpt["hyper_parameters"]["schema_version"] == SCHEMA_VERSION


def test_a_missing_run_directory_is_a_run_dir_error(tmp_path):
    with pytest.raises(RunDirError, match="run directory not found"):
        cnnlab.load(tmp_path / "nothing")


def test_every_run_file_name_is_spelled_in_rundir_only():
    """No module but rundir spells a run file's name (the names are rundir's constants)."""
    from pathlib import Path

    names = [rundir.CONFIG, rundir.CLASSES, rundir.PREPROCESSING, rundir.SPLIT, rundir.SKIPPED, rundir.METRICS,
             rundir.WEIGHTS, rundir.TRAINING, rundir.EVALUATION, rundir.GRADIENTS, rundir.CONFUSION,
             rundir.CONFUSION_NORMALIZED, rundir.REPORT, rundir.ONNX, rundir.TORCHSCRIPT, rundir.EXPORT_INFO,
             rundir.EXPORT_CLIENT,
             f"{rundir.BEST}.ckpt", f"{rundir.LAST}.ckpt"]
    src = Path(rundir.__file__).parent
    standalone = src / "inference" / "static"  # the export's client.py runs without cnnlab: it spells its neighbours
    spelled = {(p.relative_to(src).as_posix(), n) for p in src.rglob("*.py")
               if p.name != "rundir.py" and not p.is_relative_to(standalone)
               for n in names if f'"{n}"' in p.read_text() or f"'{n}'" in p.read_text()}
    assert not spelled


def test_a_run_is_proven_by_its_marker_or_by_a_complete_older_run(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    assert rundir.is_run(run) and rundir.holds_run(run)
    (run / ownership.MARKER).unlink()  # a run written before markers: its input files and a config that loads
    assert rundir.is_run(run)
    (run / rundir.CONFIG).write_text("x: 1\n")  # another project's config.yaml is no proof
    assert not rundir.is_run(run) and not rundir.holds_run(run)
    shutil.copy(tiny_run / rundir.CONFIG, run / rundir.CONFIG)
    (run / rundir.SPLIT).unlink()
    assert not rundir.is_run(run)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(tiny_run / rundir.CONFIG, project / rundir.CONFIG)  # a cnnlab config, alone
    assert not rundir.is_run(project) and not rundir.holds_run(project)


def test_every_entry_that_train_evaluate_report_and_export_write_is_known(tiny_run, bars, tmp_path):
    """--overwrite removes only the names cnnlab writes: a name missing from that list would survive as a
    stale file of another model."""
    from cnnlab.evaluation.report import build_report
    from cnnlab.inference.export import export

    run = shutil.copytree(tiny_run, tmp_path / "run")
    cnnlab.evaluate(run, bars)
    cnnlab.evaluate(run, bars, split="all")
    build_report(run, bars)
    export(run)
    assert len(list(run.iterdir())) >= 16
    assert rundir.foreign_entries(run) == []
    (run / "notes.txt").write_text("mine")
    (run / ".config.yaml.abcdefgh.tmp").write_text("a killed write")
    removed, kept = rundir.empty_run(run)
    assert kept == ["notes.txt"] and sorted(p.name for p in run.iterdir()) == [ownership.LOCK, ownership.MARKER,
                                                                                "notes.txt"]

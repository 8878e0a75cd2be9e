"""cli/data.py: datasets list/export/check, augment preview, diagnose gradients, plot activations/features.
The library calls are replaced by recorders: the flags they receive and what the command prints are the subject."""
from pathlib import Path

import pytest

from cnnlab.data.samples import SAMPLES


def test_datasets_list_shows_every_sample_with_its_description(cli):
    found = cli("datasets", "list")
    assert found.code == 0
    for name in SAMPLES.names():
        line = next(line for line in found.out.splitlines() if f" {name} " in line)
        assert SAMPLES.description(name)[:30] in line


def test_datasets_export_passes_its_options_as_keywords(cli, record, tmp_path):
    import cnnlab.data.samples

    export = record(cnnlab.data.samples, "export", {"train": 40, "test": 10})
    found = cli("datasets", "export", "shapes", tmp_path / "s", "--size", "32", "--count=5", "--random-seed", "3")
    assert found.code == 0, found.err
    assert export.args == ("shapes", tmp_path / "s")
    assert export.kwargs == {"size": 32, "count": 5, "random_seed": 3}  # flag spelling -> keyword
    assert found.err_lines == [f"shapes: 40 train and 10 test images in {tmp_path / 's'}"]


# ----------------------------------------------------------------------------- datasets check
REPORT = {
    "data": "d", "images": 7, "classes": ["a", "b"], "counts": {"a": {"train": 4, "test": 1}, "b": {"train": 2}},
    "imbalance_ratio": 2.5, "unreadable": [{"path": "a/x.png", "reason": "not a readable image"}],
    "duplicates": [["a/1.png", "a/2.png"]], "near_duplicates": [], "leaks": [
        {"kind": "exact", "train": "train/a/1.png", "test": "test/a/9.png"}],
    "label_conflicts": [{"kind": "near", "images": [{"path": "a/3.png", "label": "a"}, {"path": "b/3.png", "label": "b"}]}],
    "sizes": {"smallest": [8, 9], "largest": [16, 32], "distinct": 2, "modes": {"RGB": 5, "L": 1}, "mixed_modes": True,
              "extreme_aspect_limit": 4.0, "extreme_aspect": ["b/wide.png"]},
}


@pytest.fixture
def health(record):
    import cnnlab.data.health

    from cnnlab.artifacts import HealthReport

    return record(cnnlab.data.health, "check", HealthReport.model_validate(REPORT))


def _row(text: str, first: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip("│┃ ").startswith(first))
    return [cell.strip() for cell in line.replace("┃", "│").split("│") if cell.strip()]


def test_datasets_check_tabulates_the_report(cli, health, tmp_path):
    found = cli("datasets", "check", tmp_path / "d", "--no-near", "--task", "regression")
    assert found.code == 0, found.err
    assert health.args == (tmp_path / "d", "regression") and health.kwargs == {"near": False}
    assert _row(found.out, "a ") == ["a", "1", "4", "5"] and _row(found.out, "b ") == ["b", "0", "2", "2"]
    assert _row(found.out, "imbalance")[-1] == "2.5"
    assert _row(found.out, "unreadable files")[-1] == "1" and _row(found.out, "exact duplicate")[-1] == "1"
    assert _row(found.out, "near duplicate")[-1] == "0" and _row(found.out, "train/held-out")[-1] == "1"
    assert _row(found.out, "sizes")[-1] == "smallest 8x9, largest 16x32, 2 distinct"
    assert _row(found.out, "modes")[-1] == "RGB 5, L 1 (mixed)"
    assert _row(found.out, "aspect ratio beyond 4:1")[-1] == "1"
    assert found.err_lines == ["unreadable: a/x.png: not a readable image",
                               "leak (exact): test/a/9.png = train/a/1.png",
                               "label conflict (near): a/3.png (a), b/3.png (b)"]


def test_datasets_check_writes_the_whole_report_as_json(cli, health, tmp_path):
    import json

    found = cli("datasets", "check", tmp_path, "--json", tmp_path / "h.json")
    assert found.code == 0 and health.kwargs == {"near": True}
    assert json.loads((tmp_path / "h.json").read_text()) == REPORT
    assert found.err_lines[-1] == f"report: {tmp_path / 'h.json'}"


def test_datasets_check_names_an_unknown_task(cli, health, tmp_path):
    found = cli("datasets", "check", tmp_path, "--task", "segmentation")
    assert found.code == 2 and len(found.err_lines) == 1
    assert found.err_lines[0].startswith("error: unknown task 'segmentation': ") and "classification, regression" in found.err
    assert health.calls == []


def test_datasets_check_without_images_shows_no_imbalance(cli, record, tmp_path, monkeypatch):
    import cnnlab.data.health

    empty = {**REPORT, "images": 0, "counts": {}, "unreadable": [], "leaks": [], "label_conflicts": [], "sizes": {}}
    from cnnlab.artifacts import HealthReport

    record(cnnlab.data.health, "check", HealthReport.model_validate(empty))
    monkeypatch.chdir(tmp_path)  # a short path: the table's title stays on one line
    found = cli("datasets", "check", "d")
    assert found.code == 0 and "imbalance" not in found.out and "sizes" not in found.out
    assert "(0 files)" in found.out and found.err == ""


# ----------------------------------------------------------------------------- augment preview
def test_augment_preview_builds_the_config_from_its_flags(cli, record, tmp_path):
    import cnnlab.data.preview

    preview = record(cnnlab.data.preview, "preview", tmp_path / "p.png")
    found = cli("augment", "preview", tmp_path / "d", "-o", tmp_path / "p.png", "--images", "2", "--versions", "3",
                "--augment", "none", "--rotation", "30", "--noise", "0.05")
    assert found.code == 0, found.err
    cfg, data, out, resolve, images, versions = preview.args
    assert (data, out, images, versions) == (tmp_path / "d", tmp_path / "p.png", 2, 3) and callable(resolve)
    assert (cfg.augment.preset, cfg.augment.rotation, cfg.augment.noise) == ("none", 30.0, 0.05)
    described = sorted(found.err_lines[0].removeprefix("augmentation: ").split(", "))
    assert described == ["noise=0.05", "rotation=30.0"]  # preset none: only the flags' operations
    assert found.err_lines[1:] == [f"preview: {tmp_path / 'p.png'}"]


def test_augment_preview_names_a_bad_flag(cli, record, tmp_path):
    import cnnlab.data.preview

    preview = record(cnnlab.data.preview, "preview", tmp_path / "p.png")
    found = cli("augment", "preview", tmp_path, "--rotashun", "30")
    assert found.code == 2 and len(found.err_lines) == 1 and "unknown flag '--rotashun'" in found.err
    assert preview.calls == []


@pytest.mark.parametrize("args,option", [(["--images", "0"], "--images"), (["--versions", "0"], "--versions")])
def test_augment_preview_counts_start_at_one(cli, tmp_path, args, option):
    found = cli("augment", "preview", tmp_path, *args)
    assert found.code == 2 and option in found.err


# ----------------------------------------------------------------------------- diagnose / plot
def test_diagnose_gradients_passes_its_options_and_tabulates_the_norms(cli, record, tmp_path):
    import cnnlab.evaluation.diagnostics as diagnostics

    exp = diagnostics.GradientExperiment(["conv1", "conv2"], [1e-2, 1e-4], [2e-2, 1e-2], "tanh")
    run = record(diagnostics, "vanishing_gradients", exp)
    plot = record(diagnostics, "plot_experiment", tmp_path / "g.png")
    found = cli("diagnose", "gradients", "--depth", "6", "--activation", "tanh", "--steps", "2", "-o", tmp_path / "g.png")
    assert found.code == 0, found.err
    assert run.args == (6, "tanh", 2) and plot.args == (exp, tmp_path / "g.png")
    assert _row(found.out, "conv1") == ["conv1", "1.00e-02", "2.00e-02"]
    assert _row(found.out, "conv2") == ["conv2", "1.00e-04", "1.00e-02"]
    assert "first/last layer: plain 1.0e+02, residual 2.0e+00" in found.out
    assert found.err_lines == [f"plot: {tmp_path / 'g.png'}"]


def test_diagnose_gradients_names_an_unknown_activation_first(cli, record):
    import cnnlab.evaluation.diagnostics as diagnostics

    run = record(diagnostics, "vanishing_gradients")
    found = cli("diagnose", "gradients", "--activation", "relu7")
    assert found.code == 2 and len(found.err_lines) == 1 and "unknown activation 'relu7'" in found.err
    assert run.calls == []


def test_diagnose_gradients_needs_some_depth(cli):
    found = cli("diagnose", "gradients", "--depth", "2")
    assert found.code == 2 and "--depth" in found.err


def test_plot_activations_writes_where_asked(cli, record, tmp_path):
    import cnnlab.evaluation.plots

    plot = record(cnnlab.evaluation.plots, "activations_png", tmp_path / "a.png")
    found = cli("plot", "activations", "-o", tmp_path / "a.png")
    assert found.code == 0 and plot.args == (tmp_path / "a.png",)
    assert found.err_lines == [f"plot: {tmp_path / 'a.png'}"]


def test_plot_features_loads_the_run_on_the_cpu_and_prints_each_plot(cli, record, tmp_path):
    import cnnlab.evaluation.features
    import cnnlab.inference.predictor

    (tmp_path / "x.png").write_bytes(b"")
    predictor = object()
    load = record(cnnlab.inference.predictor, "load", predictor)
    plots = record(cnnlab.evaluation.features, "plot_features", [tmp_path / "f" / "conv1.png", tmp_path / "f" / "p.png"])
    found = cli("plot", "features", tmp_path / "run", tmp_path / "x.png", "--layer", "conv1", "-o", tmp_path / "f")
    assert found.code == 0, found.err
    assert load.args == (tmp_path / "run", "cpu")
    assert plots.args == (predictor, tmp_path / "x.png", tmp_path / "f", "conv1")
    assert found.err_lines == [f"plot: {tmp_path / 'f' / 'conv1.png'}", f"plot: {tmp_path / 'f' / 'p.png'}"]


def test_plot_features_names_a_missing_image_before_loading(cli, record, tmp_path):
    import cnnlab.inference.predictor

    load = record(cnnlab.inference.predictor, "load")
    found = cli("plot", "features", tmp_path, tmp_path / "missing.png")
    assert (found.code, found.err_lines) == (2, [f"error: image not found: {Path(tmp_path / 'missing.png')}"])
    assert load.calls == []

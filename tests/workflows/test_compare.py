import csv

import cnnlab
from cnnlab.workflows.compare import compare, trained_parameters
from cnnlab.models.registry import build_model, resolve_preprocessing
from cnnlab.config import load_config


def test_leaderboard_for_two_models_on_the_same_split(tmp_path, shapes_dir):
    entries = compare(shapes_dir, ["cnn-small", "lenet5"], tmp_path / "cmp", epochs=2, progress=False, lr=0.01)
    assert {e.model for e in entries} == {"cnn-small", "lenet5"}
    assert entries[0].accuracy >= entries[1].accuracy  # sorted, best first
    rows = list(csv.DictReader((tmp_path / "cmp" / "leaderboard.csv").open()))
    assert [r["model"] for r in rows] == [e.model for e in entries]
    for e in entries:
        assert (tmp_path / "cmp" / e.report).is_file() and e.latency_ms > 0 and e.params == e.trained_params
    assert "[report](" in (tmp_path / "cmp" / "leaderboard.md").read_text()
    assert "<a href=" in (tmp_path / "cmp" / "leaderboard.html").read_text()
    splits = [(tmp_path / "cmp" / m / "split.csv").read_text() for m in ("cnn-small", "lenet5")]
    assert splits[0] == splits[1]  # the same images in the same splits


def test_budget_stops_training(tmp_path, bars):
    result = cnnlab.train(bars, tmp_path / "run", epochs=500, max_time=2, progress=False)
    assert result.epochs < 500 and result.stopped == "budget"


def test_trained_parameters_follow_the_strategy():
    cfg = load_config(None, {"model": "resnet18", "weights": "none", "input_size": 32})
    net = build_model(cfg, resolve_preprocessing(cfg), 3).net
    total = sum(p.numel() for p in net.parameters())
    head = sum(p.numel() for p in net.head.parameters())
    layer4 = sum(p.numel() for p in net.features.layer4.parameters())
    assert trained_parameters(net, "full", 2) == total
    assert trained_parameters(net, "feature-extract", 2) == head
    assert trained_parameters(net, "fine-tune", 1) == head + layer4


def test_a_budget_cut_is_reported_and_copies_no_row(tmp_path, bars):
    from lightning.pytorch.callbacks import Callback

    from cnnlab import rundir

    class Count(Callback):
        finished = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            Count.finished += trainer.is_last_batch

    result = cnnlab.train(bars, tmp_path / "run", epochs=500, max_time=2, progress=False, batch_size=4,
                          callbacks=[Count()])
    rows = rundir.read_csv(tmp_path / "run" / rundir.METRICS)
    info = __import__("json").loads((tmp_path / "run" / rundir.TRAINING).read_text())
    assert result.stopped == info["stopped"] == "budget" and info["stopped_early"] is False
    assert len(rows) == result.epochs == info["epochs"] == Count.finished  # epochs whose last batch ran
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows)))


def test_a_model_that_cannot_run_gets_a_row_and_the_others_go_on(tmp_path, bars):
    entries = compare(bars, ["lenet5", "cnn-small"], tmp_path / "cmp", epochs=1, progress=False, input_size=8)
    failed = next(e for e in entries if e.model == "lenet5")
    assert "too small" in failed.error and failed.accuracy is None
    assert next(e for e in entries if e.model == "cnn-small").accuracy is not None
    board = (tmp_path / "cmp" / "leaderboard.md").read_text()
    assert "lenet5 | failed: input size 8x8 is too small" in board
    assert board.startswith(f"dataset {bars}, 1 epochs, no time budget") and "3x8x8" in board

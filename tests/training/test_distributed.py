"""More than one process on this CPU (gloo): a 2-process run from the CLI, a kill and --resume, a failing
rank, two "nodes" launched with the standard environment variables, and two-phase and cached features
under DDP. Each case starts real processes, as a person's command would."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab import rundir
from cnnlab.data.samples import export

pytestmark = pytest.mark.xdist_group("ddp")  # one of these at a time: each already takes both cores

CPU2 = ["--accelerator", "cpu", "--devices", "2", "--distributed", "ddp"]
QUICK = {"epochs": 3, "batch_size": 32, "lr": 0.003, "progress": False, "test_split": 0.0}
RUN_FILES = {rundir.CONFIG, rundir.SPLIT, rundir.SKIPPED, rundir.METRICS, rundir.WEIGHTS, rundir.TRAINING,
             rundir.CLASSES, rundir.PREPROCESSING}


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}


def _cli(*args, timeout=240, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def _flags(settings: dict) -> list[str]:
    return [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", str(v).lower()
                                                      if isinstance(v, bool) else str(v))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits") / "digits"
    export("digits", root)
    return root


def _complete(run: Path, epochs: int) -> dict:
    """One complete, valid run directory: every file, strictly valid JSON, one metrics row per epoch."""
    assert RUN_FILES <= {p.name for p in run.iterdir()}, sorted(p.name for p in run.iterdir())
    info = json.loads((run / rundir.TRAINING).read_text(), parse_constant=lambda c: pytest.fail(c))
    assert info["complete"] and info["epochs"] == epochs
    rows = rundir.read_csv(run / rundir.METRICS)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))
    assert (run / rundir.CHECKPOINTS / f"{rundir.LAST}.ckpt").is_file()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # no half-written file left behind
    return info


def test_two_processes_write_one_run_with_global_metrics_and_match_one_process(digits, tmp_path):
    settings = {**QUICK, "epochs": 6}
    ddp = _cli("train", digits / "train", "--out", tmp_path / "ddp", *CPU2, *_flags(settings))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    said = ddp.stdout + ddp.stderr  # one voice: the other rank prints nothing of its own
    assert said.count("run directory:") == 1 and said.count("data: ") == 1 and said.count("model: cnn-small") == 1
    info = _complete(tmp_path / "ddp", 6)
    single = cnnlab.train(digits / "train", tmp_path / "one", **settings)

    # The metrics are over all ranks' images: the best epoch's val_acc is the saved model's accuracy on
    # the whole validation split (rank 0's half alone would give another figure).
    row = rundir.read_csv(tmp_path / "ddp" / rundir.METRICS)[info["best_epoch"]]
    val = cnnlab.evaluate(tmp_path / "ddp", digits / "train", split="val")
    assert val["n"] == len([r for r in rundir.read_csv(tmp_path / "ddp" / rundir.SPLIT) if r["split"] == "val"])
    assert float(row["val_acc"]) == pytest.approx(val["accuracy"], abs=1e-5)

    # The same global batch size gives the same quality as one process.
    acc = {name: cnnlab.evaluate(tmp_path / name, digits / "test")["accuracy"] for name in ("ddp", "one")}
    assert acc["one"] > 0.85, acc
    assert abs(acc["ddp"] - acc["one"]) <= 0.02, acc
    assert single.epochs == 6


def test_a_killed_ddp_run_resumes_to_its_end(digits, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnlab", "train", str(digits / "train"), "--out", str(out), *CPU2,
           *_flags({**QUICK, "epochs": 4})]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    last = out / rundir.CHECKPOINTS / f"{rundir.LAST}.ckpt"
    deadline = time.monotonic() + 180
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # every process of the run, mid-training
    proc.wait(30)
    assert not (out / rundir.TRAINING).exists()

    resumed = _cli("train", "--resume", "--out", out, *CPU2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    _complete(out, 4)


FAILING = textwrap.dedent("""
    import sys
    import torch
    from lightning.pytorch.callbacks import Callback
    import cnnlab

    torch.set_num_threads(1)
    data, out, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Boom(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_rank == rank and trainer.current_epoch == 1 and batch_idx == 2:
                raise RuntimeError(f"a deliberate failure in rank {rank}")

    cnnlab.train(data, out, callbacks=[Boom()], epochs=3, batch_size=32, progress=False,
                 accelerator="cpu", devices=2, distributed="ddp")
""")


@pytest.mark.parametrize("rank", [1, 0])
def test_a_failing_rank_stops_the_whole_run(digits, tmp_path, rank):
    """The other rank is stopped, not left waiting in a collective: without the process watch it would wait
    for the collective timeout (Lightning's default, 30 minutes), six times the bound here. No tighter
    wall-clock bound: a busy CI machine runs this 20-second job in over a minute."""
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    proc = subprocess.run([sys.executable, str(script), str(digits / "train"), str(tmp_path / "run"), str(rank)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"a deliberate failure in rank {rank}" in proc.stderr
    left = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the failed run still alive: {left}"


def test_two_nodes_with_the_standard_environment_match_one_process_exactly(digits, tmp_path):
    """Full-batch gradient descent on two "nodes" (one process each) takes the same steps as one process:
    each rank's share is summed and DDP averages, which is the full batch's gradient."""
    settings = {"epochs": 2, "mode": "batch", "optimizer": "sgd", "lr": 0.1, "batch_size": 200, "batch_norm": False,
                "dropout": 0.0, "progress": False, "schedule": "none", "augment": "none"}
    port = str(_free_port())
    cmd = [sys.executable, "-m", "cnnlab", "train", str(digits / "train"), "--out", str(tmp_path / "nodes"),
           "--accelerator", "cpu", "--devices", "1", "--num-nodes", "2", "--distributed", "ddp", *_flags(settings)]
    nodes = [subprocess.Popen(cmd, env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(r),
                                            WORLD_SIZE="2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    outputs = [n.communicate(timeout=240) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outputs]
    assert "run directory:" in "".join(outputs[0]) and "run directory:" not in "".join(outputs[1])
    _complete(tmp_path / "nodes", 2)

    cnnlab.train(digits / "train", tmp_path / "one", **settings)
    two, one = load_file(tmp_path / "nodes" / rundir.WEIGHTS), load_file(tmp_path / "one" / rundir.WEIGHTS)
    assert two.keys() == one.keys()
    moved = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert moved < 1e-4, moved


REPLICAS = textwrap.dedent("""
    import json, sys
    import torch
    from lightning.pytorch.callbacks import Callback
    import cnnlab

    torch.set_num_threads(1)
    data, out, weights, strategy, report = sys.argv[1:6]

    class Replicas(Callback):
        '''At the end: every rank's weights, summed, gathered on every rank.'''
        def on_train_end(self, trainer, pl_module):
            total = torch.stack([p.detach().double().sum() for p in pl_module.model.parameters()]).sum()
            sums = pl_module.all_gather(total).tolist()
            trainable = sum(p.numel() for p in pl_module.model.parameters() if p.requires_grad)
            if trainer.is_global_zero:
                json.dump({"sums": sums, "trainable": trainable}, open(report, "w"))

    cnnlab.train(data, out, callbacks=[Replicas()], weights=weights, strategy=strategy, epochs=3, head_epochs=1,
                 unfreeze=1, batch_size=32, lr=0.003, progress=False, accelerator="cpu", devices=2, distributed="ddp")
""")


@pytest.mark.parametrize("strategy", ["two-phase", "feature-extract"])
def test_transfer_strategies_under_ddp_keep_every_replica_equal(digits, tmp_path, strategy):
    source = cnnlab.train(digits / "train", tmp_path / "source", epochs=1, batch_size=64, progress=False).run_dir
    script = tmp_path / "replicas.py"
    script.write_text(REPLICAS)
    report = tmp_path / "replicas.json"
    proc = subprocess.run([sys.executable, str(script), str(digits / "train"), str(tmp_path / "run"), str(source),
                           strategy, str(report)], env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = _complete(tmp_path / "run", 3)
    assert info["strategy"] == strategy
    seen = json.loads(report.read_text())
    assert len(seen["sums"]) == 2 and seen["sums"][0] == seen["sums"][1], seen  # the blocks trained together
    head = sum(p.numel() for n, p in cnnlab.load(source).model.named_parameters() if ".head." in f".{n}")
    if strategy == "two-phase":  # the top block joined after the head-only epoch
        assert seen["trainable"] > head
    else:  # the cached head alone trains: its parameters are the whole trainable model
        assert seen["trainable"] <= head
    assert torch.isfinite(torch.tensor(seen["sums"])).all()

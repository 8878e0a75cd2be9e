"""CUDA graphs for serving (inference/graphs.py): the batch sizes, the padding, and the CPU's fallback. The
graphs themselves run on a GPU lease (benchmarks/serving.py --gil --device cuda, in benchmarks/gpu_path.sh)."""
import pytest
import torch

import cnnlab
from cnnlab.inference import graphs
from cnnlab.serving.options import ServeOptions


@pytest.mark.parametrize("n,size", [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (17, 32), (32, 32), (33, 64), (64, 64),
                                    (65, None), (0, None)])
def test_a_batch_runs_in_the_next_power_of_two_up_to_the_largest_graph(n, size):
    assert graphs.bucket(n) == size


def test_padding_a_batch_changes_none_of_its_rows(tiny_run):
    """The graph of size 8 computes 5 real images and 3 stale rows: in evaluation mode rows do not mix, so the
    first 5 outputs equal those of the batch of 5 alone (what makes padding to the bucket safe)."""
    model = cnnlab.load(tiny_run, "cpu").model
    batch = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    padded = torch.cat([batch, torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)])
    with torch.inference_mode():
        assert torch.allclose(model(padded)[:5], model(batch), atol=1e-6)


def test_on_the_cpu_cuda_graphs_change_nothing(tiny_run, bars):
    plain = cnnlab.load(tiny_run, "cpu")
    graphed = cnnlab.load(tiny_run, "cpu", cuda_graphs=True)
    assert not isinstance(graphed._forward, graphs.GraphedForward)
    images = sorted(bars.rglob("*.png"))[:6]
    assert [p.model_dump() for p in graphed.predict(images)] == [p.model_dump() for p in plain.predict(images)]
    with pytest.raises(ValueError, match="CUDA device"):
        graphs.GraphedForward(plain.model, torch.device("cpu"))


def test_a_model_that_cannot_be_captured_answers_eagerly_with_one_warning(tiny_run, monkeypatch, caplog):
    """What GraphedForward does when capture fails, without a GPU: the capture is made to fail, the device
    check skipped; the answer is the eager model's and the failure is remembered (no second attempt)."""
    model = cnnlab.load(tiny_run, "cpu").model
    forward = object.__new__(graphs.GraphedForward)
    forward.model, forward.device, forward.largest, forward.graphs, forward.failed = model, torch.device("cpu"), 64, {}, False
    forward._lock = graphs.threading.Lock()
    attempts = []

    def failing(*args):
        attempts.append(args)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(forward, "_capture", failing)
    batch = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    with torch.inference_mode():
        first, second, eager = forward(batch), forward(batch), model(batch)
    assert torch.equal(first, eager) and torch.equal(second, eager)
    assert len(attempts) == 1 and forward.failed
    assert sum("CUDA graphs are off" in r.message for r in caplog.records) == 1


def test_the_server_graphs_by_default_and_the_flag_turns_it_off(cli):
    assert ServeOptions().cuda_graphs is True
    assert ServeOptions.from_flags(cuda_graphs=False).cuda_graphs is False
    help_text = cli("serve", "--help").stdout
    assert "--no-cuda-graphs" in help_text

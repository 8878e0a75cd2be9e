"""Serving under load: micro-batching, /metrics, a concurrency limit, stalled clients and worker processes."""
from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn

import cnnlab
from cnnlab.serving.app import create_app
from cnnlab.serving.batching import MicroBatcher, ModelThread
from cnnlab.serving.http import RequestTimeoutH11, RequestTimeoutHttpTools, request_timeout_protocol
from cnnlab.serving.options import ServeOptions

pytestmark = pytest.mark.xdist_group("serving")  # servers and sockets: one worker at a time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """An app served by uvicorn in a thread, on a free port."""

    def __init__(self, app, **config):
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **config))

    def __enter__(self) -> str:
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_the_batcher_gathers_concurrent_requests_and_answers_each_as_alone(tiny_run, bars):
    predictor = cnnlab.load(tiny_run, "cpu")
    images = [predictor.preprocess(p) for p in sorted(bars.rglob("*.png"))[:24]]
    requests = [images[i:i + k] for i, k in zip(range(0, 24, 3), [3, 1, 2, 3, 1, 3, 2, 3])]
    sizes = []
    batcher = MicroBatcher(predictor.outputs, max_batch=8, max_wait_ms=50, on_batch=sizes.append)

    async def all_at_once():
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    results = asyncio.run(all_at_once())
    assert len(sizes) < len(requests) and max(sizes) <= 8 and sum(sizes) == sum(len(r) for r in requests)
    for request, got in zip(requests, results):
        alone = predictor.outputs(request)
        assert got.shape == alone.shape and torch.equal(got.argmax(1), alone.argmax(1))
        torch.testing.assert_close(got, alone, atol=1e-6, rtol=0)


def test_requests_that_queue_while_a_batch_runs_all_join_the_next_batch():
    """Under load every request waits longer than --max-wait-ms for the model: they still share a batch. The first
    batch is held in the model until the eight others are queued (events, not sleeps)."""
    sizes = []
    running, release = threading.Event(), threading.Event()

    def slow(images):
        running.set()
        release.wait(60)  # a bound in case of a bug, not a measurement
        return torch.stack(images).float()

    batcher = MicroBatcher(slow, max_batch=32, max_wait_ms=1, on_batch=sizes.append)

    async def load():
        first = asyncio.ensure_future(batcher.submit([torch.zeros(3)]))
        assert await asyncio.to_thread(running.wait, 60)  # the first batch is running now
        rest = [asyncio.ensure_future(batcher.submit([torch.full((3,), float(i))])) for i in range(1, 9)]
        while batcher._queue.qsize() < 8:  # all eight queued while it runs
            await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(load())
    assert sizes == [1, 8]
    assert [float(r[0, 0]) for r in results] == list(range(9))  # each request its own row


def test_the_model_thread_runs_single_images_with_the_thread_count_it_measured_best(tiny_run):
    predictor = cnnlab.load(tiny_run, "cpu")
    calls = []
    raw = predictor.raw
    predictor.raw = lambda batch: calls.append(threading.current_thread().name) or raw(batch)
    thread = ModelThread(predictor)
    try:
        assert set(thread.timings) == {1, thread.threads} and all(t > 0 for t in thread.timings.values())
        assert thread.threads_alone == min(thread.timings, key=thread.timings.get)
        assert calls and all(name.startswith("cnnlab-model") for name in calls)  # measured where it will run

        def seen():
            return threading.current_thread().name, torch.get_num_threads()

        async def both():
            return await thread.run(1, seen), await thread.run(8, seen)

        (name_one, one), (name_many, many) = asyncio.run(both())
        assert name_one == name_many and name_one.startswith("cnnlab-model")
        assert one == thread.threads_alone and many == thread.threads
    finally:
        thread.close()
        torch.set_num_threads(thread.threads)


def test_a_lone_small_request_runs_on_the_event_loop_and_a_large_one_in_the_model_thread(tiny_run, bars):
    import io

    import numpy as np
    from PIL import Image

    predictor = cnnlab.load(tiny_run, "cpu")
    where = []
    raw = predictor.raw
    predictor.raw = lambda batch: where.append(threading.current_thread().name) or raw(batch)
    with Running(create_app(str(tiny_run), predictor=predictor)) as url:
        small = sorted(bars.rglob("*.png"))[0].read_bytes()  # 16x16
        large = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(large, "PNG")
        where.clear()
        answers = [httpx.post(f"{url}/predict", content=blob, headers={"content-type": "image/png"})
                   for blob in (small, large.getvalue())]
    assert [a.status_code for a in answers] == [200, 200]
    assert len(where) == 2
    assert not where[0].startswith("cnnlab-model")  # the tiny model measured fast: no hop for a 16x16 image
    assert where[1].startswith("cnnlab-model")  # 360,000 pixels to decode: off the event loop


@pytest.mark.parametrize("protocol", [RequestTimeoutHttpTools, RequestTimeoutH11])
def test_both_http_protocols_close_a_connection_whose_request_is_not_complete_in_time(tiny_run, bars, protocol):
    png = sorted(bars.rglob("*.png"))[0].read_bytes()
    protocol = request_timeout_protocol(ServeOptions(request_timeout=1), base=protocol)
    with Running(create_app(str(tiny_run), ServeOptions(device="cpu")), http=protocol) as url:
        port = int(url.rsplit(":", 1)[1])
        header = socket.create_connection(("127.0.0.1", port))  # a header never finished
        header.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        body = socket.create_connection(("127.0.0.1", port))  # a body shorter than its Content-Length
        body.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
                     % len(png) + png[:40])
        kept = httpx.Client(base_url=url)  # a keep-alive connection that completes its requests in time
        assert kept.post("/predict", content=png, headers={"content-type": "image/png"}).status_code == 200
        for s in (header, body):
            s.settimeout(60)  # a bound in case of a bug: the server closes them after its 1 s
            assert s.recv(1024) == b""  # closed by the server, with no answer
            s.close()
        assert kept.post("/predict", content=png, headers={"content-type": "image/png"}).status_code == 200
        kept.close()


def test_concurrent_predictions_share_forward_passes_and_metrics_show_it(tiny_run, bars):
    """The model's first pass is held until all 16 requests are decoded: the others queue meanwhile and share a pass
    (a count of events, not a race with --max-wait-ms)."""
    files = sorted(bars.rglob("*.png"))[:16]
    expected = cnnlab.load(tiny_run, "cpu").predict(files)
    predictor = cnnlab.load(tiny_run, "cpu")
    decoded, release, lock = [0], threading.Event(), threading.Lock()
    preprocess, outputs = predictor.preprocess, predictor.outputs

    def counted(data):
        with lock:
            decoded[0] += 1
            if decoded[0] == len(files):
                release.set()
        return preprocess(data)

    def held(images, *args, **kwargs):
        release.wait(60)  # a bound in case of a bug, not a measurement
        return outputs(images, *args, **kwargs)

    predictor.preprocess, predictor.outputs = counted, held
    app = create_app(str(tiny_run), ServeOptions(max_batch=16, max_wait_ms=30), predictor=predictor,
                     thread=ModelThread(predictor, inline=False))  # a held model must not hold the event loop
    with Running(app) as url:
        async def go():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return await asyncio.gather(*(client.post("/predict", content=f.read_bytes(),
                                                          headers={"content-type": "image/png"}) for f in files))

        answers = asyncio.run(go())
        metrics = httpx.get(f"{url}/metrics").text
    for answer, alone in zip(answers, expected):
        got = answer.json()["predictions"][0]
        assert got["label"] == alone.label and got["probability"] == pytest.approx(alone.probability, abs=2e-6)
    batches = float(re.search(r"^cnnlab_batch_size_count (\S+)$", metrics, re.M).group(1))
    images = float(re.search(r"^cnnlab_batch_size_sum (\S+)$", metrics, re.M).group(1))
    assert images == 16 and batches < 16  # fewer forward passes than requests
    assert re.search(r'^cnnlab_requests_total\{path="/predict",status="200"\} 16\.0$', metrics, re.M)
    assert 'cnnlab_request_seconds_bucket{le="0.001",path="/predict"}' in metrics


def test_errors_are_counted_by_status(tiny_run):
    with Running(create_app(str(tiny_run), ServeOptions(device="cpu"))) as url:
        assert httpx.post(f"{url}/predict", content=b"not an image", headers={"content-type": "image/png"}).status_code == 415
        assert httpx.post(f"{url}/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        metrics = httpx.get(f"{url}/metrics").text
    assert re.search(r'^cnnlab_errors_total\{status="415"\} 2\.0$', metrics, re.M)


def test_over_the_concurrency_limit_requests_get_503_with_retry_after(tiny_run, bars):
    """The model is held until four requests have been refused: the two admitted are in flight all along."""
    predictor = cnnlab.load(tiny_run, "cpu")
    slow, release = predictor.outputs, threading.Event()

    def held(images, *a, **k):
        release.wait(60)  # a bound in case of a bug, not a measurement
        return slow(images, *a, **k)

    predictor.outputs = held
    png = sorted(bars.rglob("*.png"))[0].read_bytes()
    app = create_app(str(tiny_run), ServeOptions(limit_concurrency=2, max_batch=1), predictor=predictor,
                     thread=ModelThread(predictor, inline=False))  # a held model must not hold the event loop
    with Running(app) as url:
        async def go():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                tasks = [asyncio.ensure_future(client.post("/predict", content=png, headers={"content-type": "image/png"}))
                         for _ in range(6)]
                refused = 0
                while refused < 4:
                    done, _ = await asyncio.wait([t for t in tasks if not t.done()], timeout=60,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    assert done, "no answer at all"
                    refused = sum(t.done() for t in tasks)
                release.set()
                return await asyncio.gather(*tasks)

        answers = asyncio.run(go())
        after = httpx.post(f"{url}/predict", content=png, headers={"content-type": "image/png"})
        metrics = httpx.get(f"{url}/metrics").text
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 2 and codes.count(503) == 4
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
    assert after.status_code == 200  # and it keeps serving
    assert re.search(r"^cnnlab_refused_busy_total 4\.0$", metrics, re.M)


def _serve(run: Path, *flags: str, nofile: int | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()

    def limits():
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port), "--device", "cpu",
                             *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limits,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the server did not start: {proc.stderr.read().decode()[-2000:]}")


def _still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed ``sock`` nor sent anything on it (a look, without waiting)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@pytest.mark.slow
def test_stalled_clients_are_closed_by_the_request_timeout_and_do_not_lock_others_out(tiny_run):
    proc, url = _serve(tiny_run, "--request-timeout", "3", nofile=320)
    port = int(url.rsplit(":", 1)[1])
    stalled = []
    try:
        for i in range(200):  # slow-loris: a partial header each, never finished
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + str(i).encode())
            stalled.append(s)
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        assert all(_still_open(s) for s in stalled)  # answered while all 200 were still held open
        for s in stalled[:5]:  # a byte now and then does not keep a connection alive
            s.sendall(b"a")
        closed = 0
        for s in stalled:
            s.settimeout(60)  # a bound in case of a bug: the server closes each 3 s after it opened
            try:
                closed += s.recv(1024) == b""
            except (ConnectionResetError, TimeoutError, OSError):
                closed += 1
        assert closed == 200
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        for s in stalled:
            s.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _wait_for(condition, limit_s: float = 120):
    """``condition()``'s first true value, asked every 0.2 s; None after ``limit_s`` (a bound in case of a bug, not a
    measurement: how fast a worker comes back is benchmarks/attacks.py's figure)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return None


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out |= {int(p) for p in text}
    return out


def _workers(pid: int) -> set[int]:
    """uvicorn's worker processes (its supervisor also starts multiprocessing's resource tracker)."""
    return {c for c in _children(pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()}


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_health_answers_again(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"  # with no ONNX export: serve's --backend auto makes one, once, before the workers start
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    proc, url = _serve(run, "--workers", "2")
    try:
        assert (run / "export" / "model.onnx").is_file()
        _wait_for(lambda: len(_workers(proc.pid)) >= 2)
        before = _workers(proc.pid)
        assert len(before) == 2
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)

        def replaced():
            now = _workers(proc.pid)
            return now if len(now) == 2 and victim not in now else None

        now = _wait_for(replaced)
        assert now is not None and len(now) == 2 and victim not in now, _workers(proc.pid)

        def all_answer() -> bool:  # every worker answers: the new one too
            try:
                return all(httpx.get(f"{url}/health", timeout=5).status_code == 200 for _ in range(4))
            except httpx.HTTPError:
                return False

        assert _wait_for(all_answer)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

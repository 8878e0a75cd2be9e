"""Serving, measured on loopback (127.0.0.1 only; bounded request counts).

1. Load test: `cnnlab serve` (a subprocess) with the small default CNN; 2,000 /predict requests,
   8 concurrent: errors, requests/s, p50 and p99 latency.
2. Serving overhead: p50 latency of one /predict over the bare model forward (decode + forward of
   the same image, in a fresh process), for cnn-small and resnet18 (224x224). Target <= 1.5x.
3. The raw body (#14): /predict p50 from a bare socket over the bare decode+forward, cnn-small, rounds
   side by side. Target <= 2x.
4. Micro-batching: throughput and p99 at 1, 8 and 32 concurrent clients (raw-body /predict), for
   cnn-small and resnet18, with --max-batch 1 (no batching) and the defaults (--max-batch 32
   --max-wait-ms 5). Target (#14): >= 3x the throughput at 32 clients for resnet18, with p99 <= 2x the
   p99 without batching at 1 client. The model must be the bottleneck for batching to show: on a GPU
   (--device cuda --client-processes 4, benchmarks/gpu_serving.sh), or with --stand-in-ms 10 (a stand-in
   for a GPU's model: 10 ms a pass, the GIL free; decoding and HTTP are real).
   Each line also gives the server's event-loop CPU a request: its inverse bounds the requests a second.
5. Python's lock (--gil alone): one image's forward pass alone and while another Python thread is busy, as a
   server's event loop is under load: PyTorch eager takes the lock back after every operator and waits for
   it each time; ONNX Runtime runs the pass without it. Why `serve --backend auto` exports to ONNX on the CPU.
   (--app alone: the app's own event-loop time a raw-body /predict, in-process, 32 at once, model and
   decoding stubbed: what the server's Python costs a request, apart from uvicorn.)
6. ONNX Runtime vs PyTorch eager, single-image latency (p50), for cnn-small and resnet18.

Run: .venv/bin/python benchmarks/serving.py   (--raw-body, --batching, --gil or --app alone)
"""
from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import time

import httpx
import numpy as np

import cnnlab
from cnnlab.workflows import demo
from cnnlab.workflows.compare import latency_ms
from common import SCRATCH, verdict

REQUESTS, CONCURRENCY = 2000, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STAND_IN = """
import sys, time, torch, uvicorn, cnnlab
from cnnlab.serving.app import create_app
from cnnlab.serving.http import request_timeout_protocol
from cnnlab.serving.options import ServeOptions
run, port, max_batch, ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
predictor = cnnlab.load(run, "cpu")
classes = len(predictor.classes)

def raw(batch):  # a GPU's way: a fixed cost a pass, a little more an image, and the GIL free meanwhile
    time.sleep(ms / 1000 + 0.0002 * len(batch))
    return torch.zeros(len(batch), classes)

predictor.raw = raw
uvicorn.run(create_app(run, ServeOptions(max_batch=max_batch), predictor=predictor), host="127.0.0.1", port=port,
            log_level="warning", access_log=False, http=request_timeout_protocol())
"""


class Server:
    def __init__(self, run_dir, backend="torch", *flags: str, device: str = "cpu", stand_in_ms: float = 0.0):
        """``cnnlab serve RUN`` on a free port; ``stand_in_ms``: the same app with a stand-in for a GPU model
        (``STAND_IN``: ``stand_in_ms`` a pass + 0.2 ms an image, the GIL released), for ``--max-batch`` alone."""
        self.port = free_port()
        if stand_in_ms:
            max_batch = flags[flags.index("--max-batch") + 1] if "--max-batch" in flags else "32"
            command = ["-c", STAND_IN, str(run_dir), str(self.port), max_batch, str(stand_in_ms)]
        else:
            command = ["-m", "cnnlab", "serve", str(run_dir), "--port", str(self.port), "--backend", backend,
                       "--device", device, *flags]
        self.proc = subprocess.Popen([sys.executable, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def loop_cpu_s(self) -> float:
        """CPU seconds the server's first thread (uvicorn's event loop: HTTP, routing, JSON) has used; Linux.
        Per request under load, its inverse is the most requests a second the process can answer whatever the
        model's speed: what bounds batching on a GPU."""
        import os

        fields = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def p(values, q):
    return float(np.percentile(values, q)) * 1000


async def load_test(url: str, image: bytes) -> dict:
    latencies, errors = [], 0
    queue = iter(range(REQUESTS))

    async def worker(client):
        nonlocal errors
        for _ in queue:
            start = time.perf_counter()
            r = await client.post(f"{url}/predict", files={"files": ("x.png", image, "image/png")})
            latencies.append(time.perf_counter() - start)
            errors += r.status_code != 200

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - start
    return {"errors": errors, "rps": REQUESTS / wall, "p50": p(latencies, 50), "p99": p(latencies, 99)}


def sequential_p50(url: str, image: bytes, n: int = 100, raw: bool = False) -> float:
    """p50 of one /predict at a time: multipart (field ``files``), or the image as the raw body."""
    with httpx.Client(timeout=30) as client:
        times = []
        for _ in range(n + 5):
            start = time.perf_counter()
            if raw:
                r = client.post(f"{url}/predict", content=image, headers={"Content-Type": "image/png"})
            else:
                r = client.post(f"{url}/predict", files={"files": ("x.png", image, "image/png")})
            r.raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times[5:]) * 1000


def raw_request(image: bytes) -> bytes:
    """One keep-alive HTTP/1.1 raw-body /predict of ``image``, as bytes on the wire."""
    return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
            % len(image)) + image


def demo_run() -> tuple:
    """The demo's cnn-small run (made once) and one of its test digits as PNG bytes."""
    mnist_run = SCRATCH / "demo" / "run"
    if not (mnist_run / "model.safetensors").is_file():
        demo.run(SCRATCH / "demo", progress=False)
    return mnist_run, next((SCRATCH / "demo" / "mnist-5k" / "test" / "7").glob("*.png")).read_bytes()


def socket_p50(url: str, image: bytes, n: int = 300) -> float:
    """p50 of one raw-body /predict at a time from a bare keep-alive HTTP/1.1 socket: the server's own time,
    without an HTTP client library's (httpx costs ~4.5 ms of the ~7 ms it measures for cnn-small)."""
    host, port = url.removeprefix("http://").split(":")
    request = raw_request(image)
    times = []
    with socket.create_connection((host, int(port))) as sock:
        for _ in range(n + 20):
            start = time.perf_counter()
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"}"):  # one JSON body, read to its end
                reply += sock.recv(65536)
            times.append(time.perf_counter() - start)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
    return statistics.median(times[20:]) * 1000


def raw_body_overhead(run_dir, image: bytes, rounds: int = 5) -> None:
    """The binary endpoint against multipart and the bare decode+forward (#14's target for cnn-small: /predict
    p50 <= 2x the bare decode+forward). Each round measures all four side by side (the bare one in a fresh
    process while the server idles), and the ratio is the median of the rounds' ratios: this machine drifts."""
    server = Server(run_dir)
    rounds_ = []
    try:
        for _ in range(rounds):
            rounds_.append((sequential_p50(server.url, image, raw=False), sequential_p50(server.url, image, raw=True),
                            socket_p50(server.url, image), bare_p50(run_dir, image, n=300)))
    finally:
        server.stop()
    multipart, raw, sock, bare = (statistics.median(r[i] for r in rounds_) for i in range(4))
    ratio = statistics.median(r[2] / r[3] for r in rounds_)
    print(f"raw body  cnn-small: /predict p50 from httpx: multipart {multipart:.2f} ms, raw body {raw:.2f} ms; from a bare "
          f"socket: raw body {sock:.2f} ms; bare decode+forward {bare:.2f} ms: {ratio:.2f}x the bare from a socket "
          f"(median of {rounds} rounds' ratios, {min(r[2] / r[3] for r in rounds_):.2f}-"
          f"{max(r[2] / r[3] for r in rounds_):.2f}; target <= 2x: {verdict(ratio, 2.0, False)}), {raw / bare:.2f}x "
          f"from httpx")


BARE = """
import statistics, sys, time
import cnnlab
predictor = cnnlab.load(sys.argv[1], "cpu")
image = open(sys.argv[2], "rb").read()
times = []
for _ in range(int(sys.argv[3]) + 5):
    start = time.perf_counter()
    predictor.forward(predictor.preprocess(image).unsqueeze(0))
    times.append(time.perf_counter() - start)
print(statistics.median(times[5:]) * 1000)
"""


def bare_p50(run_dir, image: bytes, n: int = 100) -> float:
    """p50 of decode+forward of one image, as a script of a user's own would time it: in a fresh process (one
    that has trained or served in its threads runs a small model up to 2x slower: OpenMP's helpers idle)."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(image)
        f.flush()
        out = subprocess.run([sys.executable, "-c", BARE, str(run_dir), f.name, str(n)], capture_output=True,
                             text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def make_resnet_run():
    from PIL import Image

    root, out = SCRATCH / "rgb-small", SCRATCH / "serve-resnet18"
    if (out / "model.safetensors").is_file() and (root / "c0" / "0.png").is_file():  # made by an earlier run
        return out, (root / "c0" / "0.png").read_bytes()
    rng = np.random.default_rng(0)
    for k in range(3):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(root / f"c{k}" / f"{i}.png")
    cnnlab.train(root, out, model="resnet18", weights="none", epochs=1, batch_size=8, val_split=0.0,
                 progress=False, overwrite=True)
    return out, (root / "c0" / "0.png").read_bytes()


async def _connections(port: int, request: bytes, clients: int, requests: int, ready) -> list[float]:
    """``clients`` keep-alive connections sending ``request`` until ``requests`` are answered: each latency.
    Every connection is opened and answered once, then ``ready()`` (a barrier across client processes)."""
    latencies, left = [], [requests]

    async def one(reader, writer) -> None:
        writer.write(request)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        assert status.startswith(b"HTTP/1.1 200"), status

    async def opened():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await one(reader, writer)
        return reader, writer

    async def run(reader, writer):
        while left[0] > 0:
            left[0] -= 1
            start = time.perf_counter()
            await one(reader, writer)
            latencies.append(time.perf_counter() - start)
        writer.close()

    connections = await asyncio.gather(*(opened() for _ in range(clients)))
    ready()
    await asyncio.gather(*(run(r, w) for r, w in connections))
    return latencies


def _client_process(port, request, clients, requests, barrier, results) -> None:
    latencies = asyncio.run(_connections(port, request, clients, requests, barrier.wait))
    results.put((latencies, time.time()))


def concurrent(url: str, image: bytes, clients: int, requests: int, processes: int = 1) -> tuple[float, float]:
    """requests/s and p99 (ms) of raw-body /predict from ``clients`` concurrent keep-alive connections, spread
    over ``processes`` client processes (a lean asyncio client: an HTTP library would be the bottleneck). The
    clock starts when every connection is open and warm."""
    from multiprocessing import get_context

    ctx = get_context("fork")  # the clients need nothing of the parent's but sockets; fork starts them at once
    port = int(url.rsplit(":", 1)[1])
    request = raw_request(image)
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=_client_process, args=(port, request, c, max(1, requests * c // clients), barrier,
                                                        results)) for c in shares]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    start = time.time()
    done = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    latencies = [t for lat, _ in done for t in lat]
    return len(latencies) / (max(end for _, end in done) - start), p(latencies, 99)


def batching_throughput(runs: dict, device: str = "cpu", processes: int = 1, stand_in_ms: float = 0.0,
                        backend: str = "torch", client_counts: tuple[int, ...] = (1, 8, 32)) -> dict:
    """Side by side on one machine: each model, no batching then batching, at 1, 8 and 32 clients (the
    first and last of ``client_counts`` are compared)."""
    table = {}
    if stand_in_ms:
        device = f"a stand-in GPU ({stand_in_ms:g} ms a pass)"
    for name, (run_dir, image, requests) in runs.items():
        for label, flags in (("no batching", ("--max-batch", "1")), ("batching", ())):
            server = Server(run_dir, backend, *flags, device=device, stand_in_ms=stand_in_ms)
            try:
                for clients in client_counts:
                    cpu = server.loop_cpu_s()
                    table[name, label, clients] = concurrent(server.url, image, clients, requests, processes)
                    rps, p99 = table[name, label, clients]
                    loop_ms = (server.loop_cpu_s() - cpu) / (requests + clients) * 1000  # + each connection's first
                    print(f"micro-batching  {name} on {device} ({backend}) {label:11s} {clients:2d} clients: {rps:7.1f} req/s, "
                          f"p99 {p99:7.1f} ms; event loop {loop_ms:.2f} ms CPU a request", flush=True)
            finally:
                server.stop()
        one, most = client_counts[0], client_counts[-1]
        speedup = table[name, "batching", most][0] / table[name, "no batching", most][0]
        p99_one = table[name, "batching", one][1] / table[name, "no batching", one][1]
        p99_32 = table[name, "batching", most][1] / table[name, "no batching", one][1]
        target = f" (target >= 3x: {verdict(speedup, 3.0, True)})" if name == "resnet18" else ""
        if stand_in_ms:  # the batcher's own gain; #14's target is for the real model on real hardware
            target = " (a stand-in model: not the target's measurement)"
        # 32 clients' p99 holds the queue they form (32 requests at once against one model): it cannot be near
        # one client's; the target is read as "batching does not cost a lone client latency".
        print(f"micro-batching  {name}: throughput at {most} clients {speedup:.2f}x with batching{target}; p99 of {one} "
              f"client(s) with batching {p99_one:.2f}x the p99 without (target <= 2x: {verdict(p99_one, 2.0, False)}); "
              f"p99 at {most} clients with batching {p99_32:.1f}x the {one}-client p99 without", flush=True)
    return table


GIL = """
import statistics, sys, threading, time, torch, cnnlab
torch.set_num_threads(1)  # one core for the model, the other for the busy thread: Python's lock is what is shared
run, device, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
backends = {"PyTorch": cnnlab.load(run, device)}
if device != "cpu":  # one graph launch a pass instead of one launch a layer (what the server does on a GPU)
    backends["CUDA graphs"] = cnnlab.load(run, device, cuda_graphs=True)
if device == "cpu":  # ONNX Runtime here is the CPU's
    from cnnlab.inference.predictor import OnnxPredictor
    from cnnlab.rundir import Run
    backends["ONNX Runtime"] = OnnxPredictor(Run.open(run), threads=1)
x = torch.zeros(batch, backends["PyTorch"].pre.channels, *backends["PyTorch"].pre.size, dtype=torch.uint8)

def timed(predictor, n=15):
    for _ in range(3):
        predictor.raw(x)  # its outputs come back to the CPU: on a GPU, the pass is waited for
    times = []
    for _ in range(n):
        start = time.perf_counter()
        predictor.raw(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000

alone = {name: timed(p) for name, p in backends.items()}
stop = False

def busy():  # an event loop with work always waiting: pure Python, it lets go of the lock only when made to
    y = 0
    while not stop:
        for i in range(1000):
            y += i

threading.Thread(target=busy, daemon=True).start()
time.sleep(0.1)
loaded = {name: timed(p) for name, p in backends.items()}
stop = True
for name in backends:
    print(f"{name}|{alone[name]:.2f}|{loaded[name]:.2f}")
"""


def gil_contention(runs: dict, device: str = "cpu", batches: tuple[int, ...] = (1,)) -> None:
    """A forward pass alone and while another Python thread is busy (as a server's event loop is under load):
    PyTorch eager, and on the CPU ONNX Runtime, one intra-op thread each, in a fresh process per model and batch
    size. On a GPU it says what the lock costs a batched pass there."""
    from cnnlab.inference.export import ensure_onnx

    for name, run_dir in runs.items():
        if device == "cpu":
            ensure_onnx(run_dir)
        for batch in batches:
            out = subprocess.run([sys.executable, "-c", GIL, str(run_dir), device, str(batch)], capture_output=True,
                                 text=True, check=True)
            for line in out.stdout.strip().splitlines():
                backend, alone, loaded = line.split("|")
                print(f"gil  {name} on {device} {backend:12s}, {batch:2d} image(s): {float(alone):7.2f} ms alone, "
                      f"{float(loaded):7.2f} ms while a Python thread is busy ({float(loaded) / float(alone):5.1f}x)",
                      flush=True)


def app_loop_us(run_dir, image: bytes, at_once: int = 32, rounds: int = 5) -> float:
    """The app's own event-loop time a raw-body /predict, ``at_once`` requests at a time, called in-process
    (no sockets, no uvicorn) with the model and decoding stubbed: routing, middleware, batching's hops, the
    answer's JSON. The median of ``rounds`` rounds of thread CPU time, in microseconds."""
    import torch
    import uvloop

    from cnnlab.serving.app import create_app

    predictor = cnnlab.load(run_dir, "cpu")
    classes, shape = len(predictor.classes), (predictor.pre.channels, *predictor.pre.size)
    predictor.raw = lambda batch: torch.zeros(len(batch), classes)
    predictor.preprocess = lambda data: torch.zeros(shape, dtype=torch.uint8)
    app = create_app(str(run_dir), predictor=predictor)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost"), (b"content-type", b"image/png"), (b"content-length", b"%d" % len(image))],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}

    async def one() -> None:
        messages = [{"type": "http.request", "body": image, "more_body": False}]
        status = []

        async def receive():
            return messages.pop() if messages else await asyncio.sleep(3600)

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(dict(scope), receive, send)
        assert status == [200], status

    async def measure() -> float:
        for _ in range(20):
            await asyncio.gather(*(one() for _ in range(at_once)))
        times = []
        for _ in range(rounds):
            start = time.thread_time()
            for _ in range(30):
                await asyncio.gather(*(one() for _ in range(at_once)))
            times.append((time.thread_time() - start) / (30 * at_once) * 1e6)
        return statistics.median(times)

    return uvloop.run(measure())


def main() -> None:
    mnist_run, digit = demo_run()
    resnet, photo = make_resnet_run()

    server = Server(mnist_run)
    try:
        result = asyncio.run(load_test(server.url, digit))
        print(f"load test  cnn-small, {REQUESTS} requests, {CONCURRENCY} concurrent on loopback: {result['errors']} errors, "
              f"{result['rps']:.0f} req/s, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")
        served_small = sequential_p50(server.url, digit)
    finally:
        server.stop()
    server = Server(resnet)
    try:
        served_resnet = sequential_p50(server.url, photo, n=40)
    finally:
        server.stop()
    bare_small, bare_resnet = bare_p50(mnist_run, digit), bare_p50(resnet, photo, n=40)
    for name, served, bare in (("cnn-small", served_small, bare_small), ("resnet18", served_resnet, bare_resnet)):
        ratio = served / bare
        print(f"serving overhead  {name}: /predict p50 {served:.2f} ms vs bare decode+forward p50 {bare:.2f} ms: "
              f"{ratio:.2f}x (target <= 1.5x: {verdict(ratio, 1.5, False)})")
    raw_body_overhead(mnist_run, digit)
    batching_throughput({"cnn-small": (mnist_run, digit, 600), "resnet18": (resnet, photo, 96)})
    gil_contention({"cnn-small": mnist_run, "resnet18": resnet})
    for name, run_dir, image in (("cnn-small", mnist_run, digit), ("resnet18", resnet, photo)):
        t_eager = latency_ms(cnnlab.load(run_dir), image, n=50)
        t_onnx = latency_ms(cnnlab.load(run_dir, backend="onnx"), image, n=50)
        print(f"onnx vs eager  {name} single image: PyTorch {t_eager:.2f} ms, ONNX Runtime {t_onnx:.2f} ms: "
              f"ONNX is {t_eager / t_onnx:.2f}x as fast")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--batching", action="store_true", help="only the micro-batching comparison")
    parser.add_argument("--raw-body", action="store_true", help="only the raw-body overhead")
    parser.add_argument("--app", action="store_true", help="only the app's own event-loop time a request "
                                                           "(in-process, model and decoding stubbed)")
    parser.add_argument("--gil", action="store_true", help="only a forward pass alone vs while a Python thread is "
                                                           "busy, PyTorch and ONNX Runtime")
    parser.add_argument("--device", default="cpu", help="the server's device for --batching, the model's for "
                                                        "--gil (cpu or cuda)")
    parser.add_argument("--backend", default="torch", help="the server's backend for --batching (torch or onnx)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="client processes for --batching (a machine with cores to spare: 4)")
    parser.add_argument("--stand-in-ms", type=float, default=0.0,
                        help="--batching with a stand-in for a GPU model: this many ms a pass, the GIL released "
                             "(the batcher measured where there is no GPU; decoding and HTTP are real)")
    parser.add_argument("--requests", type=int, nargs=2, default=(600, 96), metavar=("SMALL", "RESNET"),
                        help="requests at each client count for --batching: cnn-small, resnet18")
    parser.add_argument("--models", nargs="+", default=("cnn-small", "resnet18"), choices=("cnn-small", "resnet18"),
                        help="models for --batching and --gil")
    parser.add_argument("--clients", type=int, nargs="+", default=(1, 8, 32),
                        help="client counts for --batching (the first and last are compared)")
    args = parser.parse_args()
    if args.app:
        resnet, photo = make_resnet_run()
        print(f"app  raw-body /predict, 32 at once, in-process, model and decoding stubbed: "
              f"{app_loop_us(resnet, photo):.0f} us of the event loop a request", flush=True)
    elif args.gil:
        batches = (1,) if args.device == "cpu" else (1, 32)
        made = {"cnn-small": lambda: demo_run()[0], "resnet18": lambda: make_resnet_run()[0]}
        gil_contention({name: made[name]() for name in args.models}, args.device, batches)
    elif args.raw_body:
        raw_body_overhead(*demo_run())
    elif args.batching:
        small, big = args.requests
        models = ("resnet18",) if args.stand_in_ms else args.models  # a stand-in: the resnet18 run's 224x224 images
        runs = {}
        if "cnn-small" in models:
            runs["cnn-small"] = (*demo_run(), small)
        if "resnet18" in models:
            runs["resnet18"] = (*make_resnet_run(), big)
        batching_throughput(runs, args.device, args.client_processes, args.stand_in_ms, args.backend,
                            tuple(args.clients))
    else:
        main()

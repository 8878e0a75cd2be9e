"""Our server against LitServe on the same small model (issue 24: adopt LitServe's LitAPI shape, or LitServe
itself if it serves our measured cases at least as well). Both get the same multipart /predict from lean
keep-alive clients (benchmarks/serving.py's): one client at a time, and 16 at once with micro-batching (up to 32
images, 5 ms), PyTorch on the CPU (and ONNX Runtime, and two processes, for cnnlab). LitServe's LitAPI decodes, batches, predicts and
encodes in its inference worker process, fed through a queue from its HTTP process.

LitServe is not a dependency of cnnlab; to run this:
  pip install --no-deps --target .bench/litserve litserve==0.2.19 pyzmq
  PYTHONPATH=.bench/litserve .venv/bin/python benchmarks/litserve_compare.py        (about a minute on 2 cores)
"""
from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common import SCRATCH
from serving import _connections, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import TINY, write_images  # noqa: E402

LITSERVE_APP = """
# Written by benchmarks/litserve_compare.py: LitServe spawns its workers, which import this file.
import sys, litserve as ls, cnnlab
run = sys.argv[1] if len(sys.argv) > 1 else None

class Images(ls.LitAPI):
    def setup(self, device):
        self.predictor = cnnlab.load(run, "cpu", backend="torch")

    def decode_request(self, request):  # the form, parsed by LitServe's HTTP process
        return self.predictor.preprocess(request["files"].file.read())

    def batch(self, images):
        return images

    def predict(self, images):
        images = images if isinstance(images, list) else [images]
        rows = self.predictor.ranked(self.predictor.outputs(images), 5)
        return rows if self.max_batch_size > 1 else rows[0]

    def unbatch(self, rows):
        return rows

    def encode_response(self, row):
        return self.predictor.predictions([row], [None])[0].model_dump(by_alias=True)

if __name__ == "__main__":
    api = Images(max_batch_size=int(sys.argv[3]), batch_timeout=0.005)
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(port=int(sys.argv[2]), host="127.0.0.1",
                                                                     num_api_servers=1, generate_client_file=False,
                                                                     log_level="warning")
"""


def small_run() -> tuple[Path, bytes]:
    import cnnlab

    folder = SCRATCH / "litserve"
    run = folder / "run"
    if not (run / "model.safetensors").is_file():
        cnnlab.train(write_images(folder / "bars", {"a": 20, "b": 20, "c": 20}), run, epochs=1, lr=0.01,
                     batch_size=16, **TINY)
    return run, next((folder / "bars" / "a").glob("*.png")).read_bytes()


def request(image: bytes) -> bytes:
    body = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
            + image + b"\r\n--b--\r\n")
    return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def start(command: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{command[:3]} did not start")


def measure(port: int, wire: bytes, clients: int, requests: int) -> tuple[float, float]:
    """requests/s and median latency (ms) of ``clients`` keep-alive connections sending ``wire``."""
    start_s = time.perf_counter()
    latencies = asyncio.run(_connections(port, wire, clients, requests, lambda: None))
    wall = time.perf_counter() - start_s
    return len(latencies) / wall, statistics.median(latencies) * 1000


def main() -> None:
    run, image = small_run()
    wire = request(image)
    app = SCRATCH / "litserve" / "app.py"
    app.write_text(LITSERVE_APP)
    def cnnlab(*flags: str):
        return lambda port: ["-m", "cnnlab", "serve", str(run), "--port", str(port), "--device", "cpu", *flags]

    servers = {  # LitServe: its HTTP process and one inference worker process
        "cnnlab torch": cnnlab("--backend", "torch"),
        "cnnlab torch --workers 2": cnnlab("--backend", "torch", "--workers", "2"),
        "cnnlab onnx": cnnlab("--backend", "onnx"),
        "LitServe torch": lambda port: [str(app), str(run), str(port), "32"],
    }
    for name, command in servers.items():
        port = free_port()
        proc = start(command(port), port)
        try:
            measure(port, wire, 1, 50)  # warm
            for clients, requests in ((1, 500), (16, 1500)):
                rps, p50 = measure(port, wire, clients, requests)
                print(f"litserve-compare  {name:24s} {clients:2d} client(s): {rps:7.1f} req/s, p50 {p50:6.2f} ms",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()

"""Six attacks on `cnnlab serve` (issue 23), on 127.0.0.1 only, each bounded in bytes, count and time: small in
tests/serving/test_attacks.py, at full size in benchmarks/attacks.py. Each returns the figures it measured."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import httpx

HOST = "127.0.0.1"


def client() -> httpx.Client:
    """A client that opens a new connection for each request (so that each one is accepted, by any worker) but is
    built once: building one (its TLS context) costs more than the request itself on a loaded machine."""
    return httpx.Client(headers={"connection": "close"}, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the server and its process
SLOW_START = r"""
# Written by tests/serving/attacks.py: each server worker holds Python's lock for CNNLAB_TEST_SLOW_START seconds before it
# builds its app, as importing PyTorch does on a loaded machine (a ctypes.PyDLL call keeps the lock).
import os
if os.environ.get("CNNLAB_TEST_SLOW_START"):
    import ctypes
    import cnnlab.serving.server as server

    build = server.create_app

    def slow_create_app(*args, **kwargs):
        ctypes.PyDLL(None).sleep(int(os.environ["CNNLAB_TEST_SLOW_START"]))
        return build(*args, **kwargs)

    server.create_app = slow_create_app
"""


class Server:
    """``cnnlab serve RUN`` on a free port of 127.0.0.1 in a process group of its own; its log in ``log``.
    ``slow_start``: seconds each worker holds Python's lock before it builds its app (``SLOW_START``)."""

    def __init__(self, run: Path, *flags: str, folder: Path, slow_start: int = 0, start_s: float = 120) -> None:
        self.port, self.log = free_port(), folder / f"serve-{time.monotonic_ns()}.log"
        env = {**os.environ, "TMPDIR": str(folder)}
        if slow_start:
            (folder / "sitecustomize.py").write_text(SLOW_START)
            env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
            env["CNNLAB_TEST_SLOW_START"] = str(slow_start)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(self.port),
                                          "--device", "cpu", *flags], stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.url = f"http://{HOST}:{self.port}"
        deadline = time.monotonic() + start_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def workers(self) -> set[int]:
        """The server's worker processes (gunicorn's master's children), or itself with one process."""
        kids = children(self.proc.pid)
        return kids or {self.proc.pid}

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(p) for p in (task / "children").read_text().split()}
    return {p for p in out if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()}


def status_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB: VmRSS (resident now), VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def written(pid: int) -> int:
    """Bytes the process has passed to write calls (files, pipes, sockets): /proc/PID/io's wchar."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise KeyError("wchar")


def read_chars(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise KeyError("rchar")


# ----------------------------------------------------------------------------- /health while under attack
class Latencies(list):
    """/health's latencies, in s; ``failed``: the answers that did not come (each counted as the watch's limit)."""

    failed = 0


@contextmanager
def health_watch(url: str, limit_s: float = 120):
    """/health asked again and again (a new connection each time) while the block runs: its latencies, in s (a
    request that failed counts as ``limit_s``)."""
    latencies = Latencies()
    stop, ready = threading.Event(), threading.Event()

    def ask() -> None:
        deadline = time.monotonic() + limit_s
        with client() as http:
            http.get(f"{url}/health")  # a first answer before the attack starts
            ready.set()
            while not stop.is_set() and time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    ok = http.get(f"{url}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.failed += not ok
                latencies.append(time.perf_counter() - start if ok else limit_s)
                time.sleep(0.02)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    ready.wait(timeout=60)
    try:
        yield latencies
    finally:
        stop.set()
        thread.join(timeout=60)


def baseline_health(url: str, n: int = 20) -> float:
    """The slowest of ``n`` /health answers with nothing else going on, in s."""
    times = []
    with client() as http:
        for _ in range(n):
            start = time.perf_counter()
            http.get(f"{url}/health")
            times.append(time.perf_counter() - start)
    return max(times)


# ----------------------------------------------------------------------------- 1, 2: request heads
def _answer(sock: socket.socket, seconds: float = 3.0) -> bytes:
    """What the server sent on ``sock`` until it closed it (or ``seconds`` passed)."""
    out, deadline = b"", time.monotonic() + seconds
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        out += data
    return out


def push_head(port: int, total: int, piece: int = 64 * 1024, seconds: float = 10.0) -> tuple[int, bytes]:
    """One connection that sends one header value in ``piece``-byte pieces, up to ``total`` bytes or ``seconds``:
    (bytes it got sent, the server's answer)."""
    sock = socket.create_connection((HOST, port))
    sock.settimeout(1.0)
    sent, chunk, deadline = 0, b"a" * piece, time.monotonic() + seconds
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        while sent < total and time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += piece
    except OSError:  # no longer read (a full buffer), or closed by the server
        pass
    answer = _answer(sock)
    sock.close()
    return sent, answer


def drip_for(port: int, seconds: float, total: int = 1 << 40, piece: int = 64 * 1024) -> tuple[int, list]:
    """``push_head`` again and again, a new connection each time it is refused, until ``total`` bytes are sent or
    ``seconds`` have passed: (bytes sent, the answers)."""
    sent, answers, deadline = 0, [], time.monotonic() + seconds
    while sent < total and time.monotonic() < deadline:
        n, answer = push_head(port, total - sent, piece, max(0.1, deadline - time.monotonic()))
        sent += n
        answers.append(answer)
    return sent, answers


def held_heads(port: int, connections: int, each: int, seconds: float = 10.0) -> list:
    """``connections`` at once, each pushing ``each`` bytes of unfinished headers (``drip_for``: reconnecting when
    refused) for at most ``seconds``: each one's (bytes sent, answers)."""
    results: list = [(0, [])] * connections

    def one(i: int) -> None:
        results[i] = drip_for(port, seconds, each)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    return results


def status_of(answer: Optional[bytes]) -> Optional[int]:
    if not answer or not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer.split(b" ", 2)[1])


# ----------------------------------------------------------------------------- 3: decoding
def image(width: int, height: int, fmt: str = "PNG") -> bytes:
    """A flat image: a few kilobytes that decode to width x height pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, fmt, quality=50) if fmt == "JPEG" else \
        Image.new("RGB", (width, height), (200, 40, 40)).save(buf, fmt)
    return buf.getvalue()


def send_at_once(url: str, blobs: list[bytes], content_type: str = "image/png") -> list[int]:
    """Each blob as the raw body of its own /predict, all at once: the statuses."""
    import asyncio

    async def go() -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            answers = await asyncio.gather(*(client.post("/predict", content=b, headers={"content-type": content_type})
                                             for b in blobs), return_exceptions=True)
        return [a.status_code if isinstance(a, httpx.Response) else 0 for a in answers]

    return asyncio.run(go())


# ----------------------------------------------------------------------------- 4: a chunked multipart upload
def chunked_multipart(url: str, total: int, piece: int = 64 * 1024, seconds: float = 10.0) -> tuple[int, int]:
    """One file part of ``total`` bytes in a multipart body with no Content-Length (chunked), sent for at most
    ``seconds``: (status or 0 when the connection was closed, bytes sent)."""
    sent = [0]
    deadline = time.monotonic() + seconds

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        chunk = b"\0" * piece
        while sent[0] < total and time.monotonic() < deadline:
            sent[0] += piece
            yield chunk
        yield b"\r\n--b--\r\n"

    try:
        status = httpx.post(f"{url}/predict", content=body(), timeout=seconds + 30,
                            headers={"content-type": "multipart/form-data; boundary=b"}).status_code
    except httpx.HTTPError:
        status = 0
    return status, sent[0]


# ----------------------------------------------------------------------------- 6: a killed worker under load
class Load:
    """Clients posting ``png`` to /predict in a loop (a new connection each time, so that every worker gets
    some), for at most ``seconds``: each answer's (time, ok)."""

    def __init__(self, url: str, png: bytes, clients: int = 4, seconds: float = 120) -> None:
        self.url, self.png, self.answers = url, png, []
        self.stop, self.deadline = threading.Event(), time.monotonic() + seconds
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        with client() as http:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                try:
                    ok = http.post(f"{self.url}/predict", content=self.png,
                                   headers={"content-type": "image/png"}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.answers.append((time.monotonic(), ok))

    def rate(self, start: float, end: float) -> float:
        return sum(ok for t, ok in self.answers if start <= t < end) / max(end - start, 1e-9)

    def failed(self, start: float = 0.0) -> int:
        return sum(not ok for t, ok in self.answers if t >= start)

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def started(server: Server, pid: int) -> bool:
    """Whether worker ``pid`` has said that its application started (gunicorn's log names each line's pid)."""
    return f"[{pid}] [INFO] Application startup complete" in server.log.read_text(errors="replace")


def replace_killed_worker(server: Server, limit_s: float = 120) -> dict:
    """SIGKILL one worker, then wait until a replacement has started and read requests: its pid, the seconds from
    the kill to then, how many workers were started meanwhile, and the workers that ended other than the one
    killed (none, unless the supervisor killed a healthy one)."""
    before = server.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    killed_at, seen, ended, reads = time.monotonic(), set(before), set(), {}
    while time.monotonic() - killed_at < limit_s:
        now = server.workers()
        ended |= seen - now - {victim}
        seen |= now
        for pid in now - before:
            try:
                if pid not in reads and started(server, pid):
                    reads[pid] = read_chars(pid)  # from here on it reads only requests
                elif pid in reads and read_chars(pid) > reads[pid] + 1000:
                    return {"pid": pid, "seconds": time.monotonic() - killed_at, "spawned": len(seen - before),
                            "others_ended": ended}
            except (FileNotFoundError, ProcessLookupError):
                continue
        time.sleep(0.05)
    return {"pid": None, "seconds": None, "spawned": len(seen - before), "others_ended": ended}

"""The six attacks of issue 23 at full size against `cnnlab serve` (a subprocess, default limits, `--request-timeout
5` as in the issue), on 127.0.0.1 only, each bounded in bytes, count and time (tests/serving/attacks.py; the tests run them
small). Prints, for each, the figure the issue measured before next to its value now: /health latency during the
attack, memory growth, bytes written to disk, requests failed, seconds to recover.

Run: .venv/bin/python benchmarks/attacks.py   (about 2-3 minutes on 2 cores)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from common import SCRATCH

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS / "serving"), str(TESTS)]
from attacks import (Load, Server, baseline_health, chunked_multipart, drip_for, health_watch, held_heads,  # noqa: E402
                     image, replace_killed_worker, send_at_once, status_kb, status_of, written)
from conftest import TINY, write_images  # noqa: E402

MB = 1024 * 1024
FOLDER = SCRATCH / "attacks"


def small_run() -> Path:
    """A small CNN on 16x16 bars (made once): the model does not matter to these attacks."""
    import cnnlab

    run = FOLDER / "run"
    if not (run / "model.safetensors").is_file():
        data = write_images(FOLDER / "bars", {"a": 20, "b": 20, "c": 20})
        cnnlab.train(data, run, epochs=2, lr=0.01, batch_size=16, **TINY)
    return run


def reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kb(pid, "VmHWM")


def statuses(codes) -> str:
    counts: dict = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{n}x {code or 'closed'}" for code, n in sorted(counts.items(), key=lambda kv: str(kv[0])))


def drip(server: Server) -> list[tuple]:
    quiet = baseline_health(server.url)
    with health_watch(server.url) as latencies:
        sent, answers = drip_for(server.port, 10)
    return [("1. a header value in 64 KB pieces, 10 s (reconnecting)", "/health slowest during", "6.36 s (44 MB)",
             f"{max(latencies):.3f} s ({len(latencies)} answers; quiet {quiet:.3f} s); {len(answers)} connections "
             f"({statuses(status_of(a) for a in answers)}), {sent / MB:.0f} MB sent")]


def held(server: Server) -> list[tuple]:
    pid = server.proc.pid
    before = reset_peak(pid)
    with health_watch(server.url) as latencies:
        results = held_heads(server.port, 40, 16 * MB, seconds=10)
    grown = (status_kb(pid, "VmHWM") - before) / 1024
    answers = [a for _, group in results for a in group]
    single = []
    for name, head in (("100 KB header", b"X-A: " + b"a" * 100_000 + b"\r\n"),
                       ("8 MB header", b"X-A: " + b"a" * (8 * MB) + b"\r\n"),
                       ("200,000 headers", b"".join(b"X-%d: a\r\n" % i for i in range(200_000)))):
        single.append(f"{name} {one_head(server.port, head)}")
    return [("2. 40 connections x 16 MB of unfinished headers", "memory growth (peak)", "+538 MB",
             f"+{grown:.0f} MB; {len(answers)} connections ({statuses(status_of(a) for a in answers)}), "
             f"{sum(n for n, _ in results) / MB:.0f} MB sent; /health slowest {max(latencies):.3f} s"),
            ("2. single large heads", "status", "200 each", "; ".join(single))]


def one_head(port: int, head: bytes):
    import socket

    from attacks import _answer

    with socket.create_connection(("127.0.0.1", port)) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + head + b"\r\n")
        except OSError:
            pass
        return status_of(_answer(sock))


def decoding(server: Server) -> list[tuple]:
    pid = server.proc.pid
    rows = []
    for (w, h), before_figure in (((9000, 9000), "+2.3 GB, 23.6 s"), ((4000, 4000), "(not measured)")):
        png = image(w, h)
        start_kb, start = reset_peak(pid), time.perf_counter()
        codes = send_at_once(server.url, [png] * 8)
        seconds, grown = time.perf_counter() - start, (status_kb(pid, "VmHWM") - start_kb) / 1024
        rows.append((f"3. 8 PNGs of {w}x{h} ({len(png) // 1024} KB each) at once", "memory growth (peak), time",
                     before_figure, f"+{grown:.0f} MB, {seconds:.1f} s; {statuses(codes)}"))
    return rows


def spill(server: Server) -> list[tuple]:
    pid = server.proc.pid
    before = written(pid)
    status, sent = chunked_multipart(server.url, 230 * MB, seconds=5)
    return [("4. chunked multipart, one 230 MB file part", "bytes written to disk", "230 MB in 5 s",
             f"{(written(pid) - before) / 1024:.0f} KB written (all writes: answers, logs) of {sent / MB:.0f} MB "
             f"sent; status {status or 'closed'}")]


def host(server: Server) -> list[tuple]:
    answer = httpx.get(f"{server.url}/model", headers={"host": "evil.example"})
    return [("5. Host: evil.example", "status of GET /model", "200", f"{answer.status_code} {answer.text[:60]}...")]


def workers(run: Path) -> list[tuple]:
    png = image(16, 16)
    with Server(run, "--workers", "2", "--request-timeout", "5", folder=FOLDER) as server:
        with Load(server.url, png, clients=16, seconds=60) as load:
            start = time.monotonic()
            time.sleep(8)
            killed_at = time.monotonic()
            replaced = replace_killed_worker(server, limit_s=40)
            back = time.monotonic()
            time.sleep(8)
            end = time.monotonic()
        before, after = load.rate(start + 2, killed_at), load.rate(back + 1, end)
        log = server.log.read_text()
    recovered = f"{replaced['seconds']:.1f} s" if replaced["seconds"] is not None else "not within 40 s"
    return [("6. --workers 2, one killed with kill -9 under load (16 clients)", "requests failed", "6",
             f"{load.failed(killed_at - 1)}"),
            ("6.", "seconds until a replacement serves", "40 s (2 back only after the load)",
             f"{recovered}; {replaced['spawned']} started, {len(replaced['others_ended'])} healthy killed, "
             f"{log.count('WORKER TIMEOUT')} worker timeouts"),
            ("6.", "answers/s before -> after the kill", "514 -> 44-213", f"{before:.0f} -> {after:.0f}")]


def show(rows: list[tuple]) -> None:
    for attack, figure, before, now in rows:
        print(f"{attack:<55} {figure:<38} {before:<34} {now}", flush=True)


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    run = small_run()
    print(f"{'attack':<55} {'figure':<38} {'before (issue 23)':<34} now", flush=True)
    with Server(run, "--request-timeout", "5", folder=FOLDER) as server:
        for attack in (drip, held, decoding, spill, host):
            show(attack(server))
        print(f"the attacked server still answers /health: {httpx.get(f'{server.url}/health').status_code}")
    show(workers(run))


if __name__ == "__main__":
    main()

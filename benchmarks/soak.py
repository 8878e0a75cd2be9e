"""Soak (#14), on loopback only and bounded: 2,000 /predict requests at 8 concurrent against `cnnlab serve`
(one process), 10% of them malformed: truncated images, text files named .png, pixel bombs, a wrong
Content-Type, no file field, 2,000 file parts in one request.

It shows: no 5xx; every valid request answered with the label `cnnlab predict` gives offline; the
server's resident memory growth between request 500 and 2,000 (target < 50 MB); the same server
process at the end. Prints these figures.

Run: .venv/bin/python benchmarks/soak.py
"""
from __future__ import annotations

import asyncio
import io
import random
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

import cnnlab
from common import SCRATCH, verdict
from serving import Server, demo_run

REQUESTS, CONCURRENCY, BAD_SHARE = 2000, 8, 0.10


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def pixel_bomb() -> bytes:
    """A PNG that says 30,000 x 30,000 pixels (900 megapixels) in a few kilobytes."""
    buf = io.BytesIO()
    Image.new("L", (30000, 30000)).save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def malformed(kind: int, digit: bytes, bomb: bytes):
    """(name, request kwargs, expected status) of one malformed request."""
    kinds = [
        ("truncated image", {"files": {"files": ("t.png", digit[: len(digit) // 2], "image/png")}}, 422),
        ("text named .png", {"files": {"files": ("notes.png", b"just some text\n" * 20, "image/png")}}, 415),
        ("pixel bomb", {"files": {"files": ("bomb.png", bomb, "image/png")}}, 422),
        ("wrong Content-Type", {"content": digit, "headers": {"Content-Type": "text/plain"}}, 415),
        ("no file field", {"files": {"other": ("notes.txt", b"some text", "text/plain")}}, 422),
        ("2,000 file parts", {"files": [("files", (f"{i}.png", b"x", "image/png")) for i in range(2000)]}, 400),
    ]
    return kinds[kind % len(kinds)]


async def soak(url: str, pid: int, valid: list[tuple[bytes, str]], bomb: bytes) -> dict:
    rng = random.Random(0)
    plan = [("bad", i) if rng.random() < BAD_SHARE else ("good", rng.randrange(len(valid))) for i in range(REQUESTS)]
    statuses, wrong_labels, unexpected, done = Counter(), 0, [], 0
    rss = {}
    queue = iter(enumerate(plan))

    async def worker(client):
        nonlocal wrong_labels, done
        for n, (kind, i) in queue:
            if kind == "good":
                image, label = valid[i]
                r = await client.post(f"{url}/predict", files={"files": ("digit.png", image, "image/png")})
                statuses[r.status_code] += 1
                if r.status_code != 200 or r.json()["predictions"][0]["label"] != label:
                    wrong_labels += 1
            else:
                name, kwargs, expected = malformed(i, valid[0][0], bomb)
                r = await client.post(f"{url}/predict", **kwargs)
                statuses[r.status_code] += 1
                if r.status_code != expected or "detail" not in r.json():
                    unexpected.append((name, r.status_code))
            done += 1
            if done in (500, REQUESTS):
                rss[done] = rss_mb(pid)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return {"statuses": statuses, "wrong_labels": wrong_labels, "unexpected": unexpected, "rss": rss,
            "seconds": time.perf_counter() - start, "bad": sum(k == "bad" for k, _ in plan)}


def main() -> dict:
    run = demo_run()[0]
    files = sorted((SCRATCH / "demo" / "mnist-5k" / "test").rglob("*.png"))[::10]  # 100 test digits
    offline = cnnlab.load(run, "cpu").predict(files)  # what `cnnlab predict` says of each
    valid = [(f.read_bytes(), p.label) for f, p in zip(files, offline)]
    bomb = pixel_bomb()
    server = Server(run)
    try:
        pid = server.proc.pid
        result = asyncio.run(soak(server.url, pid, valid, bomb))
        alive = server.proc.poll() is None and httpx.get(f"{server.url}/health").status_code == 200
        same = alive and server.proc.pid == pid
    finally:
        server.stop()
    s = result["statuses"]
    fives = sum(v for k, v in s.items() if k >= 500)
    growth = result["rss"][REQUESTS] - result["rss"][500]
    print(f"soak  {REQUESTS} requests ({result['bad']} malformed), {CONCURRENCY} concurrent, {result['seconds']:.1f} s: "
          f"statuses {dict(sorted(s.items()))}")
    print(f"soak  5xx: {fives} (target 0: {verdict(-fives, 0, True)}); valid answers with a label other than cnnlab "
          f"predict's: {result['wrong_labels']} (target 0: {verdict(-result['wrong_labels'], 0, True)}); malformed ones "
          f"answered otherwise than expected: {result['unexpected'][:5] or 0}")
    print(f"soak  resident memory {result['rss'][500]:.0f} MB at request 500, {result['rss'][REQUESTS]:.0f} MB at "
          f"{REQUESTS}: {growth:+.1f} MB (target < 50 MB: {verdict(growth, 50, False)}); same server process, still "
          f"serving: {same}")
    return result


if __name__ == "__main__":
    main()

"""Dynamic micro-batching for the server: concurrent requests share one forward pass.

Each request hands its decoded images to ``MicroBatcher.submit`` and awaits its own rows. One task
gathers what arrives: it runs a batch as soon as ``max_batch`` images are waiting, or ``max_wait_ms``
after the first of them arrived, whichever comes first; the forward pass runs off the event loop.
It waits only for requests that are on their way (``arriving()``: announced by the server before it
decodes them): a request alone is run at once, with no added latency, and, when nothing else is queued,
running or arriving, decoded and run in one hop off the event loop (``alone``/``run_alone``).
The model is in eval mode and every layer of it works on each image alone, so a request's answer is
the same whether it shared a batch or not (up to the last bits of a floating-point sum; the server
rounds probabilities to 6 decimals).

All model work runs in one thread of its own (``ModelThread``), one forward pass at a time. In LitServe's terms
(``api.py``), ``_run_batch`` is ``batch`` (the waiting requests' images, one list), ``forward`` (``predict``) and
``unbatch`` (each request its rows).
"""
from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch


class ModelThread:
    """One thread for all of a server's model work, and the intra-op thread count a lone image runs best with.

    On a CPU a forward pass started from any thread but the process's first wakes PyTorch's OpenMP helpers
    at each layer, and when the process has more threads than cores they sleep between layers rather than
    spin: a small model's single image took 2.4-3 ms in a worker thread against 0.9 ms in the main thread
    (2 cores). One image on one intra-op thread has nothing to wake (1.0-1.2 ms). So the thread measures,
    once, one image at one thread and at all of them, and runs single images with the faster; a batch of
    several images always gets all threads (ResNet-18, 32 images: 1.4 s on 2 threads, 2.6 s on one).
    """

    INLINE_MS = 2.0  # a model whose single image takes at most this runs a lone small request on the event loop

    def __init__(self, predictor=None, inline: Optional[bool] = None) -> None:
        """``inline``: whether ``run_here`` may be used; None: when the model is small enough (measured)."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cnnlab-model")
        self.threads = self.threads_alone = torch.get_num_threads()
        self.timings: dict[int, float] = {}
        self.inline = False
        if predictor is not None and predictor.device.type == "cpu":  # PyTorch or ONNX Runtime on the CPU
            self.threads_alone = self._pool.submit(self._pick, predictor).result()
            self.inline = self.timings[self.threads_alone] <= self.INLINE_MS
        if inline is not None:
            self.inline = inline

    def _pick(self, predictor) -> int:
        from cnnlab.inference.predictor import median_ms

        x = torch.zeros(1, predictor.pre.channels, *predictor.pre.size, dtype=torch.uint8)
        for n in sorted({1, self.threads}):
            torch.set_num_threads(n)
            # The model alone (a broken one's outputs are refused per request, not here); a large model: a few
            # passes, half a second.
            self.timings[n] = median_ms(lambda: predictor.raw(x), n=15, warmup=2, budget_s=0.5)
        torch.set_num_threads(self.threads)
        return min(self.timings, key=self.timings.get)

    def _call(self, images: int, fn: Callable, args: tuple) -> Any:
        self._use(self.threads_alone if images == 1 else self.threads)
        return fn(*args)

    @staticmethod
    def _use(threads: int) -> None:
        if torch.get_num_threads() != threads:  # OpenMP's count is the calling thread's own
            torch.set_num_threads(threads)

    def run_here(self, fn: Callable) -> Any:
        """``fn()`` (one image) in the calling thread, on the thread count single images run best with: for a
        model measured at most ``INLINE_MS`` per image, where the hop to the model thread and back (0.2-0.3 ms
        here) would cost a third of the work. The event loop waits that long, as for any handler's own work."""
        self._use(self.threads_alone)
        return fn()

    async def run(self, images: int, fn: Callable, *args) -> Any:
        """``fn(*args)`` in the model thread; ``images``: how many it runs the model on."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, images, fn, args)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


@dataclass
class _Job:
    images: list[torch.Tensor]
    future: asyncio.Future
    arrived: float = 0.0


class MicroBatcher:
    def __init__(self, forward: Callable[[list[torch.Tensor]], Sequence], max_batch: int,
                 max_wait_ms: float, on_batch: Optional[Callable[[int], None]] = None,
                 thread: Optional[ModelThread] = None) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.forward, self.max_batch, self.max_wait = forward, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch
        self.thread = thread or ModelThread()
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self._arriving = 0  # requests announced (being read or decoded) and not yet submitted
        self._inflight = 0  # requests submitted or run alone and not yet answered: queued, gathered or running

    @contextlib.contextmanager
    def arriving(self):
        """Around a request's decoding and its ``submit``: a batch being gathered waits for it."""
        token = [True]
        self._arriving += 1
        try:
            yield token
        finally:
            if token[0]:
                self._arriving -= 1

    def _start(self) -> None:
        loop = asyncio.get_running_loop()  # a new event loop (a test client's, say) gets its own queue and task
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run())

    def alone(self) -> bool:
        """Nothing queued, gathered, running or on its way but the caller (announced with ``arriving``)."""
        return self._inflight == 0 and self._arriving <= 1

    async def run_alone(self, fn: Callable[[], tuple[list, torch.Tensor]], count: int = 1, here: bool = False):
        """Run ``fn`` (decode and forward of one request of ``count`` images: its images and outputs) in one hop
        in the model thread, as a batch of its own; requests that arrive meanwhile are batched as usual.
        ``here``: one small image for a model that ``thread.inline`` allows: run in this thread instead."""
        if here:
            images, outputs = self.thread.run_here(fn)
            if self.on_batch is not None:
                self.on_batch(len(images))
            return outputs
        self._inflight += 1
        try:
            images, outputs = await self.thread.run(count, fn)
        finally:
            self._inflight -= 1
        if self.on_batch is not None:
            self.on_batch(len(images))
        return outputs

    async def submit(self, images: list[torch.Tensor], token: Optional[list] = None) -> torch.Tensor:
        """``forward``'s rows for ``images`` (a request's), computed in a batch with whatever else waits;
        ``token``: the one ``arriving()`` gave, so that the request no longer counts as on its way."""
        self._start()
        if token is not None and token[0]:
            token[0] = False
            self._arriving -= 1
        loop = asyncio.get_running_loop()
        job = _Job(images, loop.create_future(), loop.time())
        self._inflight += 1
        try:
            await self._queue.put(job)
            return await job.future
        finally:
            self._inflight -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending: Optional[_Job] = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            jobs, count = [first], len(first.images)
            deadline = first.arrived + self.max_wait
            while count < self.max_batch:
                if not self._queue.empty():  # what queued while the last batch ran joins at once, however late
                    job = self._queue.get_nowait()
                else:
                    timeout = deadline - loop.time()
                    if timeout <= 0 or self._arriving == 0:
                        break  # nothing queued, and nothing on its way (or no time left to wait for it)
                    try:
                        job = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                if count + len(job.images) > self.max_batch:  # it starts the next batch
                    pending = job
                    break
                jobs.append(job)
                count += len(job.images)
            await self._run_batch(jobs, count)

    async def _run_batch(self, jobs: list[_Job], count: int) -> None:
        images = [img for job in jobs for img in job.images]  # batch
        try:
            outputs = await self.thread.run(count, self.forward, images)  # predict
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(count)
        start = 0
        for job in jobs:  # unbatch
            if not job.future.done():  # a client that went away cancelled its future
                job.future.set_result(outputs[start:start + len(job.images)])
            start += len(job.images)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.thread.close()

"""A model's forward pass on a GPU as one CUDA graph replay per batch size.

PyTorch eager launches a pass operator by operator, and takes Python's lock back after each one. In a
server whose event loop keeps that lock busy, each launch waits for it: ResNet-18 on an H200, one image,
2.4 ms alone and 634 ms beside a busy Python thread (``benchmarks/serving.py --gil --device cuda``,
benchmarks/results/gpu-h200-2026-12-04.md). A captured graph is launched in one call.

Graphs are captured lazily, one for each power-of-two batch size up to ``MAX_GRAPHED`` (a batch is padded
up to the next one: in evaluation mode every row is computed on its own, so the padding changes no row).
Larger batches, and any model whose capture fails, run eagerly (one warning). PyTorch's own
``torch.cuda.make_graphed_callables`` is for training (it graphs the backward too); ``torch.compile``'s
"reduce-overhead" mode does this as well but compiles for minutes first, which a server's start cannot afford.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

import torch

log = logging.getLogger(__name__)

MAX_GRAPHED = 64  # batch sizes 1, 2, 4 ... 64; the server's --max-batch is 32 by default
WARMUP_PASSES = 3  # cuDNN picks its kernels and the allocator settles before the capture


def bucket(n: int, largest: int = MAX_GRAPHED) -> Optional[int]:
    """The graphed batch size a batch of ``n`` runs in: the next power of two, or None above ``largest``."""
    if n < 1 or n > largest:
        return None
    return 1 << (n - 1).bit_length()


class GraphedForward:
    """``model(batch)`` for uint8 batches of one image shape on a CUDA device, through captured graphs."""

    def __init__(self, model: torch.nn.Module, device: torch.device, largest: int = MAX_GRAPHED) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
        self.model, self.device, self.largest = model, device, largest
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()  # every size's graph shares one memory pool
        self.failed = False
        self._lock = threading.Lock()  # a graph's static input is shared: one replay at a time

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        size = None if self.failed else bucket(len(batch), self.largest)
        if size is None:
            return self.model(batch.to(self.device))
        with self._lock:
            graph, static_in, static_out = self._graph(size, tuple(batch.shape[1:]), batch.dtype)
            if self.failed:
                return self.model(batch.to(self.device))
            static_in[: len(batch)].copy_(batch, non_blocking=True)
            graph.replay()
            return static_out[: len(batch)].clone()

    def _graph(self, size: int, shape: tuple, dtype: torch.dtype):
        key = (size, shape, dtype)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(size, shape, dtype)
            except Exception as exc:  # a model that cannot be captured still answers, eagerly
                self.failed = True
                log.warning(f"CUDA graphs are off for this model ({type(exc).__name__}: {exc}); it runs eagerly")
                return None, None, None
        return self.graphs[key]

    def _capture(self, size: int, shape: tuple, dtype: torch.dtype):
        static_in = torch.zeros((size, *shape), dtype=dtype, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_PASSES):
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.model(static_in)
        return graph, static_in, static_out


def graphed_or_eager(model: torch.nn.Module, device: torch.device, enabled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's forward for uint8 batches: graphed on a CUDA device when ``enabled``, else eager."""
    if enabled and device.type == "cuda":
        return GraphedForward(model, device)
    return lambda batch: model(batch.to(device))

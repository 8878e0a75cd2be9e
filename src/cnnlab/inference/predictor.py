"""``cnnlab.load(run_dir).predict(images)``: the same preprocessing as training and evaluation."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch

from cnnlab.data.images import ImageInput, decode
from cnnlab.errors import CnnlabError
from cnnlab import rundir
from cnnlab.inference.prediction import TOP_K, Prediction, check_threshold
from cnnlab.rundir import Run
from cnnlab.catalog.names import Backend, Device, Task, listed


class Predictor:
    """A run ready to predict: its own preprocessing, its calibration temperature (classification), and
    optionally test-time augmentation (``tta``: the softmax averaged over the views the run trained with).
    ``cuda_graphs``: on a GPU, each batch size's pass is one graph replay (inference/graphs.py)."""

    def __init__(self, run: Run, device: Union[str, torch.device] = "cpu", tta: bool = False,
                 cuda_graphs: bool = False) -> None:
        from cnnlab.inference.graphs import graphed_or_eager

        self.run = run
        self.device = torch.device(device)
        self.model = run.load_model(self.device)
        self._forward = graphed_or_eager(self.model, self.device, cuda_graphs)
        self._setup(run, tta)

    def _setup(self, run: Run, tta: bool) -> None:
        from cnnlab.inference.tta import original, views

        self.classes, self.pre, self.task = run.classes, run.pre, run.task
        self.temperature = run.temperature() if run.task == Task.CLASSIFICATION else 1.0
        self.views = views(run.config.augment) if tta else [("original", original)]

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """One image (path, bytes, PIL image or array) -> uint8 tensor (C, H, W) at the model's size."""
        return decode(image, self.pre.channels, self.pre.size, self.pre.interpolation)

    @torch.inference_mode()
    def raw(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> the model's outputs (logits, or regression values), on the CPU."""
        return self._forward(batch).float().cpu()

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch (N, C, H, W) -> class probabilities (N, K), or regression values (N, 1); with TTA,
        the mean over the views."""
        outs = [self._probabilities(self.raw(view(batch))) for _, view in self.views]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)

    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        bad = int((~torch.isfinite(out)).any(dim=1).sum())
        if bad:
            raise CnnlabError(f"the model in {self.run.path} gives NaN or infinite outputs for {bad} of {len(out)} "
                              f"images, so it cannot predict; its weights are broken: train it again (lower --lr)")
        return (out / self.temperature).softmax(dim=1) if self.task == Task.CLASSIFICATION else out

    def outputs(self, images: Iterable[torch.Tensor], batch_size: int = 128) -> torch.Tensor:
        chunks, batch = [], []
        for img in images:
            batch.append(img)
            if len(batch) == batch_size:
                chunks.append(self.forward(torch.stack(batch)))
                batch = []
        if batch:
            chunks.append(self.forward(torch.stack(batch)))
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.classes) or 1)

    def to_predictions(self, out: torch.Tensor, paths: Sequence[Optional[str]], top_k: int,
                       threshold: Optional[float] = None) -> list[Prediction]:
        """``threshold``: a top probability below it gives ``label=None, uncertain=True`` (top-k still listed)."""
        return self.predictions(self.ranked(out, top_k), paths, threshold)

    def ranked(self, out: torch.Tensor, top_k: int) -> list:
        """Each row of ``outputs`` as plain Python: its top-k ``(probabilities, class indices)``, or its value
        (regression). One top-k over the batch: the server ranks a shared batch in its model thread, and its
        event loop, which answers every request, only builds each one's document (``predictions``)."""
        if self.task == Task.REGRESSION:
            return out[:, 0].tolist()
        probs, idx = out.topk(min(top_k, len(self.classes)), dim=1)
        return list(zip(probs.tolist(), idx.tolist()))

    def predictions(self, rows: Sequence, paths: Sequence[Optional[str]],
                    threshold: Optional[float] = None) -> list[Prediction]:
        """``ranked`` rows -> predictions; ``threshold``: as in ``to_predictions``."""
        threshold = check_threshold(threshold)
        # Built without validation (model_construct): the values are ours, and a small model's request is ~2 ms.
        if self.task == Task.REGRESSION:
            return [Prediction.model_construct(path=path, label=value, probability=None)
                    for value, path in zip(rows, paths)]
        preds = []
        for (probs, idx), path in zip(rows, paths):
            top = [{"label": self.classes[i], "probability": round(p, 6)} for p, i in zip(probs, idx)]
            unsure = threshold is not None and probs[0] < threshold
            preds.append(Prediction.model_construct(path=path, label=None if unsure else top[0]["label"],
                                                    probability=top[0]["probability"], top_k=top, uncertain=unsure))
        return preds

    def predict(self, images: Union[ImageInput, Sequence[ImageInput]], top_k: int = TOP_K,
                batch_size: int = 128, threshold: Optional[float] = None) -> list[Prediction]:
        """Predict one image or a list; an unreadable image is a ``BadImage`` naming it. ``threshold``: mark
        predictions whose top probability is below it as uncertain (``label`` None)."""
        threshold = check_threshold(threshold)
        if not isinstance(images, (list, tuple)):
            images = [images]
        with ThreadPoolExecutor(4) as pool:
            tensors = list(pool.map(self.preprocess, images))
        paths = [str(i) if isinstance(i, (str, Path)) else None for i in images]
        return self.to_predictions(self.outputs(tensors, batch_size), paths, top_k, threshold)


class OnnxPredictor(Predictor):
    """The same predictor on ONNX Runtime (exported on first use into RUN/export/)."""

    def __init__(self, run: Run, threads: Optional[int] = None, tta: bool = False) -> None:
        from cnnlab.inference.extras import require_serve

        require_serve("--backend onnx")
        from cnnlab.inference.export import batch_session

        self.session, self.nhwc = batch_session(run, threads)
        self.input = self.session.get_inputs()[0].name
        self.run, self.device, self.model = run, torch.device("cpu"), None
        self._setup(run, tta)

    def raw(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.permute(0, 2, 3, 1) if self.nhwc else batch
        return torch.from_numpy(self.session.run(["output"], {self.input: batch.contiguous().numpy()})[0]).float()


def median_ms(fn, n: int = 30, warmup: int = 3, budget_s: Optional[float] = None) -> float:
    """The median time of ``fn()`` in milliseconds over ``n`` calls, after ``warmup`` calls; ``budget_s``: stop
    once the timed calls have taken that long (at least 2 of them), for a slow ``fn``."""
    import statistics
    import time

    for _ in range(warmup):
        fn()
    times = []
    while len(times) < n and (budget_s is None or sum(times) < budget_s or len(times) < 2):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def forward_ms(predictor: Predictor, batch: torch.Tensor, n: int = 30, warmup: int = 3) -> float:
    """The median time of ``predictor.forward(batch)`` in milliseconds, after ``warmup`` calls."""
    return median_ms(lambda: predictor.forward(batch), n, warmup)


def _fastest(run: Run, device: torch.device, tta: bool, cuda_graphs: bool = False, reps: int = 20) -> Predictor:
    """``backend="auto"``: ONNX Runtime when the run has a current ONNX export, the device is the CPU and it
    runs one image faster than PyTorch (median of ``reps``, after a warm-up); else PyTorch."""
    import logging

    torch_predictor = Predictor(run, device, tta, cuda_graphs)
    if device.type != "cpu" or not (run.export_dir() / rundir.ONNX).is_file():
        return torch_predictor
    try:
        onnx_predictor = OnnxPredictor(run, tta=tta)
    except (CnnlabError, ImportError) as exc:  # a stale export, or no onnxruntime: PyTorch then
        logging.getLogger(__name__).info(f"--backend auto: PyTorch ({str(exc).splitlines()[0]})")
        return torch_predictor
    x = torch.zeros(1, run.pre.channels, *run.pre.size, dtype=torch.uint8)
    eager, onnx = forward_ms(torch_predictor, x, reps), forward_ms(onnx_predictor, x, reps)
    chosen = onnx_predictor if onnx < eager else torch_predictor
    chosen.backend_choice = f"{'onnx' if chosen is onnx_predictor else 'torch'} (one image: ONNX Runtime {onnx:.2f} ms, PyTorch {eager:.2f} ms)"
    logging.getLogger(__name__).info(f"--backend auto: {chosen.backend_choice}")
    return chosen


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; ``cuda`` (or ``cuda:N``) must exist."""
    if isinstance(device, torch.device):
        return device
    kind = device.split(":")[0]
    if kind not in set(Device):
        raise CnnlabError(f"unknown device '{device}': use one of {listed(Device)}")
    if kind == Device.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == Device.CUDA and not torch.cuda.is_available():
        raise CnnlabError(f"--device {device}: this machine has no usable CUDA GPU (use --device cpu or auto)")
    return torch.device(device)


def load(run_dir: Union[str, Path], device: Union[str, torch.device] = "auto", backend: str = Backend.TORCH.value,
         tta: bool = False, cuda_graphs: bool = False) -> Predictor:
    """Load a run directory for prediction: ``cnnlab.load("runs/x").predict("cat.png")``.

    ``device``: auto (a GPU when there is one), cpu or cuda. The ONNX backend runs on the CPU; ``backend="auto"``
    takes ONNX Runtime when the run has a current ONNX export and it is the faster on this CPU. ``cuda_graphs``:
    on a GPU, each batch size's pass is captured once and replayed (one launch; the server's default there).
    """
    where = resolve_device(device)
    if backend not in set(Backend):
        raise CnnlabError(f"unknown backend '{backend}'. Known: {listed(Backend)}")
    if backend == Backend.AUTO:
        return _fastest(Run.open(run_dir), where, tta, cuda_graphs)
    if backend == Backend.ONNX:
        if where.type != "cpu" and device != "auto":
            raise CnnlabError(f"--backend onnx runs on the CPU (ONNX Runtime); for --device {device} use --backend torch")
        return OnnxPredictor(Run.open(run_dir), tta=tta)
    return Predictor(Run.open(run_dir), where, tta, cuda_graphs)

"""Checkpoints that survive kills and full disks, and resume the very same run.

- ``AtomicCheckpointIO``: Lightning's checkpoint plugin, writing each checkpoint to a temp file in the
  checkpoint's own folder, fsynced, then ``os.replace``d (Lightning's default writes to a temp file that
  a full disk on another filesystem truncates mid-copy); loading goes through ``files.load_torch``.
- ``RandomState``: every random generator of the process (torch CPU and CUDA, NumPy, Python) stored in
  the checkpoint as tensors and lists, so that ``weights_only=True`` loads them, and put back when the
  checkpoint is restored. With the epoch-seeded batches of the data module (order and augmentation
  depend only on the seed, the epoch and the batch), a resumed run replays the same steps bit for bit.
"""
from __future__ import annotations

import io
import random
from typing import Any, Optional

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from cnnlab import files


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        # Serialised in memory first (as Lightning does), so that a full disk is an OSError of the write,
        # which files.write_bytes turns into one line, and not a RuntimeError from inside torch's zip writer.
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        files.write_bytes(path, buf.getbuffer())

    def load_checkpoint(self, path, map_location: Any = None, weights_only: Optional[bool] = None) -> dict[str, Any]:
        return files.load_torch(path, map_location="cpu")


def _collect() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(py_state), py_gauss],
    }


def _apply(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))


class RandomState(Callback):
    """The process's random generators, saved with every checkpoint and restored with it."""

    def state_dict(self) -> dict:
        return _collect()

    def load_state_dict(self, state_dict: dict) -> None:
        # Restored before Lightning creates the first loader iterator (which draws its base seed), as in
        # the uninterrupted run, where that draw follows the checkpoint.
        _apply(state_dict)

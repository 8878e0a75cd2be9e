"""JPEG files decoded in batches on a CUDA GPU (nvJPEG, through ``torchvision.io.decode_jpeg``) and resized there.

Only what the GPU decodes exactly as the CPU path would goes there: complete (ending in the EOI marker), 8-bit
grayscale or RGB JPEGs with no EXIF rotation (nvJPEG ignores it) under Pillow's pixel limit. Anything else,
and any batch nvJPEG refuses, is left to the CPU decoder (``images.decode``), which also judges bad files, so
the skipped-file report is the CPU's. nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few
levels on some pixels; the resize is torchvision's antialiased one on both.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from cnnlab.data.images import INTERPOLATION

log = logging.getLogger(__name__)
DECODERS = ("auto", "cpu", "device")


def decode_device(wanted: str, training_on_gpu: bool) -> Optional[torch.device]:
    """Where JPEGs are decoded: a CUDA device, or None for the CPU. ``device`` without a usable GPU falls back
    to the CPU with one log line; ``auto`` is the GPU when the run trains on one."""
    if wanted == "cpu" or (wanted == "auto" and not training_on_gpu):
        return None
    if not torch.cuda.is_available():
        if wanted == "device":
            log.info("--decode device: no CUDA GPU here, so images are decoded on the CPU")
        return None
    # each process of a multi-GPU run decodes on its own GPU
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def _fits_the_device(data: bytes) -> bool:
    """A JPEG that nvJPEG decodes as the CPU path would (see the module's docstring)."""
    if data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            limit = Image.MAX_IMAGE_PIXELS
            return (img.format == "JPEG" and img.mode in ("L", "RGB") and img.getexif().get(0x0112, 1) == 1
                    and (limit is None or img.size[0] * img.size[1] <= limit))
    except Exception:  # noqa: BLE001 - unreadable: the CPU path says why
        return False


def _read_for_the_device(path) -> Optional[torch.Tensor]:
    """The file's bytes, if the device decodes it."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if _fits_the_device(data) else None


def decode_on_device(paths: Sequence[Path], channels: int, size: tuple[int, int], interpolation: str,
                     device: torch.device, mapper: Callable = map) -> list[Optional[torch.Tensor]]:
    """uint8 (C, H, W) CPU tensors at ``size`` for the files the GPU decodes, None for the others (the CPU's).
    ``mapper`` reads the files and their headers (a thread pool's ``map``: the reads release the GIL)."""
    out: list[Optional[torch.Tensor]] = [None] * len(paths)
    read = list(mapper(_read_for_the_device, paths))
    picked = [i for i, blob in enumerate(read) if blob is not None]
    blobs = [read[i] for i in picked]
    if not picked:
        return out
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        decoded = decode_jpeg(blobs, mode=mode, device=device)
    except RuntimeError as exc:  # one file nvJPEG refuses spoils its batch: the CPU decodes them all
        log.debug(f"nvJPEG refused a batch ({exc}); decoding it on the CPU")
        return out
    resized = [F.resize(img, list(size), interpolation=INTERPOLATION[interpolation], antialias=True)
               if tuple(img.shape[-2:]) != tuple(size) else img for img in decoded]
    for i, img in zip(picked, torch.stack(resized).cpu()):
        out[i] = img.contiguous()
    return out

"""Decode one image file into a uint8 tensor of the model's channels and size.

Shared by training, evaluation, prediction and serving, so every path sees the same pixels.
Imports neither Lightning nor the training code.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
IGNORED_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray]


class BadImage(Exception):
    """An input that cannot be used as an image; the message is the reason."""


def _open(source: ImageInput) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    if isinstance(source, bytes):
        if not source:
            raise BadImage("empty file")
        return Image.open(io.BytesIO(source))
    path = Path(source)
    if path.stat().st_size == 0:
        raise BadImage("empty file")
    return Image.open(path)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Grayscale, RGBA, palette, CMYK, 16-bit ... -> 'L' or 'RGB'. Transparency goes on white."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def decode(source: ImageInput, channels: int, size: tuple[int, int] | None,
           interpolation: str = "bilinear") -> torch.Tensor:
    """Decode, apply EXIF orientation, convert the mode, resize once -> uint8 tensor (C, H, W)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(source)
            img.load()  # forces a full decode: truncated files fail here, not mid-epoch
            img = ImageOps.exif_transpose(img)
            img = to_mode(img, channels)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), RESAMPLE[interpolation], reducing_gap=None)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"refused, too many pixels (decompression bomb?): {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable image") from None
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"corrupt image: {exc}") from None
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def probe(path: Path) -> tuple[tuple[int, int], int] | None:
    """(H, W) and channel count from the header alone, or None if it cannot be read."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
            return (h, w), channels
    except Exception:  # noqa: BLE001 - any unreadable header just means "not usable"
        return None

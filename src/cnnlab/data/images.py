"""Decode one image file into a uint8 tensor of the model's channels and size.

Shared by training, evaluation, prediction and serving, so every path sees the same pixels.
Imports neither Lightning nor the training code.

Pillow reads the header first (format, mode, size, and the decompression-bomb check). Plain
8-bit JPEG and PNG files are then decoded by ``torchvision.io`` (libjpeg-turbo, libpng) straight
into a CHW tensor; other formats and modes (WebP, transparency, palettes, CMYK, 16-bit) go
through Pillow's conversions, as do JPEGs at least twice the model's input on both sides, which
libjpeg scales down while decoding (a 12-megapixel photo to 224x224: 170 -> 13 ms). Every image is
resized once, by torchvision's antialiased tensor resize, which stays within 2 levels of Pillow's.
Measured on 256x256 JPEGs to 224x224: 0.6-0.9 ms per image, against 2.3-2.8 ms all in Pillow.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from cnnlab.errors import BadImage

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
IGNORED_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray]


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
        # 16-bit levels map onto 8-bit ones by /257 (65535 -> 255, 0x8080 -> 128), the same for every image;
        # a 32-bit image holding 8-bit values stays as it is, a wider one is scaled by its own range.
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max(initial=0)
        scale = 1.0 if img.mode == "I" and top <= 255 else 257.0 if img.mode != "I" or top <= 65535 else top / 255
        img = Image.fromarray(np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                 "nearest": InterpolationMode.NEAREST}
TORCHVISION_FORMATS = {"JPEG", "PNG"}  # decoded by torchvision.io when 8-bit L or RGB (its WebP has no grayscale)


def _reduce(img: Image.Image, channels: int, size: tuple[int, int] | None) -> None:
    """A JPEG at least twice the model's input on both sides is decoded reduced (``img.size`` says to what)."""
    if size is not None and img.format == "JPEG" and min(img.size) >= 2 * max(size):
        # A photo many times the model's input: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (the
        # DCT), never below the size asked for, so the antialiased resize that follows still has
        # the pixels it needs. 10-20x faster for a phone photo going to 224x224.
        img.draft("L" if channels == 1 else "RGB", (max(size), max(size)))


def decoded_pixels(source: bytes, channels: int, size: tuple[int, int] | None) -> int | None:
    """How many pixels decoding ``source`` for a model input of ``size`` holds at once (a JPEG much larger than
    ``size`` is decoded reduced), from its header alone; None when decoding refuses it from its header by itself
    (unreadable, or over Pillow's decompression-bomb limit)."""
    try:
        with Image.open(io.BytesIO(source)) as img:
            _reduce(img, channels, size)
            pixels = img.size[0] * img.size[1]
    except Exception:  # noqa: BLE001 - an unreadable header: decoding refuses it by itself
        return None
    return None if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS else pixels


def _decode(source: ImageInput, channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (C, H, W), upright, in the model's channels: full size, or for a JPEG at least twice the
    target on both sides, no larger than needed for ``size``."""
    img = _open(source)  # the header only
    # Pillow refuses twice its limit itself and only warns between 1x and 2x; refused here from 1x. (Not by
    # turning its warning into an error: warnings.catch_warnings is not thread-safe, and the server decodes
    # in several threads at once, where one thread's exit can drop another's filter.)
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.size[0] * img.size[1] > limit:
        raise BadImage(f"refused, too many pixels (decompression bomb?): {img.size[0] * img.size[1]:,} pixels is "
                       f"over the limit of {limit:,}")
    _reduce(img, channels, size)
    fast = (img.format in TORCHVISION_FORMATS and img.mode in ("L", "RGB") and "transparency" not in img.info
            and isinstance(source, (str, Path, bytes)) and img.decoderconfig == ())
    if fast:
        img.close()
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
        try:
            return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode,
                                apply_exif_orientation=True)
        except RuntimeError as exc:  # drop the "decode_jpeg, .../decode_jpeg.cpp:171, " prefix
            raise BadImage(f"corrupt image: {re.sub(r'^.*?[.]cpp:[0-9]+, *', '', str(exc)).strip()}") from None
    img.load()  # forces a full decode: truncated files fail here, not mid-epoch
    img = to_mode(ImageOps.exif_transpose(img), channels)
    return F.pil_to_tensor(img)


def decode(source: ImageInput, channels: int, size: tuple[int, int] | None,
           interpolation: str = "bilinear") -> torch.Tensor:
    """Decode, apply EXIF orientation, convert the mode, resize once -> uint8 tensor (C, H, W).

    An input that cannot be used raises ``BadImage`` (its reason, and the path when it is one).
    """
    try:
        tensor = _decode_checked(source, channels, size)
    except BadImage as exc:
        if exc.source is None and isinstance(source, (str, Path)):
            exc.source = str(source)
        raise
    if size is not None and tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.resize(tensor, list(size), interpolation=INTERPOLATION[interpolation], antialias=True)
    return tensor.contiguous()


def _decode_checked(source: ImageInput, channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    try:
        return _decode(source, channels, size)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"refused, too many pixels (decompression bomb?): {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable image", status=415) from None
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"corrupt image: {exc}") from None


def probe(source: Union[Path, bytes]) -> tuple[tuple[int, int], int] | None:
    """(H, W) and channel count from the header alone (a file, or an upload's bytes), or None if it cannot be
    read."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
            return (h, w), channels
    except Exception:  # noqa: BLE001 - any unreadable header just means "not usable"
        return None

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.images import BadImage, decode


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_every_mode_becomes_the_models_channels(tmp_path, mode):
    img = Image.new("RGB", (10, 6), (200, 100, 50)).convert(mode)
    ext = "tiff" if mode in ("CMYK", "I;16") else "png"
    path = _save(img, tmp_path / f"x.{ext}")
    for channels in (1, 3):
        t = decode(path, channels, (8, 12))
        assert t.dtype == torch.uint8 and tuple(t.shape) == (channels, 8, 12)


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    t = decode(_save(img, tmp_path / "t.png"), 3, None)
    assert int(t.min()) == 255


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)  # 20 wide, 10 high, left half white
    arr[:, :10] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif, quality=95)
    t = decode(path, 1, None)
    assert tuple(t.shape) == (1, 20, 10)  # displayed upright: 10 wide, 20 high
    assert t[0, :8].float().mean() > 200 and t[0, -8:].float().mean() < 50  # left half is now on top


def test_truncated_file_is_a_bad_image(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImage, match="corrupt"):
        decode(path, 3, None)


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello, not an image", "not a readable image")])
def test_empty_and_non_image_files(tmp_path, content, reason):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(BadImage, match=reason):
        decode(path, 3, None)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(Image.new("L", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImage, match="decompression bomb"):
        decode(path, 1, None)


def test_images_between_one_and_two_times_the_pixel_limit_are_refused_in_concurrent_threads_too(tmp_path,
                                                                                               monkeypatch):
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    bomb = _save(Image.new("L", (100, 100)), tmp_path / "bomb.png")  # 10,000 pixels: Pillow itself only warns
    fine = _save(Image.new("L", (50, 50)), tmp_path / "fine.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    filters = list(warnings.filters)

    def attempt(path):
        try:
            return decode(path, 1, None).shape
        except BadImage as exc:
            return exc.reason

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, [bomb, fine] * 100))
    assert all("decompression bomb" in r and "10,000 pixels" in r for r in results[0::2])
    assert all(r == (1, 50, 50) for r in results[1::2])
    assert warnings.filters == filters  # decoding leaves the process's warning filters as they were


def test_resize_uses_the_models_interpolation(tmp_path):
    rng = np.random.default_rng(0)
    path = _save(Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), tmp_path / "n.png")
    bilinear, bicubic = decode(path, 3, (20, 20), "bilinear"), decode(path, 3, (20, 20), "bicubic")
    for ours, mode in ((bilinear, Image.Resampling.BILINEAR), (bicubic, Image.Resampling.BICUBIC)):
        pillow = np.asarray(Image.open(path).resize((20, 20), mode, reducing_gap=None)).astype(int)
        assert np.abs(ours.permute(1, 2, 0).numpy().astype(int) - pillow).max() <= 2  # Pillow's reference resize
    assert not torch.equal(bilinear, bicubic)


@pytest.mark.parametrize("fmt,mode", [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "L"), ("WEBP", "RGB")])
def test_torchvision_decodes_what_pillow_decodes(tmp_path, fmt, mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 6, 3), dtype=np.uint8))
    img = base.resize((40, 30), Image.Resampling.BICUBIC).convert(mode)  # smooth, as photos are
    path = _save(img, tmp_path / f"x.{fmt.lower()}", **({"quality": 95} if fmt != "PNG" else {}))
    data = path.read_bytes()
    for channels in (1, 3):
        pillow = np.asarray(Image.open(path).convert("L" if channels == 1 else "RGB")).astype(int)
        for source in (path, str(path), data):
            t = decode(source, channels, None)
            assert tuple(t.shape) == (channels, 30, 40)
            assert np.abs(t.permute(1, 2, 0).numpy().astype(int) - pillow.reshape(30, 40, -1)).max() <= 3


def test_corrupt_jpeg_body_behind_a_good_header_is_a_bad_image(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    data[-200:-2] = bytes(198)  # keep the header and the end marker, wreck the scan data
    path = tmp_path / "broken.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="corrupt") as err:
        decode(path, 3, None)
    assert ".cpp" not in str(err.value)  # a reason for people, not a source location


def test_a_large_jpeg_is_scaled_while_decoding_and_matches_a_full_decode(tmp_path, monkeypatch):
    import cnnlab.data.images as images
    from torchvision.transforms.v2 import functional as F

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200), Image.BICUBIC)
    path = _save(photo, tmp_path / "photo.jpg", quality=90)
    full = F.resize(decode(path, 3, None), [48, 48], antialias=True)
    monkeypatch.setattr(images, "decode_image", lambda *a, **k: pytest.fail("decoded at full size"))
    scaled = decode(path, 3, (48, 48))  # 1200 >= 2 x 48: libjpeg decodes at 1/8 scale (200x150)
    diff = (scaled.int() - full.int()).abs()
    assert scaled.shape == (3, 48, 48) and diff.float().mean() < 1.5 and diff.max() <= 8


def test_decoded_pixels_counts_what_decoding_holds_a_large_jpeg_reduced_from_its_header():
    import io

    from PIL import Image

    from cnnlab.data.images import decoded_pixels

    def encoded(size, fmt):
        buf = io.BytesIO()
        Image.new("RGB", size, (90, 20, 200)).save(buf, fmt)
        return buf.getvalue()

    jpeg, png = encoded((4000, 3000), "JPEG"), encoded((4000, 3000), "PNG")
    with Image.open(io.BytesIO(jpeg)) as img:  # the oracle: what libjpeg really decodes at the draft scale
        img.draft("RGB", (224, 224))
        img.load()
        reduced = img.size[0] * img.size[1]
    assert reduced < 4000 * 3000 // 16
    assert decoded_pixels(jpeg, 3, (224, 224)) == reduced
    assert decoded_pixels(jpeg, 3, (2000, 2000)) == 4000 * 3000  # not twice the input on both sides: full size
    assert decoded_pixels(png, 3, (224, 224)) == 4000 * 3000  # PNG has no reduced decoding
    assert decoded_pixels(b"not an image", 3, (224, 224)) is None
    bomb = encoded((10, 10), "PNG")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 99  # over Pillow's limit: decoding refuses it as a bomb (422), not counted here
        assert decoded_pixels(bomb, 3, (16, 16)) is None
    finally:
        Image.MAX_IMAGE_PIXELS = limit

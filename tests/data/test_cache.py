"""The image cache on disk (cnnlab/data/cache.py) and batched device decoding (cnnlab/data/device_decode.py)."""
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cnnlab.config import load_config
from cnnlab.data import datasets, memo
from cnnlab.data.cache import Key, fingerprint
from cnnlab.data.datasets import FileImages, InMemoryImages, MappedImages, batch_collate, decode_entries
from cnnlab.data.device_decode import decode_on_device
from cnnlab.data.images import decode
from cnnlab.data.prepare import prepare
from cnnlab.data.sources import Entry
from cnnlab.models.registry import resolve_preprocessing
from conftest import write_images


def _prepared(data, cache: str, **extra):
    cfg = load_config(None, {"cache": cache, "input_size": 12, "in_channels": 3, **extra})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data)})})
    return prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed))


@pytest.fixture
def decodes(monkeypatch):
    """How many files the data module decoded."""
    count = [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return decode(*args, **kwargs)

    monkeypatch.setattr(datasets, "decode", counting)
    memo.forget()  # a folder this process decoded before would be served from memory
    return count


@pytest.fixture
def data(tmp_path):
    """bars with one corrupt file: 3 classes x 8 images + 1 skipped."""
    root = write_images(tmp_path / "data", {"a": 8, "b": 8, "c": 8})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def _pixels(prepared, split: str) -> torch.Tensor:
    ds = prepared.datasets[split]
    return ds.__getitems__(list(range(len(ds))))[0]


def _entry(image_cache: Path) -> Path:
    (found,) = (image_cache / "images").glob("*.u8")
    return found


def test_the_disk_cache_is_built_once_then_reused_with_the_memory_caches_pixels_and_skips(data, decodes, image_cache):
    memory = _prepared(data, "memory")
    assert decodes[0] == 25
    first = _prepared(data, "disk")
    assert decodes[0] == 50 and first.cache_file == str(_entry(image_cache))
    again = _prepared(data, "disk")
    assert decodes[0] == 50  # nothing decoded: the rows come from the file
    meta = json.loads(_entry(image_cache).with_suffix(".json").read_text())
    assert meta["shape"] == [25, 3, 12, 12] and meta["dtype"] == "uint8"
    assert os.path.getsize(_entry(image_cache)) == 25 * 3 * 12 * 12
    for prepared in (first, again):
        assert [(s.path.name, s.reason) for s in prepared.skipped] == [(s.path.name, s.reason) for s in memory.skipped]
        assert [s.path.name for s in prepared.skipped] == ["broken.png"]
        assert prepared.records == memory.records  # the same files in the same splits
        for split in ("train", "val", "test"):
            assert isinstance(prepared.datasets[split], MappedImages)
            assert torch.equal(_pixels(prepared, split), _pixels(memory, split))
            assert torch.equal(prepared.datasets[split].targets, memory.datasets[split].targets)
    # a loader worker maps the file itself and serves the same rows
    loader = DataLoader(again.datasets["train"], batch_sampler=[[3, 0, 5]], num_workers=1, collate_fn=batch_collate)
    assert torch.equal(next(iter(loader))[0], _pixels(memory, "train")[[3, 0, 5]])


@pytest.mark.parametrize("damage", ["truncated", "altered", "description", "skipped list"])
def test_a_damaged_cache_entry_is_detected_and_rebuilt(data, decodes, image_cache, damage):
    memory = _prepared(data, "memory")
    _prepared(data, "disk")
    entry = _entry(image_cache)
    if damage == "truncated":
        os.truncate(entry, 100)
    elif damage == "altered":  # a byte rewritten in place: same size, a later modification time
        with open(entry, "r+b") as f:
            f.seek(500)
            f.write(b"\xff")
        st = os.stat(entry)
        os.utime(entry, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        meta = entry.with_suffix(".json")
        change = {"shape": [10**9, 3, 12, 12]} if damage == "description" else {"skipped": [["x", None]]}
        meta.write_text(json.dumps({**json.loads(meta.read_text()), **change}))
    before = decodes[0]
    rebuilt = _prepared(data, "disk")
    assert decodes[0] == before + 25
    assert os.path.getsize(entry) == 25 * 3 * 12 * 12
    assert torch.equal(_pixels(rebuilt, "train"), _pixels(memory, "train"))


def test_the_fingerprint_changes_with_a_file_or_a_setting(tmp_path):
    root = write_images(tmp_path, {"a": 3})
    paths = sorted(root.rglob("*.png"))
    key = Key(3, (12, 12), "bilinear", "cpu")
    before = fingerprint(paths, key)
    assert fingerprint(paths, key) == before
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched = fingerprint(paths, key)
    paths[1].write_bytes(paths[1].read_bytes() + b"\0")
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))  # one byte longer, the same time as at first
    assert len({before, touched, fingerprint(paths, key)}) == 3
    others = [Key(1, (12, 12), "bilinear", "cpu"), Key(3, (12, 16), "bilinear", "cpu"),
              Key(3, (12, 12), "bicubic", "cpu"), Key(3, (12, 12), "bilinear", "cuda")]
    assert before not in {fingerprint(paths[:2], key)} | {fingerprint(paths, k) for k in others}


@pytest.mark.parametrize("why", ["not a folder", "no space"])
def test_a_cache_that_cannot_be_written_falls_back_to_the_files(data, monkeypatch, tmp_path, caplog, why):
    if why == "not a folder":  # unwritable even for root, who ignores permission bits
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "file" / "cache"))
    else:
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        files = _prepared(data, "disk")
    lines = [r.getMessage() for r in caplog.records if "image cache" in r.getMessage()]
    assert len(lines) == 1 and "CNNLAB_CACHE" in lines[0]
    assert isinstance(files.datasets["train"], FileImages) and files.cache_file is None
    assert [s.path.name for s in files.skipped] == ["broken.png"]
    assert torch.equal(_pixels(files, "train"), _pixels(_prepared(data, "memory"), "train"))
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written left behind


def test_a_complete_entry_is_read_without_writing_anything(data, decodes, monkeypatch):
    from cnnlab.data import cache

    _prepared(data, "disk")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache, "FileLock", refused)  # a read-only cache folder: no lock file can be made
    before = decodes[0]
    assert isinstance(_prepared(data, "disk").datasets["train"], MappedImages) and decodes[0] == before


def test_auto_uses_the_disk_cache_when_the_images_do_not_fit_and_none_decodes_the_files(data):
    assert isinstance(_prepared(data, "auto", cache_limit_mb=1).datasets["train"], InMemoryImages)  # 10,800 bytes
    big = _prepared(data, "auto", input_size=640, cache_limit_mb=1)  # 25 x 1.2 MB
    assert isinstance(big.datasets["train"], MappedImages)
    assert isinstance(_prepared(data, "none").datasets["train"], FileImages)


def test_a_run_config_written_with_cache_disk_still_loads(tmp_path, data):
    (tmp_path / "config.yaml").write_text("schema_version: 4\ndata:\n  cache: disk\n  cache_limit_mb: 64\n")
    cfg = load_config(tmp_path / "config.yaml", run_file=True)
    assert cfg.data.cache == "disk" and cfg.data.decode == "auto"
    with pytest.raises(Exception, match="cache"):
        load_config(None, {"cache": "ram"})


@pytest.fixture
def jpegs(tmp_path):
    """JPEGs the device path takes (RGB, gray, larger than the target) and ones it leaves to the CPU."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, side) in enumerate([("RGB", 40), ("L", 30), ("RGB", 64), ("RGB", 12)]):
        # photo-like: smooth shading and a little grain (the CPU path decodes a JPEG twice the target's side
        # reduced in the DCT, which on pure noise differs from a full decode and resize by far more)
        yy, xx = np.mgrid[0:side, 0:side + 6]
        smooth = np.stack([yy * 200 / side, xx * 180 / side, (yy + xx) * 90 / side], -1)
        img = Image.fromarray((smooth + rng.integers(0, 20, smooth.shape)).astype(np.uint8)).convert(mode)
        paths.append(tmp_path / f"ok{i}.jpg")
        img.save(paths[-1], quality=90)
    rotated = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    (tmp_path / "cut.jpg").write_bytes(paths[0].read_bytes()[:300])  # truncated: no EOI marker
    Image.new("RGB", (20, 20), (5, 6, 7)).save(tmp_path / "plain.png")
    return paths + [tmp_path / "rotated.jpg", tmp_path / "cut.jpg", tmp_path / "plain.png"]


def test_batched_jpeg_decoding_matches_the_cpu_path_and_leaves_the_rest_to_it(jpegs):
    # the device path's own code (eligibility, the batched decode_jpeg, the resize), run on the CPU device
    out = decode_on_device(jpegs, 3, (16, 16), "bilinear", torch.device("cpu"))
    assert [x is not None for x in out] == [True] * 4 + [False] * 3
    for path, x in zip(jpegs, out[:4]):
        ref = decode(path, 3, (16, 16))
        assert x.dtype == torch.uint8 and x.shape == ref.shape
        diff = (x.int() - ref.int()).abs()
        # the same decoder and resize up to the DCT-domain reduction the CPU applies to a JPEG twice the target
        assert diff.max() <= (2 if min(Image.open(path).size) < 32 else 10) and diff.float().mean() < 2.5
    entries = [Entry(p, "x") for p in jpegs]
    on_device = decode_entries(entries, 3, (16, 16), keep=True, device=torch.device("cpu"))
    on_cpu = decode_entries(entries, 3, (16, 16), keep=True)
    assert on_device[1] == on_cpu[1] == [0, 1, 2, 3, 4, 6]  # the cut file skipped by both, for the same reason
    assert [s.reason for s in on_device[2]] == [s.reason for s in on_cpu[2]]
    assert (on_device[0].int() - on_cpu[0].int()).abs().float().mean() < 2.5
    # decoding every epoch (cache none): the batch's JPEGs on the device, the rest on the CPU, in order
    usable = [jpegs[i] for i in on_cpu[1]]
    files = FileImages(usable, torch.arange(len(usable)), 3, (16, 16), device=torch.device("cpu"))
    x, y = files.__getitems__([5, 0, 4])
    assert torch.equal(y, torch.tensor([5, 0, 4])) and torch.equal(x[0], decode(usable[5], 3, (16, 16)))
    assert torch.equal(x[1], out[0]) and torch.equal(x[2], decode(usable[4], 3, (16, 16)))  # PNG and rotated JPEG: the CPU


def test_decode_device_without_a_gpu_falls_back_to_the_cpu_in_one_line(data, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        on_device = _prepared(data, "none", decode="device")
    assert [r.getMessage() for r in caplog.records if "--decode device" in r.getMessage()] == [
        "--decode device: no CUDA GPU here, so images are decoded on the CPU"]
    assert on_device.datasets["train"].device is None
    assert torch.equal(_pixels(on_device, "train"), _pixels(_prepared(data, "memory"), "train"))


@pytest.mark.slow
def test_train_through_the_cli_with_the_disk_cache(cli, data, tmp_path, image_cache):
    out = tmp_path / "run"
    tiny = ["--blocks", "[{filters: 4}, {filters: 8}]", "--dense", "16", "--progress", "false"]
    cli("train", data, "--out", out, "--epochs", "2", "--cache", "disk", *tiny, check=True)
    assert any(out.glob("*.safetensors"))
    assert len(list((image_cache / "images").glob("*.u8"))) == 1
    assert "broken.png" in (out / "skipped.csv").read_text()


def test_two_runs_preparing_at_once_decode_the_files_once(data, monkeypatch):
    import threading
    import time

    count, lock = [0], threading.Lock()

    def slow(*args, **kwargs):  # long enough for the second run to start while the first builds
        with lock:
            count[0] += 1
        time.sleep(0.02)
        return decode(*args, **kwargs)

    monkeypatch.setattr(datasets, "decode", slow)
    results = []
    runs = [threading.Thread(target=lambda: results.append(_prepared(data, "disk"))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert count[0] == 25 and len(results) == 2
    assert torch.equal(_pixels(results[0], "train"), _pixels(results[1], "train"))

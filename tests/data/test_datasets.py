import pytest
import torch
from torch.utils.data import DataLoader

from cnnlab.config import load_config
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.datasets import FileImages, InMemoryImages, batch_collate
from cnnlab.data.prepare import prepare
from cnnlab.models.registry import resolve_preprocessing


def _prepared(data, cache: str, size: int = 12):
    cfg = load_config(None, {"cache": cache, "val_split": 0.0, "test_split": 0.0, "input_size": size, "in_channels": 3})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data)})})
    return prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed)), cfg


def test_decoding_every_epoch_and_the_memory_cache_serve_the_same_pixels(bars):
    memory, _ = _prepared(bars, "memory")
    disk, _ = _prepared(bars, "none")
    mem, files = memory.datasets["train"], disk.datasets["train"]
    assert isinstance(mem, InMemoryImages) and isinstance(files, FileImages) and not disk.in_memory
    picks = [0, 7, 3, 59, 12]
    (xm, ym), (xd, yd) = mem.__getitems__(picks), files.__getitems__(picks)  # main process: decoder threads
    assert xd.dtype == torch.uint8 and xd.shape == (5, 3, 12, 12)
    assert torch.equal(xm, xd) and torch.equal(ym, yd)
    # in a loader worker, each worker decodes its batch itself: the same pixels again
    loader = DataLoader(files, batch_sampler=[picks], num_workers=1, collate_fn=batch_collate)
    assert torch.equal(next(iter(loader))[0], xm)


@pytest.mark.parametrize("cache", ["none", "disk"])
def test_images_from_disk_train_with_augmentation(bars, cache):
    disk, cfg = _prepared(bars, cache)
    cfg = cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"vflip": 1.0})})
    x, _ = next(iter(ImageDataModule(disk, cfg).train_dataloader()))
    images = {bytes(img.flip(-2).numpy()) for img in _prepared(bars, "memory")[0].datasets["train"].images}
    assert x.dtype == torch.uint8 and all(bytes(img.numpy()) in images for img in x)

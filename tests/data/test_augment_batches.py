import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

import cnnlab
from cnnlab.config import AugmentConfig, load_config
from cnnlab.catalog.augmentations import OPERATIONS, PRESETS, elastic_field
from cnnlab.catalog.elastic import ElasticFields
from cnnlab.data.augment_batches import build_augmentation, resolved
from cnnlab.data.prepare import prepare
from cnnlab.data.preview import preview, preview_rows
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import resolve_preprocessing
from conftest import TINY


def _batch(n=16, channels=3, size=16):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


def test_none_means_no_transform():
    assert build_augmentation(AugmentConfig(), 3, (16, 16)) is None


def test_explicit_operations_override_the_preset():
    ops = resolved(AugmentConfig(preset="standard", rotation=30.0, hflip=0.0))
    assert ops["rotation"] == 30.0 and "hflip" not in ops
    assert ops["translate"] == PRESETS.get("standard")()["translate"]


@pytest.mark.parametrize("preset", [p for p in PRESETS.names() if p != "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_change_images_and_keep_their_shape(preset, channels):
    x = _batch(channels=channels)
    out = build_augmentation(AugmentConfig(preset=preset), channels, (16, 16))(x.clone())
    assert out.shape == x.shape and out.dtype == torch.uint8  # uint8 in, uint8 out
    assert not torch.equal(out, x)


STRONG = {"rotation": 45.0, "translate": 0.3, "zoom": (0.5, 0.6), "crop_scale": (0.2, 0.3), "hflip": 1.0,
          "vflip": 1.0, "brightness": 0.8, "contrast": 0.8, "saturation": 0.9, "hue": 0.4, "noise": 0.2,
          "elastic": (2.0, 0.2)}


def test_the_operations_registry_is_every_augment_key():
    keys = set(AugmentConfig.model_fields) - {"preset", "group", "where"}
    assert set(OPERATIONS.names()) == keys == set(STRONG)  # a new operation needs a value below


@pytest.mark.parametrize("op", OPERATIONS.names())
def test_each_operation_changes_the_image(op):
    value = STRONG[op]
    x = _batch()
    torch.manual_seed(1)
    out = build_augmentation(AugmentConfig(**{op: value}), 3, (16, 16))(x.clone())
    assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)


@pytest.mark.parametrize("size", [(28, 28), (16, 40)])
def test_elastic_field_is_v2s_with_the_sides_fractions(size):
    side = min(size)  # Simard et al.'s 34 and 4 pixels on a 28-pixel side; v2's alpha is twice the pixels
    ref = v2.ElasticTransform(alpha=2 * 1.2 * side, sigma=0.14 * side)
    torch.manual_seed(3)
    expected = ref.make_params([torch.zeros(1, *size)])["displacement"]
    torch.manual_seed(3)  # one image: the same draws as v2's, x then y
    field = ElasticFields(*elastic_field({"elastic": (1.2, 0.14)}, size), size)(1, torch.device("cpu"))
    assert field.shape == (1, *size, 2) and torch.allclose(field, expected, atol=1e-6)


def test_elastic_moves_each_image_by_its_own_field_as_v2s_kernel_does():
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    x[..., 7:21, 7:21] = 255  # a box: its edges move
    torch.manual_seed(3)
    out = build_augmentation(AugmentConfig(elastic=(1.2, 0.14), group=8), 1, (28, 28))(x.clone())
    torch.manual_seed(3)
    fields = ElasticFields(*elastic_field({"elastic": (1.2, 0.14)}, (28, 28)), (28, 28))(8, torch.device("cpu"))
    for i in range(8):
        ref = TF.elastic(TF.to_dtype(x[i], torch.float32, scale=True), fields[i:i + 1],
                         interpolation=v2.InterpolationMode.BILINEAR)
        assert (out[i].int() - TF.to_dtype(ref, torch.uint8, scale=True).int()).abs().max() <= 1
    assert len({bytes(o.numpy()) for o in out}) == 8  # one group, eight different distortions


@pytest.mark.parametrize("size", [(1, 5), (2, 2)])
def test_elastic_leaves_images_under_3_pixels_as_they_are(size):
    x = torch.randint(0, 256, (4, 3, *size), dtype=torch.uint8)
    assert torch.equal(build_augmentation(AugmentConfig(elastic=(1.2, 0.2)), 3, size)(x.clone()), x)


def test_flip_is_exactly_torchvisions_flip():
    x = _batch()
    out = build_augmentation(AugmentConfig(hflip=1.0), 3, (16, 16))(x.clone())
    assert torch.equal(out, x.flip(-1))


def test_each_group_draws_its_own_parameters():
    x = _batch(n=1).repeat(8, 1, 1, 1)  # eight copies of one image
    aug = build_augmentation(AugmentConfig(rotation=90.0, group=2), 3, (16, 16))
    torch.manual_seed(0)
    out = aug(x)
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], out[3])  # same group, same draw
    assert len({out[i].sum().item() for i in (0, 2, 4, 6)}) > 1  # different groups, different draws


def test_reproducible_under_a_seed():
    aug = build_augmentation(AugmentConfig(preset="strong"), 3, (16, 16))
    torch.manual_seed(5)
    a = aug(_batch())
    torch.manual_seed(5)
    assert torch.equal(aug(_batch()), a)


@pytest.mark.parametrize("flags,message", [
    ({"augment": "fancy"}, "'augment.preset'.*unknown augmentation preset 'fancy'. Known: light, none, standard, strong"),
    ({"rotation": -5}, "'augment.rotation'"),
    ({"crop_scale": [0.5, 1.5]}, "'augment.crop_scale'.*max <= 1"),
    ({"shear": 3}, "unknown flag '--shear'"),
    ({"elastic": [1.0, 0.3]}, "'augment.elastic'.*0 < sigma <= 0.2"),
    ({"elastic": [-1.0, 0.1]}, "'augment.elastic'.*alpha >= 0"),
])
def test_bad_augmentation_settings(flags, message):
    with pytest.raises(CnnlabError, match=message):
        load_config(None, flags)


@pytest.mark.parametrize("where,in_loader", [("auto", True), ("loader", True), ("device", False)])
def test_training_batches_are_augmented_and_evaluation_batches_are_not(tmp_path, bars, where, in_loader):
    from lightning.pytorch.callbacks import Callback

    seen = {}

    class Spy(Callback):
        def on_train_start(self, trainer, pl_module):
            ds = trainer.train_dataloader.dataset  # SeededBatches on the device path
            seen["loader transform"] = getattr(ds, "dataset", ds).transform

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault("train", batch[0])

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.setdefault("val", batch[0])

    result = cnnlab.train(bars, tmp_path / "run", epochs=1, vflip=1.0, val_split=0.5, where=where,
                          callbacks=[Spy()], **TINY)
    # auto on the CPU augments in the loader; "device" after the copy to the model's device
    assert (seen["loader transform"] is not None) == in_loader
    cfg = load_config(result.run_dir / "config.yaml")
    datasets = prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed)).datasets
    train_imgs = {bytes(img.flip(-2).numpy()) for img in datasets["train"].images}
    val_imgs = {bytes(img.numpy()) for img in datasets["val"].images}
    assert all(bytes(img.numpy()) in train_imgs for img in seen["train"])  # every training image flipped
    assert all(bytes(img.numpy()) in val_imgs for img in seen["val"])  # validation untouched
    assert "vflip: 1.0" in (result.run_dir / "config.yaml").read_text()


def test_preview_shows_each_image_then_versions_that_differ_from_it(tmp_path, shapes_dir):
    cfg = load_config(None, {"augment": "strong"})
    resolve = lambda probed: resolve_preprocessing(cfg, probed)  # noqa: E731
    rows = preview_rows(cfg, shapes_dir, resolve, images=3, versions=4)
    assert len(rows) == 3 and all(r.shape == (5, 3, 16, 16) and r.dtype == torch.uint8 for r in rows)
    for row in rows:  # every augmented copy differs from its original (strong: rotation, jitter, noise)
        assert all(not torch.equal(row[0], copy) for copy in row[1:])
    labels = {p.parent.name for p in sorted(shapes_dir.rglob("*.png"))}
    originals = {bytes(r[0].numpy()) for r in rows}
    assert len(originals) == 3 and len(labels) == 3  # one image per class first: three different images

    out = preview(cfg, shapes_dir, tmp_path / "grid.png", resolve, images=3, versions=4)
    from PIL import Image

    # 16px tiles enlarged to 96px, 4px padding: 5 columns and 3 rows
    assert Image.open(out).size == (5 * 96 + 6 * 4, 3 * 96 + 4 * 4)


def test_augmented_training_is_reproducible_with_loader_workers(tmp_path, bars):
    runs = [cnnlab.train(bars, tmp_path / f"r{i}", epochs=1, num_workers=2, seed=7, **{**TINY, "augment": "strong"})
            for i in range(2)]
    a, b = (cnnlab.load(r.run_dir).model.net.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)

import pickle

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import cnnlab
from cnnlab import rundir
from cnnlab.catalog.augmentations import PRESETS
from cnnlab.config import AugmentConfig
from cnnlab.data.augment_batches import build_augmentation
from cnnlab.catalog.elastic import blur_matrix
from cnnlab.data.batched_augment import BatchedAugment, SeededBatches, build_batched_augmentation, uniform
from cnnlab.data.datasets import Batch, InMemoryImages
from conftest import TINY
from kills import killed_in_fork_then_resumed, sha256


def _batch(n=16, channels=3, size=(16, 16)):
    return torch.randint(0, 256, (n, channels, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def aten_ops(fn) -> int:
    """aten ops one call runs: on a GPU, each is a kernel launch that the host pays for."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name.startswith("aten::") for e in prof.events())


ZERO = {"rotation": 0.0, "translate": 0.0, "zoom": (1.0, 1.0), "crop_scale": (1.0, 1.0), "brightness": 0.0,
        "contrast": 0.0, "saturation": 0.0, "noise": 0.0}


def test_every_range_zero_is_the_identity():
    x = _batch(size=(12, 20))
    assert torch.equal(BatchedAugment(ZERO, 3, (12, 20), 8)(x, seed=1), x)


@pytest.mark.parametrize("geometry", [{}, {"zoom": (1.0, 1.0)}], ids=["flips-alone", "folded-into-the-grid"])
def test_a_flip_is_torch_flip_for_the_images_it_draws_and_leaves_the_others(geometry):
    x = _batch(n=32)
    aug = BatchedAugment({"hflip": 0.5, **geometry}, 3, (16, 16), 8)
    out = aug(x, seed=3)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image exactly one or the other
    assert 8 < sum(flipped) < 24  # p = 0.5 per image, not per batch
    assert flipped == (torch.rand(32, generator=torch.Generator().manual_seed(3)) < 0.5).tolist()


def test_a_rotation_of_90_degrees_is_rot90_away_from_the_border():
    x = _batch(size=(16, 16))
    out = BatchedAugment({"rotation": (90.0, 90.0)}, 3, (16, 16), 8)(x, seed=0)
    # F.affine turns clockwise for a positive angle: rot90 with k=-1
    assert torch.equal(out[..., 1:-1, 1:-1], torch.rot90(x, -1, (-2, -1))[..., 1:-1, 1:-1])


def test_the_geometry_is_torchvisions_affine_with_each_images_parameters():
    x, ops = _batch(n=6, size=(16, 20)), {"rotation": 30.0, "translate": 0.2, "zoom": (0.8, 1.2)}
    out = BatchedAugment(ops, 3, (16, 20), 8)(x, seed=3)
    g = torch.Generator().manual_seed(3)  # the draws of inverse_affine, in its order
    angle, tx, ty, scale = (uniform(g, 6, -30, 30), uniform(g, 6, -4, 4), uniform(g, 6, -3.2, 3.2),
                            uniform(g, 6, 0.8, 1.2))
    ref = torch.stack([TF.affine(TF.to_dtype(x[i], torch.float32, scale=True), angle=float(angle[i]),
                                 translate=[float(tx[i]), float(ty[i])], scale=float(scale[i]), shear=[0.0, 0.0],
                                 interpolation=InterpolationMode.BILINEAR) for i in range(6)])
    diff = (out.int() - TF.to_dtype(ref, torch.uint8, scale=True).int()).abs()
    assert (diff <= 1).float().mean() > 0.99  # float rounding at a few pixel edges
    assert len({round(float(a)) for a in angle}) == 6


@pytest.mark.parametrize("n,sigma", [(28, 3.92), (3, 0.6), (40, 2.5)])
def test_the_blur_matrix_is_v2s_gaussian_blur(n, sigma):
    d, kernel = torch.rand(4, 2, n, n), int(8 * sigma + 1) | 1
    ref = TF.gaussian_blur(d, [kernel, kernel], [sigma, sigma])
    assert torch.allclose(blur_matrix(n, sigma) @ d @ blur_matrix(n, sigma).T, ref, atol=1e-5)


def test_elastic_is_v2s_elastic_with_each_images_own_field():
    x, size = _batch(n=4, size=(16, 20)), (16, 20)
    aug = BatchedAugment({"elastic": (1.2, 0.14)}, 3, size, 8)
    out, field = aug(x, seed=2), aug.displacement(x, aug.parameters(4, 2)["seed"])  # the batch's seed draws it
    assert field.shape == (4, 16, 20, 2) and not torch.equal(field[0], field[1])
    for i in range(4):  # v2's elastic kernel, given the same field
        ref = TF.elastic(TF.to_dtype(x[i], torch.float32, scale=True), field[i:i + 1],
                         interpolation=InterpolationMode.BILINEAR)
        diff = out[i].int() - TF.to_dtype(ref, torch.uint8, scale=True).int()
        assert diff.abs().max() <= 1
    # the field is v2's: uniform noise in [-1, 1], blurred, times alpha / width (alpha = 2 x 1.2 x 16 pixels)
    assert field[..., 0].abs().max() < 2 * 1.2 * 16 / 20 and field[..., 0].std() > 0.01


def test_colour_is_v2s_adjustments_with_each_images_factors():
    x, ops = _batch(n=5), {"brightness": 0.5, "contrast": 0.9, "saturation": 0.5}
    x[:, 0] //= 4  # dark red, bright blue: the grayscale mean is far from the mean of the channels
    x[:, 2] = 255 - x[:, 2] // 4
    aug = BatchedAugment(ops, 3, (16, 16), 8)
    p, out = aug.parameters(5, 4), aug(x, seed=4)
    for i in range(5):
        y = TF.to_dtype(x[i], torch.float32, scale=True)
        y = TF.adjust_brightness(y, float(p["brightness"][i]))
        y = TF.adjust_contrast(y, float(p["contrast"][i]))
        y = TF.adjust_saturation(y, float(p["saturation"][i]))
        assert (out[i].int() - TF.to_dtype(y, torch.uint8, scale=True).int()).abs().max() <= 1
    assert len(set(p["brightness"].flatten().tolist())) == 5


def test_each_image_draws_its_own_parameters():
    x = _batch(n=1).repeat(8, 1, 1, 1)  # eight copies of one image
    out = BatchedAugment({"rotation": 30.0, "brightness": 0.3}, 3, (16, 16), 8)(x, seed=0)
    assert len({bytes(o.numpy()) for o in out}) == 8


def test_the_ops_of_a_call_do_not_grow_with_the_batch_and_the_grouped_ones_do():
    cfg = AugmentConfig(preset="standard")
    batched, grouped = build_batched_augmentation(cfg, 3, (16, 16)), build_augmentation(cfg, 3, (16, 16))
    small, big = _batch(n=8), _batch(n=256)
    batched(small, 0)  # the first call also caches the pixel centres of the grid
    assert aten_ops(lambda: batched(small, 1)) == aten_ops(lambda: batched(big, 1))
    assert aten_ops(lambda: grouped(big)) > 10 * aten_ops(lambda: grouped(small))


@pytest.mark.parametrize("cfg", [AugmentConfig(preset="strong"), AugmentConfig(elastic=(1.2, 0.14))],
                         ids=["strong", "elastic"])
def test_a_seed_gives_the_same_batch_whatever_the_global_generator(cfg):
    aug, x = build_batched_augmentation(cfg, 3, (16, 16)), _batch()
    torch.manual_seed(1)
    a = aug(x, seed=5)
    torch.manual_seed(2)
    assert torch.equal(aug(x, seed=5), a) and not torch.equal(aug(x, seed=6), a)


@pytest.mark.parametrize("preset", [p for p in PRESETS.names() if p != "none"])
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_change_images_and_keep_dtype_and_shape(preset, channels):
    x = _batch(channels=channels, size=(16, 24))
    out = build_batched_augmentation(AugmentConfig(preset=preset), channels, (16, 24))(x, seed=0)
    assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)


def test_hue_falls_back_to_the_grouped_v2_path():
    aug, x = BatchedAugment({"hue": 0.4}, 3, (16, 16), 4), _batch()
    assert aug.fallback is not None and aug.fallback.group == 4
    assert not torch.equal(aug(x, seed=0), x) and torch.equal(aug(x, seed=0), aug(x, seed=0))


def test_training_on_the_device_path_augments_each_batch_with_its_own_parameters(tmp_path, bars):
    from lightning.pytorch.callbacks import Callback

    seen = []

    class Spy(Callback):
        def on_train_start(self, trainer, pl_module):
            dm = trainer.datamodule
            seen.append((type(trainer.train_dataloader.dataset), dm.device_augment))
            dm.device_augment = Recorder(dm.device_augment)

    class Recorder:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, x, params):
            seen.append((len(x), params["seed"], params["theta"].shape))
            return self.inner(x, params=params)

    cnnlab.train(bars, tmp_path / "run", epochs=1, rotation=10.0, where="device", callbacks=[Spy()], **TINY)
    (dataset, augment), calls = seen[0], seen[1:]
    assert dataset is SeededBatches and isinstance(augment, BatchedAugment)
    assert calls and all(shape == (n, 2, 3) for n, _, shape in calls)  # a matrix per image
    assert len({seed for _, seed, _ in calls}) == len(calls)


def test_a_batch_carries_the_parameters_its_seed_draws():
    images = InMemoryImages(_batch(n=10), torch.arange(10))
    parameters = BatchedAugment({"rotation": 20.0, "hflip": 0.5}, 3, (16, 16), 8).parameters
    picks = Batch([3, 1, 4, 1])
    picks.seed = 99
    x, y, params = SeededBatches(images, pickle.loads(pickle.dumps(parameters))).__getitems__(picks)  # as in a worker
    again = parameters(4, 99)
    assert y.tolist() == [3, 1, 4, 1] and torch.equal(params["theta"], again["theta"])
    assert params["seed"] == again["seed"] and not torch.equal(parameters(4, 98)["theta"], again["theta"])


def test_loader_workers_draw_the_same_device_augmentation(tmp_path, bars):
    settings = {**TINY, "epochs": 1, "where": "device", "augment": "strong", "seed": 3}
    runs = [cnnlab.train(bars, tmp_path / f"w{w}", num_workers=w, **settings) for w in (0, 2)]
    a, b = (cnnlab.load(r.run_dir).model.net.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_run_augmented_on_the_device_resumes_bit_identical(tmp_path, bars):
    settings = {**TINY, "epochs": 2, "batch_size": 8, "rotation": 10, "noise": 0.05, "hflip": 0.5, "where": "device"}
    cnnlab.train(bars, tmp_path / "reference", **settings)
    proc = killed_in_fork_then_resumed(bars, tmp_path / "run", 1, 2, settings)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sha256(tmp_path / "run" / rundir.WEIGHTS) == sha256(tmp_path / "reference" / rundir.WEIGHTS)

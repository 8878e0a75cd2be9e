"""Augmentation of a whole batch at once, with per-image random parameters, for the model's device.

The grouped v2 path (``augment_batches.GroupedTransform``) launches every op once per group of
``augment.group`` images: about 6,400 aten ops for a 256-image ``standard`` batch, each a separate
kernel launch on a GPU, so the host spends longer launching augmentation than the GPU spends on the
step. Here the number of ops per batch does not depend on its size (Kornia's RandomAffine and
ColorJitter work the same way):

- geometry: crop_scale, flips, rotation, translate and zoom become one inverse affine matrix per image,
  built on the CPU, then one ``affine_grid`` and one ``grid_sample`` for the whole batch. Bilinear
  interpolation (v2.RandomAffine's default is nearest): a rotated or zoomed image without the jagged
  edges of nearest, for the same cost. Zeros fill what comes from outside the image.
- colour: brightness, contrast and saturation as per-image factors broadcast over the batch, with the
  formulas of v2's adjust_brightness/contrast/saturation, in that fixed order (ColorJitter shuffles it).
- elastic: a displacement field per image drawn on the device (as the noise), smoothed by one batched
  Gaussian blur and added to the geometry's grid: the same single ``grid_sample``.
- noise: one draw on the device, from a generator of that device seeded by the batch.
- hue has no batched form here: it falls back to the grouped v2 ColorJitter, so nothing is dropped.

Every random parameter comes from a CPU generator seeded by the batch's seed (the data module's
``EpochBatches``), never from the device: no host sync, and the same seed gives the same batch. The
loader draws them (``SeededBatches``, in its workers when it has some) and they travel with the batch.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cnnlab.catalog.augmentations import elastic_field
from cnnlab.catalog.elastic import ElasticFields
from cnnlab.config import AugmentConfig
from cnnlab.data.augment_batches import GroupedTransform, resolved

GEOMETRY = ("crop_scale", "rotation", "translate", "zoom")
FLIPS = ("hflip", "vflip")
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect ratio range


def uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) * (high - low) + low


def jitter(generator: torch.Generator, n: int, amount: float) -> torch.Tensor:
    """ColorJitter's factor range for brightness, contrast and saturation: [max(0, 1 - a), 1 + a]."""
    return uniform(generator, n, max(0.0, 1.0 - amount), 1.0 + amount)


def crop_matrix(ops: dict, g: torch.Generator, n: int, size: tuple[int, int]) -> torch.Tensor:
    """RandomResizedCrop as an affine map of the output onto its crop (centred pixel coordinates): an area
    fraction and a log-uniform aspect ratio per image; where that crop would not fit, the ratio nearest to
    it that fits (v2 draws again, up to ten times, then takes the whole image)."""
    height, width = size
    area = uniform(g, n, *ops["crop_scale"]) * height * width
    ratio = torch.exp(uniform(g, n, math.log(RATIO[0]), math.log(RATIO[1])))
    ratio = torch.minimum(torch.maximum(ratio, area / height**2), width**2 / area)  # w <= width, h <= height
    w, h = (area * ratio).sqrt(), (area / ratio).sqrt()
    cx, cy = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * (width - w), \
        (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * (height - h)
    m = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    m[:, 0, 0], m[:, 1, 1], m[:, 0, 2], m[:, 1, 2] = w / width, h / height, cx, cy
    return m


def inverse_affine(ops: dict, g: torch.Generator, n: int, size: tuple[int, int]) -> torch.Tensor:
    """v2.RandomAffine's parameters per image (angle, shift in pixels, scale), as the inverse map that
    ``F.affine`` builds (``_get_inverse_affine_matrix``), in centred pixel coordinates."""
    height, width = size
    degrees, shift = ops.get("rotation", 0.0), ops.get("translate", 0.0)
    low, high = degrees if isinstance(degrees, tuple) else (-degrees, degrees)  # a range, as v2's degrees
    angle = torch.deg2rad(uniform(g, n, low, high))
    tx, ty = uniform(g, n, -shift * width, shift * width), uniform(g, n, -shift * height, shift * height)
    scale = uniform(g, n, *ops.get("zoom", (1.0, 1.0)))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    m = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    # F.affine turns clockwise for a positive angle (on screen, y pointing down)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, sin, -sin, cos
    m[:, 0, 2], m[:, 1, 2] = -(cos * tx + sin * ty), -(-sin * tx + cos * ty)
    return m


def flip_matrix(params: dict, n: int) -> torch.Tensor:
    """The flips drawn in ``params`` (taken out of it) as sign changes of the output's axes."""
    signs = torch.ones(n, 3, dtype=torch.float64)
    for k, axis in zip(FLIPS, (0, 1)):
        if k in params:
            signs[:, axis] = 1.0 - 2.0 * params.pop(k).double()
    return torch.diag_embed(signs)


def to_grid(matrix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centred pixel coordinates to ``affine_grid``'s normalised ones (align_corners=False: 2u/W)."""
    height, width = size
    d = torch.diag(torch.tensor([2.0 / width, 2.0 / height, 1.0], dtype=torch.float64))
    return (d @ matrix @ torch.linalg.inv(d))[:, :2].float()


class Parameters:
    """Draws every random parameter of a batch on the CPU from its seed alone; small and picklable, so a
    loader worker can draw them beside its batch, off the training process's critical path."""

    def __init__(self, ops: dict, channels: int, size: tuple[int, int]) -> None:
        self.ops, self.size = ops, size
        self.geometry = bool(set(GEOMETRY) & ops.keys())
        self.colours = [k for k in ("brightness", "contrast", "saturation") if k in ops
                        and (k != "saturation" or channels == 3)]  # saturation needs colour

    def __call__(self, n: int, seed: Optional[int]) -> dict:
        if seed is None:  # no batch seed (a plain call): one from the global CPU generator
            seed = int(torch.randint(1 << 62, (1,)))
        g, ops = torch.Generator().manual_seed(seed), self.ops
        params = {k: torch.rand(n, generator=g) < ops[k] for k in FLIPS if k in ops}
        if self.geometry:
            m = crop_matrix(ops, g, n, self.size) if "crop_scale" in ops else torch.eye(3, dtype=torch.float64)
            params["theta"] = to_grid(m @ flip_matrix(params, n) @ inverse_affine(ops, g, n, self.size), self.size)
        for k in self.colours:
            params[k] = jitter(g, n, ops[k]).float().view(n, 1, 1, 1)
        params["seed"] = int(torch.randint(1 << 62, (1,), generator=g))  # hue fallback and noise
        return params


class BatchedAugment:
    """A uint8 batch (N, C, H, W) in, the same dtype and shape out; one draw of parameters per image."""

    def __init__(self, ops: dict, channels: int, size: tuple[int, int], group: int) -> None:
        self.ops, self.channels, self.size = ops, channels, size
        self.parameters, self.flips_only = Parameters(ops, channels, size), ops.keys() <= set(FLIPS)
        field = elastic_field(ops, size)
        self.elastic = ElasticFields(*field, size) if field else None
        # hue has no batched form here: the grouped v2 ColorJitter does it (RGB only, as in the loader)
        self.fallback = GroupedTransform(v2.ColorJitter(hue=ops["hue"]), group) \
            if "hue" in ops and channels == 3 else None
        self.generators: dict[torch.device, torch.Generator] = {}
        self.centres: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor, seed: Optional[int] = None, params: Optional[dict] = None) -> torch.Tensor:
        """Augment ``x`` with ``params`` (from ``self.parameters``), or with those that ``seed`` draws."""
        params = self.parameters(len(x), seed) if params is None else params
        p = {k: v.to(x.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in params.items()}
        for k, dim in zip(FLIPS, (-1, -2)):  # flips without geometry stay exact and in uint8
            if k in p:
                x = torch.where(p[k].view(-1, 1, 1, 1), x.flip(dim), x)
        if self.flips_only:
            return x
        dtype, y = x.dtype, TF.to_dtype(x, torch.float32, scale=True)
        x = y.clone() if y is x else y  # what follows works in place, never on the caller's tensor
        if "theta" in p or self.elastic:
            theta = p["theta"] if "theta" in p else torch.eye(2, 3, device=x.device).expand(len(x), 2, 3)
            grid = self.grid(theta) if self.elastic is None else self.grid(theta) + self.displacement(x, p["seed"])
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = self.colour(x, p)
        return TF.to_dtype(self.noise(x, p["seed"]), dtype, scale=True)

    def grid(self, theta: torch.Tensor) -> torch.Tensor:
        """``F.affine_grid(theta, align_corners=False)`` as two multiply-adds of the pixel centres' x and y:
        affine_grid fills an (N, H, W, 3) grid and multiplies it, 2.4x the time on a CPU."""
        device, (height, width) = theta.device, self.size
        if device not in self.centres:
            self.centres[device] = tuple((torch.arange(n, dtype=torch.float32, device=device) * 2 + 1) / n - 1
                                         for n in (width, height))
        xs, ys = self.centres[device]
        t = theta.transpose(1, 2)[:, :, None, None, :]  # (N, 3, 1, 1, 2): the x, y and constant columns
        rows = torch.addcmul(t[:, 2], ys.view(1, -1, 1, 1), t[:, 1])  # (N, H, 1, 2)
        return torch.addcmul(rows, xs.view(1, 1, -1, 1), t[:, 0])

    def displacement(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """v2.ElasticTransform's field, one per image, in grid coordinates (N, H, W, 2)."""
        # seed + 1: not the noise's draw (the batch's seed)
        return self.elastic(len(x), x.device, self.generator(x.device).manual_seed(seed + 1))

    def generator(self, device: torch.device) -> torch.Generator:
        if device not in self.generators:
            self.generators[device] = torch.Generator(device=device)
        return self.generators[device]

    def colour(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """v2's adjust_brightness, adjust_contrast and adjust_saturation, a factor per image, in place."""
        if "brightness" in p:
            x.mul_(p["brightness"]).clamp_(0.0, 1.0)
        if "contrast" in p:
            # the grayscale image's mean: rgb_to_grayscale of the channels' means
            means = x.mean(dim=(-2, -1), keepdim=True)
            mean = TF.rgb_to_grayscale(means) if self.channels == 3 else means
            x.mul_(p["contrast"]).add_(mean * (1.0 - p["contrast"])).clamp_(0.0, 1.0)
        if "saturation" in p:
            gray = TF.rgb_to_grayscale(x).mul_(1.0 - p["saturation"])
            x.mul_(p["saturation"]).add_(gray).clamp_(0.0, 1.0)
        if self.fallback is not None:
            with torch.random.fork_rng(devices=[]):  # the grouped v2 ops draw from the CPU generator
                torch.default_generator.manual_seed(p["seed"])
                x = self.fallback(x)
        return x

    def noise(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """v2.GaussianNoise(sigma, clip=True), drawn by a generator of the batch's device."""
        if "noise" not in self.ops:
            return x
        g = self.generator(x.device).manual_seed(seed)
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return x.add_(noise, alpha=self.ops["noise"]).clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"BatchedAugment({self.ops}, fallback={self.fallback})"


def build_batched_augmentation(cfg: AugmentConfig, channels: int, size: tuple[int, int]) -> Optional[BatchedAugment]:
    ops = resolved(cfg)
    return BatchedAugment(ops, channels, size, cfg.group) if ops else None


class SeededBatches(Dataset):
    """A training set whose batches carry their augmentation's parameters, ``(x, y, params)``, drawn
    from the batch's seed where the batch is read (a loader worker, when there are workers); the copy
    to the device moves the parameters' tensors with the batch."""

    def __init__(self, dataset: Dataset, parameters: Parameters) -> None:
        self.dataset, self.targets, self.parameters = dataset, dataset.targets, parameters

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices):
        x, y = self.dataset.__getitems__(indices)
        return x, y, self.parameters(len(x), getattr(indices, "seed", None))

"""Augmentation by name: the presets and the operations, registries that the config validates against and
``cnnlab.data.augment_batches`` builds the training pipeline from (torchvision.transforms.v2).

An operation builds one v2 transform from the resolved operations it reads (None when none of them is
on); they apply in the order registered here: geometry first, then colour, then noise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from cnnlab.catalog.registry import Registry

if TYPE_CHECKING:  # the names are known without torchvision (the config and --help ask them)
    from torchvision.transforms import v2

PRESETS: Registry = Registry("augmentation preset")
OPERATIONS: Registry = Registry("augmentation operation")


@PRESETS.register("none", description="no augmentation")
def _none() -> dict:
    return {}


@PRESETS.register("light", description="small shifts, rotations and zoom, no flips (safe for digits and text); "
                                        "the default for models trained from scratch")
def _light() -> dict:
    return {"rotation": 10.0, "translate": 0.1, "zoom": (0.9, 1.1)}


@PRESETS.register("standard", description="shifts, rotations, zoom, flips, brightness and contrast")
def _standard() -> dict:
    return {"rotation": 10.0, "translate": 0.1, "zoom": (0.9, 1.1), "hflip": 0.5, "brightness": 0.2, "contrast": 0.2}


@PRESETS.register("strong", description="standard, stronger, with colour jitter and noise")
def _strong() -> dict:
    return {"rotation": 20.0, "translate": 0.15, "zoom": (0.8, 1.2), "hflip": 0.5, "brightness": 0.3,
            "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "noise": 0.03}


@OPERATIONS.register("crop_scale")
def _crop(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from torchvision.transforms import v2

    return v2.RandomResizedCrop(size, scale=tuple(ops["crop_scale"]), antialias=True) if "crop_scale" in ops else None


@OPERATIONS.register("hflip")
def _hflip(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from torchvision.transforms import v2

    return v2.RandomHorizontalFlip(ops["hflip"]) if "hflip" in ops else None


@OPERATIONS.register("vflip")
def _vflip(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from torchvision.transforms import v2

    return v2.RandomVerticalFlip(ops["vflip"]) if "vflip" in ops else None


@OPERATIONS.register("rotation", "translate", "zoom")
def _affine(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from torchvision.transforms import v2

    if not {"rotation", "translate", "zoom"} & ops.keys():
        return None
    t = ops.get("translate")
    # fill=None: grid_sample's zero padding fills the corners. The default fill=0 appends a mask channel
    # and blends it back, a third more work for the same zeros (nearest interpolation).
    return v2.RandomAffine(degrees=ops.get("rotation", 0.0), translate=(t, t) if t else None,
                           scale=tuple(ops["zoom"]) if "zoom" in ops else None, fill=None)


def elastic_field(ops: dict, size: tuple[int, int]) -> Optional[tuple[float, float]]:
    """``elastic`` [alpha, sigma], fractions of the shorter side, as v2.ElasticTransform's alpha and sigma;
    None when off, or on images under 3 pixels (no room for the blur's reflect padding)."""
    side = min(size)
    if "elastic" not in ops or side < 3:
        return None
    alpha, sigma = ops["elastic"]
    # v2 scales its smoothed field by alpha / width into grid_sample's [-1, 1] coordinates, where a pixel
    # is 2 / width: a field of alpha x side pixels is v2's alpha 2 x alpha x side.
    return 2.0 * alpha * side, sigma * side


@OPERATIONS.register("elastic")
def _elastic(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from cnnlab.catalog.elastic import ElasticPerImage

    field = elastic_field(ops, size)
    # a field per image, not per group: the draw is cheap beside the grid_sample every image needs anyway
    return ElasticPerImage(*field, size) if field else None


@OPERATIONS.register("brightness", "contrast", "saturation", "hue")
def _colour(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from torchvision.transforms import v2

    keys = ("brightness", "contrast", "saturation", "hue") if channels == 3 else ("brightness", "contrast")
    colour = {k: ops[k] for k in keys if k in ops}  # saturation and hue need colour
    return v2.ColorJitter(**colour) if colour else None


@OPERATIONS.register("noise")
def _noise(ops: dict, channels: int, size: tuple[int, int]) -> Optional[v2.Transform]:
    from torchvision.transforms import v2

    return v2.GaussianNoise(sigma=ops["noise"], clip=True) if "noise" in ops else None

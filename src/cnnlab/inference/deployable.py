"""What ``cnnlab export --format onnx`` writes: the model with every step of ``cnnlab predict`` inside it, so that a
client in any runtime feeds the pixels it has and gets cnnlab's answer.

In: uint8 images (N, H, W, C), any height and width (one batch shares one size), C the model's channels. Inside:
the resize to the model's input as ``cnnlab.data.images.decode`` does it (torchvision's: on the 8-bit pixels,
antialiased; ONNX Resize-18 with ``antialias=1``, so opset 18), the normalisation, the network. Out: ``output``
(logits, or regression values) and, for classification, ``probabilities``: softmax(logits / T) with the run's
calibration temperature, what ``cnnlab predict`` reports.

An image already at the input size skips the resize (an ONNX ``If``), as ``decode`` does.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.image_model import ImageModel

OPSET = 18  # the first with Resize's antialias attribute
INPUT, OUTPUT, PROBABILITIES = "image", "output", "probabilities"


class Deployable(nn.Module):
    """uint8 NHWC images of any size -> ``(logits, probabilities)`` (classification) or ``values``."""

    def __init__(self, model: ImageModel, temperature: float | None) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature
        self.size, self.mode = tuple(model.pre.size), model.pre.interpolation

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """What torchvision's resize does to cnnlab's uint8 images (``cnnlab.data.images.decode``): on 8-bit
        pixels, antialiased for bilinear and bicubic. ONNX Runtime's 8-bit antialiased Resize is Pillow's fixed-point
        kernel, PyTorch's the same with 15 bits of weight where Pillow has 22: they differ by one level in 0-4% of
        the pixels (noise images), where a float resize rounded to 8 bits differed in 10-20%."""
        antialias = self.mode != "nearest"  # torchvision's rule: nearest is never antialiased
        return F.interpolate(x, size=self.size, mode=self.mode, antialias=antialias,
                             align_corners=False if antialias else None)

    def forward(self, image: torch.Tensor):
        x = image.permute(0, 3, 1, 2)
        h, w = self.size
        x = torch.cond((x.shape[2] == h) & (x.shape[3] == w), torch.clone, self.resize, (x,))
        out = self.model(x.reshape(x.shape[0], x.shape[1], h, w))  # cond's output size is unknown to the exporter
        if self.temperature is None:
            return out
        return out, (out / self.temperature).softmax(dim=1)


def onnx_bytes(model: ImageModel, temperature: float | None, example: torch.Tensor) -> bytes:
    """The serialised ONNX model of ``Deployable(model, temperature)``; ``example``: uint8 (N>1, H, W, C) with
    H, W other than the input size, so that the exporter keeps batch, height and width free."""
    from torch.export import Dim

    outputs = [OUTPUT] if temperature is None else [OUTPUT, PROBABILITIES]
    dims = {INPUT: {0: Dim("batch"), 1: Dim("height", min=1), 2: Dim("width", min=1)}}
    program = torch.onnx.export(Deployable(model, temperature).eval(), (example,), input_names=[INPUT],
                                output_names=outputs, dynamic_shapes=dims, opset_version=OPSET, dynamo=True,
                                verbose=False, external_data=False)
    return program.model_proto.SerializeToString()


def from_input_size(model) -> Optional[bytes]:
    """The exported graph (an ``onnx.ModelProto``) from its (N, C, H, W) uint8 tensor at the input size on, for
    callers that feed batches cnnlab's decoder has already resized (``OnnxPredictor``, so the server): the same
    nodes as an export of contract 1. The front's transpose, size test and ``If`` cost cnn-small's one-image pass
    15-20% in ONNX Runtime. None when the graph has no such tensor (not a ``Deployable``) or keeps its weights
    in another file."""
    import onnx
    from onnx.utils import Extractor

    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return None
    branch = [n for n in model.graph.node if n.op_type == "If"]
    cut = [n for n in model.graph.node if n.op_type == "Reshape" and branch and branch[0].output[0] in n.input]
    if len(branch) != 1 or len(cut) != 1:
        return None
    return Extractor(model).extract_model([cut[0].output[0]], [OUTPUT]).SerializeToString()

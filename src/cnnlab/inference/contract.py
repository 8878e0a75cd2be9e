"""``export.json``: what an exported file takes and gives, in words a client in any runtime can follow, and the
reference client (``client.py``) that follows them.

One file says it all, so that nothing beside the model invites a second normalisation: the run's mean and std
are not copied into the export folder (a client that applied them, as an older export's preprocessing.json
invited, got 8% accuracy with no error), and the resize is named with its antialias (a client that resized with
OpenCV's INTER_LINEAR differed from ``cnnlab predict`` by up to 0.038 in probability).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from cnnlab import files
from cnnlab.inference.deployable import INPUT, OUTPUT, PROBABILITIES
from cnnlab.rundir import EXPORT_CLIENT, Run
from cnnlab.catalog.names import ExportFormat, Task

CONTRACT = 2  # 1 (no "contract" key): fixed-size NCHW input, mean and std in preprocessing.json beside the model
LAYOUT = {ExportFormat.ONNX: "NHWC", ExportFormat.TORCHSCRIPT: "NCHW"}


def _steps(run: Run, inside: bool) -> list[str]:
    c, (h, w) = run.pre.channels, run.pre.size
    steps = ["decode the image file to 8-bit pixels", "turn it upright by its EXIF orientation",
             "composite any transparency onto white",
             "convert to RGB, 3 channels" if c == 3 else "convert to grayscale, 1 channel (Pillow's convert('L'))"]
    if not inside:
        steps.append(f"resize to {h}x{w} (H x W) as 'resize' says: antialiased (Pillow's Image.resize stays within "
                     f"2 levels of it; OpenCV's INTER_LINEAR does not antialias)")
    steps.append(f"keep the 0-255 values as they are: uint8 {f'(1, H, W, {c})' if inside else f'(1, {c}, {h}, {w})'}")
    if run.task == Task.REGRESSION:
        return [*steps, f"run the model: '{OUTPUT}' is cnnlab predict's value"]
    answer = f"'{PROBABILITIES}'" if inside else f"softmax({OUTPUT} / temperature)"
    return [*steps, f"run the model: {answer} is cnnlab predict's answer"]


def _resize(run: Run, inside: bool) -> dict:
    h, w = run.pre.size
    mode = run.pre.interpolation
    antialias = mode != "nearest"  # torchvision antialiases bilinear and bicubic only
    resize = {"where": "inside the model" if inside else "before the model, by the client", "to": [h, w],
              "interpolation": mode, "antialias": antialias, "align_corners": False if antialias else None,
              "on": "the uint8 pixels", "skipped_when": f"the image is already {h}x{w}",
              "same_as": f"torchvision.transforms.v2.functional.resize(image, [{h}, {w}], interpolation="
                         f"{mode.upper()}, antialias={antialias}) on a uint8 (C, H, W) tensor, as cnnlab predict does"}
    if inside:
        resize["agreement"] = ("ONNX Resize-18 with antialias=1 on uint8: ONNX Runtime's 8-bit kernel (Pillow's) and "
                               "PyTorch's differ by one level in a few pixels in a hundred")
    return resize


def describe(run: Run, fmt: str, file: Path, checks: dict, weights_sha256: str) -> dict:
    """export.json's content for ``file``; ``checks``: the parity figures measured at export time."""
    inside = fmt == ExportFormat.ONNX
    c, (h, w) = run.pre.channels, run.pre.size
    classification = run.task == Task.CLASSIFICATION
    outputs = {OUTPUT: f"logits (batch, {run.num_outputs})" if classification else "regression values (batch, 1)"}
    if classification and inside:
        outputs[PROBABILITIES] = f"softmax({OUTPUT} / temperature): the probabilities cnnlab predict reports"
    return {
        "contract": CONTRACT, "format": fmt, "file": file.name, "task": run.task,
        "input": {"name": INPUT, "dtype": "uint8", "layout": LAYOUT[fmt],
                  "shape": ["batch", "height", "width", c] if inside else ["batch", c, h, w],
                  "channels": "RGB" if c == 3 else "grayscale",
                  "size": f"any height and width: the model resizes to {h}x{w} itself (one batch shares one size)"
                          if inside else f"exactly {h}x{w} (H x W): resize first, as 'resize' says",
                  "values": "the decoded 8-bit pixels, 0-255, as they are"},
        "normalisation": "inside the model: do not apply it. No mean, no std, no division by 255: a client that "
                         "normalises as well gets wrong answers and no error",
        "resize": _resize(run, inside),
        "steps": _steps(run, inside),
        "outputs": outputs,
        "temperature": run.temperature() if classification else None,  # calibration.json's (1.0 when none)
        "classes": "classes.json, in index order",
        "client": "client.py: these steps in numpy, Pillow and onnxruntime" if inside else None,
        **checks, "model": run.config.model.name, "weights_sha256": weights_sha256,
    }


def write_client(folder: Path) -> Path:
    """The reference client, beside the ONNX model it runs."""
    text = resources.files("cnnlab.inference").joinpath("static/client.py").read_text()
    return files.write_text(folder / EXPORT_CLIENT, text)


def layout(info: dict) -> str:
    """An export's input layout, from its export.json (an export of contract 1 took NCHW)."""
    return info.get("input", {}).get("layout", "NCHW")

"""Predict with the model.onnx beside this file, using numpy, Pillow and onnxruntime only (cnnlab export wrote it).

    python client.py IMAGE [IMAGE ...]      # one JSON line per image: cnnlab predict's top classes

The model takes the image's own 8-bit pixels, any height and width, as (1, H, W, C) uint8: it resizes
(antialiased, as cnnlab does) and normalises inside. Apply neither: export.json says the same.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent


def pixels(path, channels):
    """The image upright (EXIF), transparency on white, in the model's channels: (1, H, W, C) uint8."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img.convert("RGBA"))
        array = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return array.reshape(1, array.shape[0], array.shape[1], channels)


def main(paths):
    info = json.loads((HERE / "export.json").read_text())
    classes = json.loads((HERE / "classes.json").read_text())
    session = ort.InferenceSession(str(HERE / info["file"]), providers=["CPUExecutionProvider"])
    channels = info["input"]["shape"][3]
    for path in paths:
        if info["task"] == "regression":
            (values,) = session.run(["output"], {"image": pixels(path, channels)})
            print(json.dumps({"path": path, "value": float(values[0][0])}))
            continue
        (probabilities,) = session.run(["probabilities"], {"image": pixels(path, channels)})
        top = np.argsort(-probabilities[0])[:5]
        print(json.dumps({"path": path, "top_k": [{"label": classes[i], "probability": float(probabilities[0][i])}
                                                  for i in top]}))


if __name__ == "__main__":
    main(sys.argv[1:])

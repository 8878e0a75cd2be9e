"""Figures you can trust (#22 §1): what calibration does to the probabilities a small model gives on TEST
images, the temperature cnnlab keeps now against the plain validation fit it used to keep.

Two datasets: scikit-learn's digits 0-3 written as 32x32 PNGs (720 images, one plain folder, --test-split
0.2 as in the issue: 72 validation and 144 test images; seeds 0-3, and 12 epochs once: the issue's case,
every validation image right) and mnist-5k (its own 1,000 test digits; 400 validation images taken from
train/); 4 epochs unless said. For each: the temperature, the test ECE (15 bins)
before and after it, the mean probability of the wrong answers, and how many wrong answers are >= 0.999
sure. "old" is the fit cnnlab made before #22 (LBFGS on the validation NLL, unbounded), computed here on
the same run's validation logits; "new" is calibration.json's decision (cross-validated, bounded,
skipped without evidence).

At the end, the mnist-5k run's ONNX export against ``cnnlab predict`` through plain onnxruntime at three
image sizes other than its input's.

Run: .venv/bin/python benchmarks/trust.py (about 5 minutes on 2 cores)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import cnnlab
from cnnlab import rundir
from cnnlab.calibration import ece
from common import SCRATCH, mnist_5k

EPOCHS = 4
SEEDS = (0, 1, 2, 3)  # digits 0-3: the seed moves the split and the model; mnist-5k: seed 0


def digits_0_3() -> Path:
    """scikit-learn's digits 0-3 (720 images) as 32x32 grayscale PNGs in class folders, no split given."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = SCRATCH / "digits-0-3"
    if root.exists():
        return root
    d = load_digits()
    for i, (image, label) in enumerate(zip(d.images, d.target)):
        if label > 3:
            continue
        pixels = np.kron(image / 16.0 * 255, np.ones((4, 4))).astype(np.uint8)  # 8x8 -> 32x32
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(root / str(label) / f"{i:04d}.png")
    return root


def old_fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature as cnnlab fitted it before #22: LBFGS on the NLL over log T, unbounded."""
    logits, labels = logits.double(), labels.long()
    log_t = torch.zeros((), dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def logits_of(run, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's raw outputs (before any temperature) on the images split.csv gives ``split``."""
    predictor = cnnlab.load(run, "cpu")
    rows = [r for r in predictor.run.split() if r["split"] == split]
    index = {c: i for i, c in enumerate(predictor.classes)}
    images = torch.stack([predictor.preprocess(r["path"]) for r in rows])
    return predictor.raw(images), torch.tensor([index[r["label"]] for r in rows])


def on_test(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    probs = (logits.double() / temperature).softmax(1)
    conf, pred = probs.max(1)
    wrong = pred != labels
    return {"ece": ece(probs, labels), "wrong": int(wrong.sum()),
            "p_wrong": float(conf[wrong].mean()) if wrong.any() else float("nan"),
            "sure_wrong": int((conf[wrong] >= 0.999).sum())}


def line(name: str, what: str, t: float, plain: dict, scaled: dict) -> str:
    return (f"trust  {name:<22} {what:<4} T = {t:5.3f}: test ECE {plain['ece']:.4f} -> {scaled['ece']:.4f}; wrong "
            f"answers' mean probability {plain['p_wrong']:.4f} -> {scaled['p_wrong']:.4f}; >= 0.999 sure "
            f"{plain['sure_wrong']} -> {scaled['sure_wrong']} of {plain['wrong']}")


def measure(name: str, data, seed: int = 0, **overrides) -> dict:
    result = cnnlab.train(data, SCRATCH / "trust-run", overwrite=True, seed=seed, progress=False,
                          **{"epochs": EPOCHS, **overrides})
    run = result.run_dir
    record = json.loads((run / rundir.CALIBRATION).read_text())
    val, val_y = logits_of(run, "val")
    test, test_y = logits_of(run, "test")
    old_t = old_fit_temperature(val, val_y)
    plain, old, new = (on_test(test, test_y, t) for t in (1.0, old_t, record["temperature"]))
    name = f"{name}, seed {seed}"
    print(f"trust  {name:<22} {len(val_y)} validation images ({record['errors']} wrong), {len(test_y)} test images "
          f"({plain['wrong']} wrong); new: {'kept' if record['kept'] else 'none'}, {record['reason']}")
    print(line(name, "old", old_t, plain, old))
    print(line(name, "new", record["temperature"], plain, new), flush=True)
    return {"record": record, "old_temperature": old_t, "plain": plain, "old": old, "new": new}


def main() -> dict:
    figures = {f"digits-0-3/{seed}": measure("digits-0-3", digits_0_3(), seed, test_split=0.2) for seed in SEEDS}
    # 12 epochs: every validation image right (the case), so the plain fit sharpens without limit
    figures["digits-0-3/12"] = measure("digits 12 ep", digits_0_3(), 0, test_split=0.2, epochs=12)
    figures["mnist-5k/0"] = measure("mnist-5k", mnist_5k())
    figures["export"] = export_agreement(SCRATCH / "trust-run")  # the mnist-5k run just trained
    return figures


def export_agreement(run: Path, n: int = 20) -> dict:
    """The ONNX export read by plain onnxruntime, as export.json tells a client (uint8 NHWC pixels, nothing
    else), against ``cnnlab predict``: the largest probability difference on test images enlarged, shrunk and
    stretched to three sizes other than the input's."""
    import onnxruntime as ort
    from PIL import Image

    from cnnlab.inference.export import export
    from cnnlab.inference.predictor import load

    export(run)
    info = json.loads((run / rundir.EXPORT / rundir.EXPORT_INFO).read_text())
    mode = "RGB" if info["input"]["shape"][-1] == 3 else "L"
    session = ort.InferenceSession(str(run / rundir.EXPORT / rundir.ONNX), providers=["CPUExecutionProvider"])
    predictor = load(run, "cpu")
    tests = [row["path"] for row in rundir.read_csv(run / rundir.SPLIT) if row["split"] == "test"][:n]
    folder = SCRATCH / "trust-export"
    folder.mkdir(parents=True, exist_ok=True)
    worst = {}
    for size in ((20, 20), (57, 57), (23, 41)):  # (H, W): smaller, larger, non-square
        paths = []
        for i, path in enumerate(tests):
            target = folder / f"{i}-{size[0]}x{size[1]}.png"
            Image.open(path).resize(size[::-1], Image.BICUBIC).save(target)
            paths.append(str(target))
        ours = predictor.outputs([predictor.preprocess(p) for p in paths]).numpy()  # calibrated probabilities
        theirs = np.concatenate([session.run(["probabilities"], {"image": np.array(Image.open(p).convert(mode)).reshape(
            1, size[0], size[1], -1)})[0] for p in paths])
        worst[f"{size[0]}x{size[1]}"] = float(np.abs(np.asarray(ours) - theirs).max())
    print("trust  export: plain onnxruntime on uint8 NHWC pixels against cnnlab predict, largest probability "
          "difference over " + ", ".join(f"{k}: {v:.2e}" for k, v in worst.items()) + " (target < 1e-3)")
    return worst


if __name__ == "__main__":
    main()

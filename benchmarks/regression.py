"""Regression (#13): scikit-learn's digits with the target digit x 1.5 + 0.25 (a value, not a class),
trained with standardised targets (the default) and without (the old behaviour), for 10 epochs and for
the default epoch count; R² and MAE on the held-out 20%. Target: R² >= 0.95 with the defaults.

Run: .venv/bin/python benchmarks/regression.py
"""
from __future__ import annotations

import cnnlab
from cnnlab.data.samples import export
from common import SCRATCH


def manifests():
    root = SCRATCH / "digits"
    export("digits", root)
    for split in ("train", "test"):
        rows = ["path,value"] + [f"{p},{int(p.parent.name) * 1.5 + 0.25}" for p in sorted((root / split).rglob("*.png"))]
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv", root / "test.csv"


def main() -> dict:
    train, test = manifests()
    out = {}
    for name, flags in {"standardised, defaults": {}, "standardised, 10 epochs": {"epochs": 10},
                        "raw targets, 10 epochs": {"epochs": 10, "standardize": False}}.items():
        run = cnnlab.train(train, SCRATCH / f"reg-{len(out)}", overwrite=True, task="regression", progress=False, **flags)
        m = cnnlab.evaluate(run.run_dir, test, plot=False)
        out[name] = m
        print(f"regression  digits-as-values, {name} ({run.epochs} epochs): R² {m['r2']:.4f} (target >= 0.95), "
              f"MAE {m['mae']:.3f}", flush=True)
    return out


if __name__ == "__main__":
    main()

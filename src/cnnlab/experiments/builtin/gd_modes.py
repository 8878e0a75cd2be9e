"""Full batch, mini-batch or one example at a time: which gradient descent? (the course's question 2)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

D2L = Source("Zhang et al., Dive into Deep Learning", "§12.5 Minibatch Stochastic Gradient Descent",
             "full-batch GD is not data efficient, single-example SGD is not computationally efficient (no "
             "vectorisation); minibatch SGD trades off convergence speed and computation efficiency")
NOISE = Source("The finite-population correction of a sample mean (sampling without replacement)", "",
               "Var(g_1)/Var(g_B) = B(N-1)/(N-B)")
KESKAR = Source("Keskar et al. 2017; Masters & Luschi 2018", "abstracts",
                "large-batch methods tend to converge to sharp minimizers that generalise worse; the best results "
                "came from mini-batch sizes between 2 and 32")
SETTINGS = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "schedule": "none", "augment": "none",
            "blocks": [{"filters": 8}, {"filters": 16}], "dense": [32], "dropout": 0.0}


@EXPERIMENTS.register("gd-modes", description="Full batch, mini-batch or one example at a time?")
def gd_modes() -> Experiment:
    return Experiment(
        name="gd-modes", question="Full batch, mini-batch or one example at a time: which gradient descent?",
        arms=(Arm("full-batch", {"mode": "batch", "batch_size": 256}, label="full batch (--mode batch)"),
              Arm("mini-batch", {"mode": "minibatch", "batch_size": 64}, label="mini-batch 64 (--mode minibatch)"),
              Arm("stochastic", {"mode": "stochastic"}, label="one example (--mode stochastic)"),
              Arm("noise", probe="cnnlab.experiments.probes.gd_modes:noise", label="gradient noise, B = 64")),
        checks=(
            Check("After one epoch the mini-batch loss is below the full-batch loss (the same data, more steps).",
                  D2L, "val_loss@1", "mini-batch", "<", other="full-batch", by=0.15),
            Check("The gradient-noise ratio Var(g_1)/Var(g_B) matches B(N-1)/(N-B) within a factor of 2.", NOISE,
                  "abs_log2_ratio_error", "noise", "<", value=1.0),
            Check("Throughput at batch 1 is a small fraction of throughput in chunks of 256 (under a fifth).", D2L,
                  "images_per_second", "full-batch", ">", other="stochastic", by=5.0, scale="log"),
        ),
        # Quick: one epoch (the checks read epoch 1 and throughput; batch 1 costs ~7 ms a step) and 200 draws
        # of the batch noise (its ratio's error stays below 0.1 in log2 against the factor 2 the check allows).
        quick=Budget(2, "digits", {**SETTINGS, "epochs": 1}, {"draws": 200}),
        full=Budget(5, "mnist-5k", {**SETTINGS, "epochs": 5}, {"draws": 2000}),
        scale_note="cnnlab's own --mode on a small CNN, plain SGD at one learning rate (0.1) for every mode: "
                   "the trade-off of the seed question in two plots, loss against optimiser steps and against "
                   "seconds. The generalisation gap between small and large batches (" + KESKAR.cite() + ": "
                   + KESKAR.number + ") is reported as each arm's test accuracy, not asserted: a gap of a fraction of a "
                   "point cannot be told from the seed-to-seed spread here. Throughput depends on this machine.",
        reported=("test_accuracy", "train_loss", "val_loss@1", "val_loss", "seconds", "steps", "variance_ratio", "predicted_ratio"),
        plots=(Plot("train_loss", "step", "training loss against optimiser steps"),
               Plot("train_loss", "second", "training loss against seconds")),
        timings=("seconds", "images_per_second"),
        evaluate=True,
    )

"""What does pooling buy? (the course's question 6)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBES = "cnnlab.experiments.probes.pooling"
EXACT = Source("Definitions of max and average pooling (PyTorch's nn.MaxPool2d, nn.AvgPool2d)", "",
               "a pooling layer is a fixed function of its window: no weights; the max of a window does not "
               "depend on the order of its values")
SPRINGENBERG = Source("Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net", "abstract",
                      "max pooling can be replaced by a convolutional layer with increased stride (All-CNN) without "
                      "loss in accuracy on several image recognition benchmarks, CIFAR-10 among them")
MNIST1D = Source("Greydanus 2020, Scaling Down Deep Learning (MNIST-1D)",
                 "the mnist1d package's README, table \"Comparing MNIST and MNIST-1D\"",
                 "test accuracy: CNN 94%, MLP 68%; with the positions shuffled: CNN 56%, MLP 68%")
FLOOR, BAND, LABELS = 0.9, 0.05, {"max": "max pooling", "avg": "average pooling", "strided":
                                  "strided 3x3 convolution (All-CNN)", "none": "no pooling"}


def _band(variant: str) -> tuple[Check, ...]:
    """``variant`` lies within BAND of max pooling's test accuracy, on either side (a negative margin)."""
    return (Check(f"{LABELS[variant]} is at most {BAND:g} below max pooling.", SPRINGENBERG, "test_accuracy",
                  variant, ">", other="max", by=-BAND),
            Check(f"{LABELS[variant]} is at most {BAND:g} above max pooling.", SPRINGENBERG, "test_accuracy",
                  variant, "<", other="max", by=-BAND))


@EXPERIMENTS.register("pooling", description="What does pooling buy, and what does the convolutional prior need?")
def pooling() -> Experiment:
    shrink = tuple(Arm(v, probe=f"{PROBES}:shrink", params={"variant": v}, label=label) for v, label in LABELS.items())
    floors = tuple(Check(f"With {LABELS[v]} the CNN reaches {FLOOR:.0%} test accuracy.", SPRINGENBERG,
                         "test_accuracy", v, ">", value=FLOOR) for v in LABELS)
    return Experiment(
        name="pooling", question="What does pooling buy, and what does the convolutional prior need?",
        arms=(Arm("facts", probe=f"{PROBES}:facts", label="pooling layers, exactly"),) + shrink + (
            Arm("prior", probe=f"{PROBES}:prior", params={"shuffle": False}, label="MNIST-1D, positions in place"),
            Arm("prior-shuffled", probe=f"{PROBES}:prior", params={"shuffle": True},
                label="MNIST-1D, one fixed permutation of the positions")),
        checks=(
            Check("On MNIST-1D with its positions in place the CNN beats an MLP of similar size by over 0.1.",
                  MNIST1D, "cnn_advantage", "prior", ">", value=0.1),
            Check("With the positions shuffled (one fixed permutation) the CNN's advantage vanishes: below 0.05.",
                  MNIST1D, "cnn_advantage", "prior-shuffled", "<", value=0.05),
            Check("Shuffling takes at least 0.15 off the CNN's advantage.", MNIST1D, "cnn_advantage", "prior", ">",
                  other="prior-shuffled", by=0.15),
            Check("No pooling layer cnnlab builds has a parameter.", EXACT, "pool_parameters", "facts", "<",
                  value=0.5, exact=True),
            Check("Max pooling's output is unchanged when the values inside each window are permuted.", EXACT,
                  "max_within_change", "facts", "<", value=1e-12, exact=True),
            Check("...and changed when values move between windows (the control).", EXACT, "max_across_change",
                  "facts", ">", value=0.0, exact=True),
        ) + floors + _band("avg") + _band("strided") + _band("none"),
        quick=Budget(3, "digits", params={"steps": 150, "prior_steps": 500}),
        full=Budget(5, "mnist-5k", params={"steps": 1500, "prior_steps": 6000}),
        scale_note="The four ways to shrink the maps train the same cnnlab CNN (two blocks of 16 and 32 filters "
                   "with batch norm, dense 64, no dropout) with Adam for the same steps (quick: 150 on the 8x8 "
                   "digits; full: 1500 on mnist-5k): a floor and a band are claimed, the ordering is only "
                   "reported. At this size the differences are a point or two, within the seed spread, so "
                   "Springenberg et al.'s finding on CIFAR-10 (a strided convolution replaces max pooling without "
                   "loss) is tested as a band, not as an ordering; no pooling costs ten times the parameters at "
                   "the dense layer. "
                   "The prior uses MNIST-1D (generated offline by the mnist1d package, 4,000 training and 1,000 "
                   "test sequences): a 3-layer 1D CNN (32 filters, ~8k parameters) against a 2x64 MLP (~7.4k), "
                   "Adam at 0.01, batch 100, for 500 steps (quick) or 6,000 (full, the package's notebook).",
        reported=("train_accuracy", "parameters", "cnn_accuracy", "mlp_accuracy", "parameter_ratio",
                  "avg_within_change", "strided_parameters"),
        plots=(Plot("train_loss", "step", "training loss of each way to shrink the maps"),
               Plot("cnn_train_loss", "step", "MNIST-1D: the CNN's training loss, positions in place and shuffled")),
    )

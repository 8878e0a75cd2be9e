"""Why ReLU rather than sigmoid in a deep network? (the course's question 1)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBE = "cnnlab.experiments.probes.activations:deep_net"
# Pointers below were checked against the papers' text (abstracts, captions, section titles); where only the
# finding could be confirmed, not its table or figure number, the claim is given without a number.
GLOROT = Source("Glorot & Bengio 2010", "abstract; section \"Experiments with the Sigmoid\"",
                "the logistic sigmoid is unsuited to deep networks with random initialization: it drives the top "
                "hidden layer into saturation; of the activations compared it has the highest test error")
KRIZHEVSKY = Source("Krizhevsky et al. 2012", "section \"ReLU Nonlinearity\", Figure 1",
                    "a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than an "
                    "equivalent network with tanh neurons")
SOFTMAX = Source("Goodfellow et al. 2016, Deep Learning", "§4.1 (softmax, log-sum-exp), §6.2.2.3",
                 "exact identities: no tolerance beyond rounding")


def _arm(act: str, init: str, label: str) -> Arm:
    return Arm(f"{act}-{init}" if init != "default" else act, probe=PROBE, params={"act": act, "init": init},
               label=label)


@EXPERIMENTS.register("activations", description="Why ReLU rather than sigmoid in a deep network?")
def activations() -> Experiment:
    facts = "cnnlab.experiments.probes.activations:softmax_facts"
    return Experiment(
        name="activations",
        question="Why ReLU rather than sigmoid in a deep network?",
        arms=(_arm("sigmoid", "default", "sigmoid (PyTorch default init)"), _arm("sigmoid", "xavier", "sigmoid (Xavier)"),
              _arm("tanh", "xavier", "tanh (Xavier)"), _arm("relu", "he", "ReLU (He)"),
              _arm("leaky_relu", "he", "leaky ReLU (He)"), _arm("gelu", "he", "GELU (He)"),
              Arm("softmax", probe=facts, label="softmax facts (float64)")),
        checks=(
            Check("In a 10-layer sigmoid network the back-propagated signal dL/dz at the first hidden layer is a tiny "
                  "fraction of the last one's at initialisation; with ReLU and He init it stays near 1.",
                  GLOROT, "dz_ratio", "sigmoid", "<", other="relu-he", by=1e3, scale="log"),
            Check("With Xavier init the sigmoid network's signal still vanishes toward the input.", GLOROT, "dz_ratio",
                  "sigmoid-xavier", "<", other="relu-he", by=1e2, scale="log"),
            Check("After the same SGD steps the ReLU network is far above chance where the sigmoid one is not.",
                  KRIZHEVSKY, "test_accuracy", "relu-he", ">", other="sigmoid", by=0.3),
            Check("The sigmoid network stays near chance (10 classes: 0.1).", GLOROT, "test_accuracy", "sigmoid", "<",
                  value=0.2),
            Check("Softmax is shift invariant: softmax(z + c) = softmax(z).", SOFTMAX, "shift_error", "softmax", "<",
                  value=1e-12, exact=True),
            Check("Log-sum-exp stays finite where a naive exp overflows (z = 1000).", SOFTMAX, "logsumexp_finite",
                  "softmax", ">", other=None, value=0.5, exact=True),
            Check("The naive softmax overflows at z = 1000 (why log-sum-exp is needed).", SOFTMAX, "naive_overflows",
                  "softmax", ">", value=0.5, exact=True),
            Check("The gradient of cross-entropy with respect to the logits is p - y.", SOFTMAX, "gradient_error",
                  "softmax", "<", value=1e-12, exact=True),
        ),
        quick=Budget(3, "digits", params={"steps": 300, "lr": 0.1}),
        full=Budget(5, "mnist-5k", params={"steps": 600, "lr": 0.1}),
        scale_note="Dense 10-layer networks of width 128 on small digit sets, plain SGD, biases zero at "
                   "initialisation. The signal ratios are measured at initialisation, where the claims are made. "
                   "Leaky ReLU's dead-unit fraction is reported, not asserted: at this scale it shows no accuracy gap "
                   "to ReLU. Krizhevsky's 6x is a CIFAR-10 figure for a convolutional network; here steps to 90% "
                   "training accuracy are reported for each activation, not compared with it.",
        reported=("dw_ratio", "train_accuracy", "steps_to_target", "dead_fraction"),
        plots=(Plot("dz_at_init", "layer", "|dL/dz| per hidden layer at initialisation (input side first)", True),
               Plot("train_accuracy", "step", "training accuracy under the same SGD steps")),
    )

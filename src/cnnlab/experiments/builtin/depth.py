"""Why do residual connections let networks go deeper? (the course's question 12)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBE = "cnnlab.experiments.probes.depth:plain_or_residual"
HE = Source("He et al. 2016, Deep Residual Learning for Image Recognition", "Figure 1, Figure 6, Table 6 (CIFAR-10)",
            "the 56-layer plain net has a higher training error than the 20-layer one throughout training, and the "
            "residual nets reverse it; ResNet-56: 6.97% test error")
HEALTHY = Source("He et al. 2016", "§4.1, Plain Networks", "the plain nets are trained with BN, and \"the backward "
                 "propagated gradients exhibit healthy norms\": the degradation is unlikely to be caused by vanishing "
                 "gradients")
VANISHING = Source("He et al. 2016", "§1", "vanishing/exploding gradients hamper convergence from the beginning; "
                   "largely addressed by normalized initialization and intermediate normalization layers")


def _arm(depth: int, residual: bool, batch_norm: bool = True) -> Arm:
    kind = "residual" if residual else "plain"
    name, label = f"{kind}-{depth}", f"{kind} {depth} layers"
    if not batch_norm:
        name, label = name + "-no-bn", label + ", no BN (gradient at initialisation only)"
    params = {"depth": depth, "residual": residual, "batch_norm": batch_norm, "train": batch_norm}
    return Arm(name, probe=PROBE, params=params, label=label)


@EXPERIMENTS.register("depth", description="Why do residual connections let networks go deeper?")
def depth() -> Experiment:
    return Experiment(
        name="depth", question="Why do residual connections let networks go deeper?",
        arms=(_arm(20, False), _arm(56, False), _arm(20, True), _arm(56, True), _arm(56, False, batch_norm=False)),
        checks=(
            Check("Degradation: after the same SGD steps the 56-layer plain network's training loss is at least 1.2x "
                  "the 20-layer one's.", HE, "train_loss", "plain-56", ">", other="plain-20", by=1.2, scale="log"),
            Check("The residual 56-layer network's training loss is below the plain 56-layer one's (at least 2x).",
                  HE, "train_loss", "residual-56", "<", other="plain-56", by=2.0, scale="log"),
            Check("With BN the plain 56-layer network's gradient does not vanish: after training, the back-propagated "
                  "gradient at its first layer is above 1/100 of its last layer's.", HEALTHY, "grad_ratio",
                  "plain-56", ">", value=1e-2, scale="log"),
            Check("Nor at initialisation: first/last above 1/10 (it grows toward the input).", HEALTHY,
                  "grad_ratio_init", "plain-56", ">", value=0.1, scale="log"),
            Check("Vanishing looks otherwise: the same network without BN (PyTorch's default initialisation) sends "
                  "back less than a millionth of the gradient to its first layer.", VANISHING, "grad_ratio_init",
                  "plain-56-no-bn", "<", value=1e-6, scale="log"),
        ),
        quick=Budget(2, "mnist-5k", params={"side": 16, "widths": [8, 16, 32], "steps": 60, "batch": 64, "lr": 0.05,
                                            "tail": 15}),
        full=Budget(5, "mnist-5k", params={"side": 16, "widths": [8, 16, 32], "steps": 500, "batch": 64, "lr": 0.05,
                                           "tail": 25}),
        scale_note="He et al.'s CIFAR networks (a 3x3 stem, three stages of n basic blocks, global average pooling: "
                   "6n + 2 = 20 and 56 layers), narrow (widths 8/16/32), on MNIST digits at 16x16, with SGD (momentum "
                   "0.9, weight decay 1e-4) at one rate and the same steps of 64 images for every arm (60 quick, 500 "
                   "full: about 10 epochs of the 3,200 training digits, a CPU's budget); the training loss is the "
                   "mean of the last mini-batch losses (15 quick, 25 full). Two measurements side by side tell "
                   "degradation from vanishing gradients. The deeper plain network trains to a higher loss although "
                   "the gradient reaching its first layer is within a decade or two of its last layer's (at "
                   "initialisation BN even makes it grow toward the input). "
                   "The same network without BN shows what vanishing is: its first layers get a gradient many decades "
                   "smaller (measured in float64: float32 rounds it to 0), so they cannot learn at all. "
                   "Degradation is an optimisation difficulty with healthy gradients; the identity shortcut removes "
                   "it. A short budget shows the early gap of He et al.'s Figure 1; whether the deeper ResNet ends "
                   "below the shallower one (their Figure 6) is reported, not asserted. The 6.97% is a CIFAR-10 "
                   "figure and is not compared with the test error measured here (reported).",
        reported=("test_error", "grad_ratio"),
        plots=(Plot("train_loss", "step", "training loss (mini-batch) under the same SGD steps", True),
               Plot("grad_at_init", "layer", "|dL/dz| at each 3x3 convolution at initialisation (input side first)",
                    True),
               Plot("grad_trained", "layer", "|dL/dz| at each 3x3 convolution after training (input side first)",
                    True)),
    )

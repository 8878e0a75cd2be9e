"""How should the weights of a deep ReLU network start?"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBE = "cnnlab.experiments.probes.init:deep_relu"
HE = Source("He et al. 2015, Delving deep into rectifiers", "the figure of a 30-layer small model's convergence",
            "a 30-layer ReLU network converges with their init, while with Xavier's it completely stalls and its "
            "gradients are all diminishing")
GLOROT = Source("Glorot & Bengio 2010; He et al. 2015", "", "Xavier's variance 2/(n_in + n_out) keeps the scale "
                "of linear units; a ReLU zeroes half of its inputs, so He et al. use 2/n_in: with Xavier's the "
                "std halves every two layers")
SYMMETRY = Source("Goodfellow et al. 2016, Deep Learning", "§8.4", "units with the same initial weights and "
                  "inputs get the same gradient, so they never differ: initialisation must break symmetry")


@EXPERIMENTS.register("init", description="How should the weights of a deep ReLU network start?")
def init() -> Experiment:
    arms = tuple(Arm(name, probe=PROBE, params={"init": name}, label=label) for name, label in (
        ("he", "He (Kaiming)"), ("xavier", "Xavier (Glorot)"), ("normal-0.01", "N(0, 0.01²)"), ("normal-1", "N(0, 1)")))
    symmetry = Arm("constant", probe="cnnlab.experiments.probes.init:symmetry", label="constant 0.05 (3 layers)")
    return Experiment(
        name="init", question="How should the weights of a deep ReLU network start?",
        arms=arms + (symmetry,),
        checks=(
            Check("With He init the 30-layer ReLU network trains (loss falls) where Xavier's stalls.", HE,
                  "final_loss", "he", "<", other="xavier", by=0.5),
            Check("He init keeps the activations' scale: last/first std within 4x of 1 (Xavier's: 2^-14.5).", HE,
                  "abs_log2_std_ratio", "he", "<", value=2.0),
            Check("Xavier init shrinks the std by about 2^-(L-1)/2 through L ReLU layers (within 4x).", GLOROT,
                  "gap_to_halving", "xavier", "<", value=2.0),
            Check("N(0, 0.01²) makes the signal vanish (last/first std below 1e-6).", HE, "std_ratio", "normal-0.01",
                  "<", value=1e-6, scale="log"),
            Check("N(0, 1) makes it explode (last/first std above 1e6).", HE, "std_ratio", "normal-1", ">", value=1e6,
                  scale="log"),
            Check("Constant init keeps every unit of a layer identical after training.", SYMMETRY, "unit_spread",
                  "constant", "<", value=1e-6, exact=True),
        ),
        # Quick: width 64 at a higher rate converges in 300 steps (~1.5 s of CPU an arm); the two inits that only
        # the scale claims concern are measured at initialisation, not trained.
        quick=Budget(3, "digits", params={"width": 64, "steps": 300, "lr": 0.05, "train": ["he", "xavier"]}),
        full=Budget(5, "mnist-5k", params={"width": 256, "steps": 600, "lr": 0.01}),
        scale_note="Dense 30-layer ReLU networks (width 64 quick, 256 full) on digit sets, plain SGD at one learning "
                   "rate for every init (quick: only He and Xavier are trained). The scale is measured at "
                   "initialisation on 256 images; training is a few hundred steps, enough to tell converging from "
                   "stalling, not to compare final accuracies.",
        reported=("std_ratio", "test_accuracy"),
        plots=(Plot("std_by_layer", "layer", "std of each hidden layer's output at initialisation", True),
               Plot("train_loss", "step", "training loss (30 layers, same SGD steps)")),
    )

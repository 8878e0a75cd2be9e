"""Does backpropagation compute the true gradient? (the course's question 3)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Source

RUMELHART = Source("Rumelhart, Hinton & Williams 1986", "the generalised delta rule",
                   "the back-propagated error of a layer is the next layer's, through its weights, times the "
                   "derivative of the activation: exact, not an approximation")
GRADCHECK = Source("CS231n notes, Neural Networks 3", "section \"Gradient checks\"",
                   "use centered differences in double precision; a relative error of 1e-7 or less is a correct "
                   "gradient, above 1e-4 is too high without kinks")


@EXPERIMENTS.register("backprop", description="Does backpropagation compute the true gradient?")
def backprop() -> Experiment:
    return Experiment(
        name="backprop", question="Does backpropagation compute the true gradient?",
        arms=(Arm("gradients", probe="cnnlab.experiments.probes.backprop:gradients",
                  label="finite differences vs autograd, float64"),),
        checks=(
            Check("For every layer type cnnlab builds (convolution, pooling, batch norm, dropout in eval mode, each "
                  "activation, the heads, a whole CNN) autograd's gradient matches central finite differences.",
                  GRADCHECK, "max_relative_error", "gradients", "<", value=1e-6, scale="log", exact=True),
            Check("The chain rule by hand, layer by layer, gives autograd's dL/dz exactly (to rounding).", RUMELHART,
                  "chain_rule_error", "gradients", "<", value=1e-12, exact=True),
        ),
        quick=Budget(2, "digits"), full=Budget(5, "digits"),
        scale_note="Exact arithmetic in float64: central differences with step 1e-6 on 12 sampled coordinates of the "
                   "input and of every parameter tensor of each layer; the seed draws the inputs and weights. Nothing "
                   "here depends on the data set or the scale.",
        reported=("layer_types",),
    )

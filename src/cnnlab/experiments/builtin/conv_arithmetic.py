"""How big is a convolution's output, its parameter count, its receptive field and its cost? (the course's
questions 4-5 and 8-9)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Source

PROBES = "cnnlab.experiments.probes.conv_arithmetic"
DUMOULIN = Source("Dumoulin & Visin 2016, A guide to convolution arithmetic for deep learning", "",
                  "o = floor((i + 2p - k) / s) + 1; with dilation d the kernel spans d(k - 1) + 1")
SIMONYAN = Source("Simonyan & Zisserman 2015, Very Deep Convolutional Networks (VGG)",
                  "discussion of the configurations",
                  "a stack of three 3x3 layers has a 7x7 receptive field and 3(3^2 C^2) = 27C^2 weights against "
                  "49C^2 for one 7x7 layer")
VGG16 = Source("Simonyan & Zisserman 2015 (configuration D); torchvision's vgg16", "",
               "138 million parameters, most of them in the first fully connected layer")
ARAUJO = Source("Araujo, Norris & Sim 2019, Computing Receptive Fields of Convolutional Neural Networks (Distill)",
                "", "r_l = r_(l-1) + (k_l - 1) d_l j_(l-1), with the jump j_l = j_(l-1) s_l")


@EXPERIMENTS.register("conv-arithmetic", description="Output size, parameters, receptive field and FLOPs")
def conv_arithmetic() -> Experiment:
    return Experiment(
        name="conv-arithmetic",
        question="How big is a convolution's output, how many parameters does it have, what does it see, and "
                 "what does it cost?",
        arms=(Arm("output-size", probe=f"{PROBES}:output_sizes", label="nn.Conv2d and nn.MaxPool2d over a grid"),
              Arm("stacks", probe=f"{PROBES}:stacks", label="three 3x3 against one 7x7, C = 64"),
              Arm("vgg16", probe=f"{PROBES}:vgg16", label="torchvision VGG-16, no weights")),
        checks=(
            Check("The output size is floor((n + 2p - d(k - 1) - 1)/s) + 1 for every n, k, p, s and dilation of the "
                  "grid, in convolution and max pooling alike.", DUMOULIN, "mismatches", "output-size", "<",
                  value=0.5, exact=True),
            Check("A convolution has k^2 C_in C_out + C_out parameters.", DUMOULIN, "param_formula_error", "stacks",
                  "<", value=0.5, exact=True),
            Check("Three stacked 3x3 layers see 7x7, as one 7x7 layer does.", SIMONYAN, "rf_gap", "stacks", "<",
                  value=0.5, exact=True),
            Check("...with 27C^2 weights against 49C^2.", SIMONYAN, "params_gap", "stacks", "<", value=1e-9,
                  exact=True),
            Check("VGG-16 has 138,357,544 parameters.", VGG16, "parameter_gap", "vgg16", "<", value=0.5, exact=True),
            Check("fc6 holds about 74% of them (over 70%).", VGG16, "fc6_share", "vgg16", ">", value=0.7,
                  exact=True),
            Check("The receptive field of every VGG-16 layer, measured through the layers' own geometry, is the "
                  "formula's (212 pixels after pool5).", ARAUJO, "receptive_field_error", "vgg16", "<", value=0.5,
                  exact=True),
            Check("torch's FLOP counter gives 2 k^2 C_in C_out H_out W_out for every VGG-16 convolution.", DUMOULIN,
                  "conv_flops_error", "vgg16", "<", value=0.5, exact=True),
        ),
        quick=Budget(1, "digits"), full=Budget(2, "digits"),
        scale_note="All exact: nothing is trained and no weights are loaded (VGG-16 is built on PyTorch's meta "
                   "device, shapes only). Receptive fields are measured as the input pixels the gradient of the "
                   "centre output unit reaches through a one-channel copy of the layers (positive weights, no "
                   "non-linearity, max pooling as average pooling over the same window).",
        reported=("cases", "rf_three_3x3", "rf_one_7x7", "params_three_3x3_per_c2", "params_one_7x7_per_c2",
                  "parameters", "receptive_field"),
    )

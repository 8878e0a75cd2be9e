"""When does a pretrained network help, and freeze or fine-tune? (the course's questions 10 and 14)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBE = "cnnlab.experiments.probes.transfer:arm"
YOSINSKI = Source("Yosinski, Clune, Bengio & Lipson 2014, How transferable are features in deep neural networks?",
                  "abstract", "the transferability of features decreases as the distance between the base task and the "
                  "target task increases, but transferring features even from distant tasks can be better than using "
                  "random features (ImageNet networks)")
BOOST = Source("Yosinski, Clune, Bengio & Lipson 2014, How transferable are features in deep neural networks?",
               "abstract", "initializing a network with transferred features from almost any number of layers can "
               "produce a boost to generalization that lingers even after fine-tuning to the target dataset")
KORNBLITH = Source("Kornblith, Shlens & Le 2019, Do Better ImageNet Models Transfer Better?", "abstract",
                   "16 networks on 12 datasets, as fixed feature extractors and fine-tuned: ImageNet accuracy predicts "
                   "transfer accuracy (r = 0.99 and 0.96); on two small fine-grained datasets pretraining on ImageNet "
                   "gives minimal benefits")
WIDE, TIE = 0.1, 0.01  # "a wide margin" at 10 per class; how far below a tie a ">=" may sit (seed noise)
# name, source, strategy, control (only at the budget's control sizes), label; every arm is `cnnlab train DIGITS_5_9
# --weights SOURCE_RUN --strategy STRATEGY` (--weights none without a source)
ARMS = (("scratch", "none", "full", False, "from scratch"),
        ("feature-extract", "near", "feature-extract", False, "feature extraction, digits 0-4"),
        ("fine-tune", "near", "fine-tune", False, "fine-tuning, digits 0-4"),
        ("two-phase", "near", "two-phase", False, "two-phase, digits 0-4"),
        ("far", "far", "fine-tune", True, "fine-tuning, shapes (far)"),
        ("random", "none", "feature-extract", True, "frozen random features"))


def _arms() -> tuple[Arm, ...]:
    return tuple(Arm(name, probe=PROBE, params={"source": source, "strategy": strategy, "control": control},
                     label=label) for name, source, strategy, control, label in ARMS)


@EXPERIMENTS.register("transfer", description="When does a pretrained network help, and freeze or fine-tune?")
def transfer() -> Experiment:
    return Experiment(
        name="transfer", question="When do features learned on another task help, and should they be frozen or "
                                  "fine-tuned?",
        arms=_arms(),
        checks=(
            Check(f"At 10 training images per class, fine-tuning from a network trained on digits 0-4 beats training "
                  f"from scratch by over {WIDE:g} test accuracy.", BOOST, "test_accuracy_10", "fine-tune", ">",
                  other="scratch", by=WIDE),
            Check("At 250 images per class the gap to training from scratch is at most half the gap at 10 (the gain "
                  "at 250 minus half the gain at 10 is below 0).", KORNBLITH, "gap_excess", "fine-tune", "<",
                  value=0.0),
            Check("At the largest size fine-tuning is at least as good as feature extraction (within "
                  f"{TIE:g}).", KORNBLITH, "test_accuracy_250", "fine-tune", ">", other="feature-extract", by=-TIE),
            Check(f"At 10 per class the near source (digits 0-4) is at least as good as the far one (shapes), "
                  f"within {TIE:g}.", YOSINSKI, "test_accuracy_10", "fine-tune", ">", other="far", by=-TIE),
            Check("Transferred features beat random ones: frozen features from digits 0-4 against a frozen "
                  "untrained backbone, the same head trained on 10 images per class.", YOSINSKI, "test_accuracy_10",
                  "feature-extract", ">", other="random"),
        ),
        quick=Budget(2, "mnist-5k", params={"sizes": [10, 250], "epochs": [30, 5], "source_epochs": 3,
                                            "control_sizes": [10]}),
        full=Budget(5, "mnist-5k", params={"sizes": [10, 50, 250], "epochs": [30, 20, 15], "source_epochs": 8,
                                           "control_sizes": [10, 50, 250]}),
        scale_note="Every arm is an ordinary cnnlab training on digits 5-9 of mnist-5k, tested on the test split's "
                   "500 digits 5-9: 10, 50 or 250 training images per class (quick: 10 and 250) and 20 per class "
                   "for validation, drawn per seed (the same images for every arm of a seed; a smaller set inside "
                   "a larger one). The sources are cnnlab runs trained here first, once per seed and shared by "
                   "every arm: digits 0-4 of the training split (near) and cnnlab's built-in shapes, made grey and "
                   "28x28 by the pipeline (far). The target runs start from them with --weights SOURCE_RUN and a "
                   "--strategy; the network is a small CNN (16 and 32 filters with batch norm, dense 64, no "
                   "dropout), with cnnlab's default rates (0.003 from scratch, 0.001 from a source), epochs chosen "
                   "per size, and no augmentation in any arm. The papers transfer ImageNet networks to other photo "
                   "sets; here the target is easy enough that 50 images teach a small CNN most of what it needs: "
                   "frozen random convolutions with a trained head already reach about the accuracy of training from "
                   "scratch, so transferred features can only add a few points. Where a claim needs the papers' "
                   "scale, the verdict says so with the measured figure.",
        reported=("test_accuracy_50", "test_accuracy_250", "gain_10", "gain_50", "gain_250"),
        plots=(Plot("test_accuracy", "images_per_class", "test accuracy on digits 5-9 against training images per "
                                                         "class"),
               Plot("gain", "images_per_class", "gain over training from scratch")),
    )

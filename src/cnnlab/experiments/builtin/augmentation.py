"""Does augmentation help, and can it hurt? (the course's question 7)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

SIMARD = Source("Simard, Steinkraus & Platt 2003, Best Practices for Convolutional Neural Networks Applied to Visual "
                "Document Analysis", "MNIST results", "1.6% test error without distortions, 0.7% with elastic "
                "distortions (60,000 training images)")
SAFETY = Source("Shorten & Khoshgoftaar 2019, A survey on Image Data Augmentation for Deep Learning", "",
                "an augmentation is safe when it preserves the label: rotations and flips are safe for cats against "
                "dogs, not for digit recognition (6 against 9)")
# A small CNN (a quarter of cnn-small's multiply-adds) keeps 8 trainings of 1,000 images within the quick budget.
SETTINGS = {"blocks": [{"filters": 16}, {"filters": 32}], "dense": [64], "dropout": 0.0, "train_images": 1000}


@EXPERIMENTS.register("augmentation", description="Does augmentation help, and can it hurt?")
def augmentation() -> Experiment:
    return Experiment(
        name="augmentation", question="Does augmentation help on a small training set, and can it hurt?",
        arms=(Arm("none", {"augment": "none"}, label="no augmentation (--augment none)"),
              Arm("light", {"augment": "light"}, label="light: rotation, shift, zoom (--augment light)"),
              Arm("standard", {"augment": "standard"},
                  label="standard: light + horizontal flip, brightness, contrast (--augment standard)"),
              Arm("vflip", {"augment": "none", "vflip": 0.5},
                  label="vertical flip, p = 0.5 (--augment none --vflip 0.5): not label-preserving")),
        checks=(
            Check("On 1,000 training images, label-preserving distortions cut the test error to at most 0.8x of "
                  "training without them.", SIMARD, "test_error", "light", "<", other="none", by=1.25, scale="log"),
            Check("A distortion that does not preserve the label (a vertical flip: a 6 looks like a 9, a 7 like "
                  "nothing in the test set) raises the test error.", SAFETY, "test_error", "vflip", ">",
                  other="none", scale="log"),
            Check("So does the standard preset on digits: its horizontal flip mirrors every other image into a "
                  "shape no test digit has.", SAFETY, "test_error", "standard", ">", other="none", scale="log"),
        ),
        quick=Budget(2, "mnist-5k", {**SETTINGS, "epochs": 15}),
        full=Budget(5, "mnist-5k", {**SETTINGS, "epochs": 60}),
        scale_note="cnnlab's own presets on a stratified, seeded subset of 1,000 MNIST training images (the same "
                   "subset for every arm of a seed), a small CNN (16 and 32 filters, dense 64, no dropout), Adam with the "
                   "one-cycle schedule, tested on 1,000 held-out digits. The presets are affine distortions "
                   "(rotation, shift, zoom), not Simard et al.'s elastic ones, and the set is 60 times smaller, so "
                   "the error is higher than theirs; the ratio is what is compared. The standard preset adds a "
                   "horizontal flip, made for photographs, which no handwritten digit survives unchanged. The "
                   "negative control flips half of the training images upside down. The label stays, the image no "
                   "longer shows it: an upside-down 6 looks like a 9 and an upside-down 7 like no digit at all, so "
                   "the network spends capacity on images that never occur at test time and learns to call some "
                   "9-like shapes 6. Augmentation helps only when the transformed image still deserves its label.",
        reported=("test_accuracy", "train_loss", "val_loss"),
        plots=(Plot("val_loss", "epoch", "validation loss"), Plot("train_loss", "epoch", "training loss")),
        evaluate=True,
    )

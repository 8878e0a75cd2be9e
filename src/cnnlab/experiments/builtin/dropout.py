"""Why do wide dense layers overfit, and what does dropout do? (the course's question 9)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBES = "cnnlab.experiments.probes.dropout"
SRIVASTAVA = Source("Srivastava et al. 2014, Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
                    "Table 2, Comparison of different models on MNIST; abstract",
                    "dropout nets reach a lower MNIST test error than the same nets trained without it; dropout "
                    "significantly reduces overfitting (all 60,000 training images)")
INVERTED = Source("Srivastava et al. 2014, §4; PyTorch's nn.Dropout (inverted dropout)", "",
                  "a unit is kept with probability 1 - p; PyTorch scales the kept units by 1/(1 - p) during "
                  "training, so the expected activation is unchanged and evaluation uses the whole network as it is")
MODELS = {"mlp": "wide MLP", "cnn": "cnn-small"}
RATES = (0.0, 0.25, 0.5)


def _arm(model: str, rate: float) -> Arm:
    return Arm(f"{model}-{rate:g}", probe=f"{PROBES}:overfit",
               params={"model": "mlp" if model == "mlp" else "cnn-small", "rate": rate},
               label=f"{MODELS[model]}, dropout {rate:g}")


def _claims(model: str) -> tuple[Check, ...]:
    none, half = f"{model}-0", f"{model}-0.5"
    return (Check(f"{MODELS[model]}: without dropout the final test NLL is at least 1.3x the NLL with 0.5.",
                  SRIVASTAVA, "test_nll", none, ">", other=half, by=1.3, scale="log"),
            Check(f"{MODELS[model]}: the final test NLL is lower with dropout 0.5 than without.", SRIVASTAVA,
                  "test_nll", half, "<", other=none),
            Check(f"{MODELS[model]}: the gap between test and training NLL is smaller with dropout 0.5.",
                  SRIVASTAVA, "nll_gap", half, "<", other=none))


@EXPERIMENTS.register("dropout", description="Why do wide dense layers overfit, and what does dropout do?")
def dropout() -> Experiment:
    arms = tuple(_arm(m, r) for m in MODELS for r in RATES)
    return Experiment(
        name="dropout", question="Why do wide dense layers overfit, and what does dropout do?",
        arms=arms + (Arm("facts", probe=f"{PROBES}:facts", label="inverted dropout, exactly"),),
        checks=_claims("mlp") + (
            Check("In eval mode cnn-small at --dropout 0.5 gives the same output twice.", INVERTED, "eval_change",
                  "facts", "<", value=1e-12, exact=True),
            Check("...and in train mode it does not (the control).", INVERTED, "train_change", "facts", ">",
                  value=0.0, exact=True),
            Check("Inverted dropout keeps the mean activation within 1% (a million units, p = 0.5).", INVERTED,
                  "mean_error", "facts", "<", value=0.01, exact=True),
            Check("It scales each kept unit by exactly 1/(1 - p).", INVERTED, "kept_scale_error", "facts", "<",
                  value=1e-6, exact=True),
        ) + _claims("cnn"),
        quick=Budget(3, "mnist-5k", params={"n": 1000, "epochs": 20, "width": 512, "train": ["mlp"]}),
        full=Budget(5, "mnist-5k", params={"n": 1000, "epochs": 30, "width": 1024}),
        scale_note="1,000 mnist-5k training images (drawn once, the same for every arm and seed; 1,000 test "
                   "images), Adam at 0.001, batch 64, the NLL in eval mode after every epoch. The wide MLP has two "
                   "ReLU layers (512 units quick, 1024 full: the width of their MNIST nets) with dropout after each; "
                   "cnn-small is cnnlab's preset at --dropout, which drops units of its dense head only. The quick "
                   "budget trains the MLP for 20 epochs and leaves cnn-small out (its checks show no figures); "
                   "the full one trains both for 30 epochs. Srivastava et al.'s figures are for all 60,000 MNIST "
                   "training images. On 1,000 images Adam drives the training NLL "
                   "near zero with or without dropout, so the test NLL ratio stays below the 1.3x claimed; and "
                   "cnn-small drops units only in its dense head, after batch-normalised convolutions, where "
                   "dropout need not lower the test NLL at all. The verdicts say which claims survive here.",
        reported=("train_nll", "test_error", "best_test_nll", "kept_share"),
        plots=(Plot("test_nll", "epoch", "test NLL after each epoch (eval mode)"),
               Plot("train_nll", "epoch", "training NLL after each epoch (eval mode)")),
    )

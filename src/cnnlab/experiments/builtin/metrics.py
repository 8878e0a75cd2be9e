"""Which metric, and what does accuracy hide? (the course's question 15)"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

PROBES = "cnnlab.experiments.probes.metrics"
FAWCETT = Source("Fawcett 2006, An introduction to ROC analysis", "",
                 "the AUC is the probability that a randomly chosen positive is ranked above a randomly chosen "
                 "negative: equivalent to the Wilcoxon test of ranks (Hanley & McNeil 1982)")
EXACT = Source("Definitions of accuracy, recall and F1 (scikit-learn as the reference)", "",
               "exact identities: no tolerance beyond rounding")
GUO = Source("Guo et al. 2017, On Calibration of Modern Neural Networks", "abstract",
             "modern networks are poorly calibrated; temperature scaling, a single-parameter variant of Platt "
             "scaling, is surprisingly effective at calibrating predictions")


@EXPERIMENTS.register("metrics", description="Which metric, and what does accuracy hide?")
def metrics() -> Experiment:
    return Experiment(
        name="metrics", question="Which metric, and what does accuracy hide?",
        arms=(Arm("paradox", probe=f"{PROBES}:paradox", label="constant classifier at 1:99 (cnnlab's metrics)"),
              Arm("roc-auc", probe=f"{PROBES}:roc_auc", label="ROC-AUC three ways, with ties"),
              Arm("pr-curve", probe=f"{PROBES}:pr_curve", label="precision/recall at every threshold"),
              Arm("temperature", probe=f"{PROBES}:temperature", label="overfitted MLP, cnnlab's temperature")),
        checks=(
            Check("At 1:99 a classifier that always answers the common class scores accuracy 0.99.", EXACT,
                  "accuracy_error", "paradox", "<", value=1e-12, exact=True),
            Check("Its recall and F1 on the rare class are both 0: accuracy hid that it never finds one.", EXACT,
                  "rare_recall_plus_f1", "paradox", "<", value=1e-12, exact=True),
            Check("Its ROC-AUC is 0.5: a constant score ranks nothing.", FAWCETT, "roc_auc_error", "paradox", "<",
                  value=1e-12, exact=True),
            Check("ROC-AUC equals the Mann-Whitney U / (n+ n-) and the share of correctly ranked pairs (ties "
                  "half), to 1e-9.", FAWCETT, "mann_whitney_error", "roc-auc", "<", value=1e-9, exact=True),
            Check("ROC-AUC does not change under a strictly increasing transform of the scores.", FAWCETT,
                  "monotone_change", "roc-auc", "<", value=1e-12, exact=True),
            Check("Precision and recall counted at every threshold match scikit-learn's curve to 1e-9.", EXACT,
                  "curve_error", "pr-curve", "<", value=1e-9, exact=True),
            Check("Raising the threshold never raises recall (the trade-off's one monotone side).", EXACT,
                  "recall_rises", "pr-curve", "<", value=0.5, exact=True),
            Check("Temperature scaling leaves the accuracy unchanged (argmax of z/T is argmax of z).", GUO,
                  "accuracy_change", "temperature", "<", value=1e-12, exact=True),
            Check("It lowers the overfitted network's out-of-fold NLL at least 1.1x.", GUO, "nll_ratio",
                  "temperature", ">", value=1.1),
            Check("It lowers the overfitted network's out-of-fold ECE.", GUO, "ece_gain", "temperature", ">",
                  value=0.0),
        ),
        quick=Budget(2, "digits"), full=Budget(5, "digits"),  # the measured setting; 5 seeds
        scale_note="Everything but the temperature arm is exact arithmetic on synthetic labels and scores (10,000 "
                   "labels at 1:99; 300 positive and 700 negative scores rounded to 0.1 so that ties occur). The "
                   "temperature arm overfits a 2x256 MLP on 600 digits (Adam, full batch, 200 steps) and fits "
                   "cnnlab's cross-validated temperature on the 360 held-out digits. At that size the NLL falls "
                   "reliably, while the ECE (15 bins over 360 images) is too noisy to show Guo et al.'s cut: "
                   "softened confidences spread over more bins, each holding a few images.",
        reported=("accuracy", "balanced_accuracy", "roc_auc", "average_precision", "temperature", "test_accuracy",
                  "ece_before", "ece_after", "nll_before", "nll_after"),
        plots=(Plot("precision", "recall", "precision against recall as the threshold falls"),),
    )

"""Which optimiser, and does momentum really help?"""
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

GOH = Source("Goh 2017, Why Momentum Really Works (Distill)", "section \"The Dynamics of Momentum\"",
             "at the optimal step sizes the heavy ball converges at (sqrt k - 1)/(sqrt k + 1) against GD's "
             "(k - 1)/(k + 1): at k = 100, 0.82 against 0.98 a step")
CHOI = Source("Choi et al. 2019, On Empirical Comparisons of Optimizers for Deep Learning", "abstract",
              "comparisons are sensitive to the tuning protocol; tuned, the adaptive methods never underperform "
              "momentum or gradient descent")
GRIDS = {"sgd": (0.03, 0.1, 0.3, 1.0), "momentum": (0.003, 0.01, 0.03, 0.1), "nesterov": (0.003, 0.01, 0.03, 0.1),
         "rmsprop": (1e-4, 3e-4, 1e-3, 3e-3), "adam": (3e-4, 1e-3, 3e-3, 1e-2), "adamw": (3e-4, 1e-3, 3e-3, 1e-2)}
LABELS = {"sgd": "SGD", "momentum": "SGD + momentum 0.9", "nesterov": "Nesterov 0.9", "rmsprop": "RMSprop",
          "adam": "Adam", "adamw": "AdamW (decay 0.01)"}


@EXPERIMENTS.register("optimizers", description="Which optimiser, and does momentum really help?")
def optimizers() -> Experiment:
    tuned = "cnnlab.experiments.probes.optimizers:tuned"
    arms = tuple(Arm(name, probe=tuned, params={"optimizer": name, "grid": list(grid)}, label=LABELS[name])
                 for name, grid in GRIDS.items())
    reach = tuple(Check(f"{LABELS[name]} at its best rate of the grid reaches 90% training accuracy within the "
                        f"budget.", CHOI, "steps_to_target", name, "<", value=400.0) for name in GRIDS)
    return Experiment(
        name="optimizers", question="Which optimiser, and does momentum really help?",
        arms=(Arm("quadratic", probe="cnnlab.experiments.probes.optimizers:quadratic",
                  label="GD vs heavy ball, quadratic, k = 100"),) + arms,
        checks=(Check("On a quadratic with condition number 100, momentum needs at least 5x fewer iterations than "
                      "gradient descent (both at their optimal step sizes).", GOH, "speedup", "quadratic", ">",
                      value=5.0, exact=True),) + reach,
        quick=Budget(3, "digits", params={"steps": 400}),
        full=Budget(5, "mnist-5k", params={"steps": 400}),
        scale_note="The quadratic is exact arithmetic (float64, 20 eigenvalues spread from 1 to 100, to a "
                   "millionth of the start). On data each optimiser trains a 2x64 ReLU network from the same "
                   "initialisation and data order at each rate of a 4-point grid; the best rate counts. Digit sets "
                   "are easy, so the steps to 90% are close together: the ordering is reported, not claimed.",
        reported=("gd_iterations", "momentum_iterations", "best_lr"),
        plots=(Plot("steps_by_lr", "lr", "steps to 90% training accuracy at each learning rate"),
               Plot("speedup", "kappa", "heavy-ball speed-up over GD against the condition number")),
    )

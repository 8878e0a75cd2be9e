"""Each built-in experiment in full (or --quick) over at least 5 seeds: every check's measured figure beside
the paper's, the seed-to-seed spread of each side, the margin's ratio to that spread, and the verdict.

    python benchmarks/experiments.py                      # all, full budget, 5 seeds
    python benchmarks/experiments.py activations init --quick --seeds 5 --jobs 2
    python benchmarks/experiments.py init --publish docs/results   # the docs' course pages show this run

The margin/spread ratio says how far outside seed noise the tests' margins sit: a check's margin (the
claim's difference, or log10 of its factor) divided by the standard deviation of the paired effect over
the seeds. Exact checks have no noise to speak of ("exact")."""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np


def _ratio(outcome) -> str:
    effects = [e for e in outcome.effects if e is not None]
    if len(effects) < 2:
        return "n/a"
    sd = float(np.std(effects, ddof=1))
    distance = abs(float(np.mean(effects)) - outcome.margin)  # how far the mean effect sits from the margin
    return "exact" if sd == 0 else f"{distance / sd:.1f} sd"


def report(result, seconds: float) -> None:
    from cnnlab.experiments.output import measured

    print(f"\n== {result.name}: {result.question} ({len(result.seeds)} seeds, {seconds:.0f} s) -> {result.verdict}")
    for check in result.checks:
        o = check.outcome
        sd = float(np.std(o.effects, ddof=1)) if len(o.effects) > 1 else math.nan
        unit = "log10" if check.scale == "log" else ""
        print(f"- {check.claim}\n    measured: {measured(check)}\n    paper: {check.source}: {check.paper_number}\n"
              f"    effect sd over seeds {sd:.3g} {unit}; distance from the margin {_ratio(o)}; verdict {check.verdict}")


def publish(result, folder: Path) -> None:
    """The run's experiment.json, as written (strict JSON, with the command that reproduces it), into the docs."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.json_path, folder / f"{result.name}.json")
    print(f"published {folder / (result.name + '.json')}")


def main() -> None:
    from cnnlab.experiments.catalog import EXPERIMENTS
    from cnnlab.experiments.engine import run_experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"experiments (default all: {', '.join(EXPERIMENTS.names())})")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=".bench/experiments")
    parser.add_argument("--publish", metavar="DIR", help="copy each experiment.json to DIR/NAME.json (docs/results: "
                                                         "the docs' course pages are built from them)")
    args = parser.parse_args()
    for name in args.names or EXPERIMENTS.names():
        start = time.perf_counter()
        result = run_experiment(name, seeds=args.seeds, quick=args.quick, jobs=args.jobs,
                                out=Path(args.out) / (name + ("-quick" if args.quick else "")))
        report(result, time.perf_counter() - start)
        if args.publish:
            publish(result, Path(args.publish))


if __name__ == "__main__":
    main()

"""``cnnlab.experiment``: run every arm x seed of an experiment, decide each check, write the page.

The seeds are paired: seed k of every arm has the same split, the same data order and the same budget
(the seed is the config's ``seed``). ``jobs`` > 1 runs units in spawned processes, one torch thread each.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Optional, Union

from cnnlab.errors import CnnlabError
from cnnlab.experiments import units as unit_mod
from cnnlab.experiments.spec import Experiment
from cnnlab.experiments.stats import Outcome, decide

log = logging.getLogger(__name__)
Hook = Callable[[unit_mod.Unit, str], None]  # called after each unit with "ran" or "reused"


@dataclass
class CheckResult:
    claim: str
    expectation: str
    source: str
    paper_number: str
    metric: str
    scale: str
    exact: bool
    outcome: Outcome

    @property
    def verdict(self) -> str:
        return self.outcome.verdict


@dataclass
class ExperimentResult:
    """What ``cnnlab.experiment`` returns: the verdicts, every arm x seed figure, and the files written."""

    name: str
    question: str
    verdict: str  # the headline check's
    checks: list[CheckResult]
    seeds: list[int]
    figures: dict[str, list[dict]]  # arm -> one figures dict per seed (scalars, curves, tables)
    out: Path
    json_path: Path
    html_path: Path
    ran: list[str] = field(default_factory=list)  # "arm/seed-k" measured in this call
    reused: list[str] = field(default_factory=list)  # finished before: read, not measured again

    def values(self, arm: str, metric: str) -> list[Optional[float]]:
        """``metric`` of ``arm`` for each seed."""
        return [f["scalars"].get(metric) for f in self.figures[arm]]


def resolve(experiment: Union[str, Path, Experiment]) -> Experiment:
    if isinstance(experiment, Experiment):
        return experiment
    text = str(experiment)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        from cnnlab.experiments.user import load_yaml

        return load_yaml(text)
    from cnnlab.experiments.catalog import EXPERIMENTS

    return EXPERIMENTS.get(text)()


def _data(name: str, out: Path, needs_folder: bool) -> str:
    """A built-in dataset's name becomes its exported folder (under OUT/data) when training arms need one."""
    from cnnlab.data.samples import SAMPLES, export

    if name in SAMPLES:
        if not needs_folder:
            return name
        folder = out / "data" / name
        export(name, folder)
        return str(folder.resolve())
    if not Path(name).exists():
        raise CnnlabError(f"dataset not found: {name} (a folder of class folders, a CSV manifest, or a built-in "
                          f"set: {', '.join(SAMPLES.names())})")
    return str(Path(name).resolve())


def plan(exp: Experiment, out: Path, data: Optional[str], seeds: Optional[int], quick: bool,
         device: Optional[str]) -> list[unit_mod.Unit]:
    budget = exp.budget(quick)
    n = budget.seeds if seeds is None else seeds
    if n < 1:
        raise CnnlabError(f"--seeds must be at least 1, got {n}")
    folder = _data(data or budget.data, out, any(a.kind == "train" for a in exp.arms))
    return [unit_mod.Unit(exp.name, arm, seed, budget, folder, str(unit_mod.unit_dir(out, arm.name, seed)),
                          device, exp.evaluate)
            for arm in exp.arms for seed in range(n)]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def execute(units: list[unit_mod.Unit], jobs: int = 1, hook: Optional[Hook] = None) -> dict[tuple[str, int], dict]:
    """Every unit's figures: read where finished, measured otherwise (in ``jobs`` processes)."""
    done: dict[tuple[str, int], dict] = {}
    pending = []
    for unit in units:
        saved = unit_mod.finished(unit)
        if saved is None:
            pending.append(unit)
            continue
        done[(unit.arm.name, unit.seed)] = saved
        if hook:
            hook(unit, "reused")
    if jobs <= 1 or len(pending) <= 1:
        for unit in pending:
            log.info(f"{unit.experiment}: {unit.arm.name}, seed {unit.seed}")
            done[(unit.arm.name, unit.seed)] = unit_mod.run(unit)
            if hook:
                hook(unit, "ran")
        return done
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        futures = {pool.submit(unit_mod.run, unit): unit for unit in pending}
        for future in as_completed(futures):
            unit = futures[future]
            done[(unit.arm.name, unit.seed)] = future.result()
            log.info(f"{unit.experiment}: {unit.arm.name}, seed {unit.seed} done")
            if hook:
                hook(unit, "ran")
    return done


def check_results(exp: Experiment, figures: dict[str, list[dict]]) -> list[CheckResult]:
    results = []
    for check in exp.checks:
        a = [f["scalars"].get(check.metric) for f in figures[check.arm]]
        b = [f["scalars"].get(check.metric) for f in figures[check.other]] if check.other else [check.value] * len(a)
        results.append(CheckResult(check.claim, check.expectation(), check.source.cite(), check.source.number,
                                   check.metric, check.scale, check.exact, decide(check, a, b)))
    return results


def run_experiment(experiment: Union[str, Path, Experiment], data: Optional[str] = None, *, seeds: Optional[int] = None,
                   quick: bool = False, out: Union[str, Path, None] = None, jobs: int = 1, device: Optional[str] = None,
                   hook: Optional[Hook] = None, command: Optional[str] = None) -> ExperimentResult:
    from cnnlab.experiments.output import write

    exp = resolve(experiment)
    out = Path(out) if out is not None else Path("experiments") / (exp.name + ("-quick" if quick else ""))
    units = plan(exp, out, None if data is None else str(data), seeds, quick, device)
    before = {(u.arm.name, u.seed) for u in units if (u.path / unit_mod.FIGURES).is_file()}
    result = _result(exp, units, execute(units, jobs, hook), before, out)
    ref = exp.name if isinstance(experiment, Experiment) else str(experiment)
    write(exp, result, units, quick, command or _command(ref, data, seeds, quick, out))
    return result


def _result(exp: Experiment, units: list[unit_mod.Unit], done: dict, before: set, out: Path) -> ExperimentResult:
    """The verdicts and figures of every unit; ``before``: the units finished before this call."""
    seed_list = sorted({u.seed for u in units})
    figures = {arm.name: [done[(arm.name, s)] for s in seed_list] for arm in exp.arms}
    checks = check_results(exp, figures)
    keys = [(f"{u.arm.name}/seed-{u.seed}", (u.arm.name, u.seed) in before) for u in units]
    return ExperimentResult(exp.name, exp.question, checks[0].verdict if checks else "inconclusive", checks,
                            seed_list, figures, out, out / "experiment.json", out / "experiment.html",
                            ran=[k for k, old in keys if not old], reused=[k for k, old in keys if old])


def _command(ref: str, data, seeds, quick: bool, out: Path) -> str:
    """The command line that reproduces this experiment (the same seeds, data and mode)."""
    parts = ["cnnlab experiment run", ref]
    parts += [f"--data {data}"] if data else []
    parts += [f"--seeds {seeds}"] if seeds is not None else []
    parts += ["--quick"] if quick else []
    return " ".join(parts + [f"--out {out}"])

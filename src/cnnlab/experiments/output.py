"""experiment.json (strict, versioned) and the sentences both it and the page use."""
from __future__ import annotations

import platform
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cnnlab import files
from cnnlab.experiments.spec import Experiment
from cnnlab.experiments.stats import spread

SCHEMA_VERSION = 1
EXPERIMENT_JSON, EXPERIMENT_HTML = "experiment.json", "experiment.html"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{p: _version(p) for p in ("cnnlab", "torch", "numpy", "scipy")}}


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def measured(check) -> str:
    """The measured figure of a check in words: both sides' means and the effect with its interval."""
    o = check.outcome
    if o.mean is None:
        return "no figures"
    a, b = _mean(o.a), _mean(o.b)
    seeds = f"{len(o.effects)} seed{'s' if len(o.effects) != 1 else ''}"
    sides = f"{a:.3g} against {b:.3g}" if a is not None and b is not None else ""
    if check.scale == "log":
        effect = f"{10 ** o.mean:.3g}x the claimed way"
        ci = f"95% CI {10 ** o.low:.3g}x to {10 ** o.high:.3g}x" if o.low is not None else o.method
    else:
        effect = f"difference {o.mean:+.3g} the claimed way"
        ci = f"95% CI {o.low:+.3g} to {o.high:+.3g}" if o.low is not None else o.method
    if check.exact:
        ci = "every seed" if o.verdict == "supported" else f"worst seed {o.low:+.3g}"
    return f"{check.metric}: {sides} ({effect}; {ci}; {seeds})"


def finding(result) -> str:
    """The headline check's claim with the measured figure beside the paper's (the verdict's sentence)."""
    if not result.checks:
        return "No checks: nothing to decide."
    c = result.checks[0]
    paper = f" {c.source}: {c.paper_number}." if c.paper_number else f" ({c.source})"
    return f"{c.claim} Measured {measured(c)}.{paper}"


def headline(result) -> str:
    """The verdict in one sentence, the measured figure beside the paper's."""
    return f"{result.verdict.capitalize()}: {finding(result)}" if result.checks else finding(result)


def summary(exp: Experiment, result) -> dict:
    """Per arm: the mean and seed-to-seed spread of every checked and reported metric."""
    names = list(dict.fromkeys([c.metric for c in exp.checks] + list(exp.reported)))
    table = {}
    for arm in exp.arms:
        rows = {}
        for name in names:
            values = result.values(arm.name, name)
            if any(v is not None for v in values):
                rows[name] = {"mean": _mean(values), "spread": spread(values), "values": values}
        table[arm.name] = rows
    return table


def document(exp: Experiment, result, units, quick: bool, command: str) -> dict:
    data = units[0].data if units else ""
    return {
        "schema_version": SCHEMA_VERSION, "kind": "cnnlab-experiment", "experiment": exp.name,
        "question": exp.question, "scale_note": exp.scale_note, "command": command, "versions": versions(),
        "quick": quick, "data": data, "seeds": result.seeds, "verdict": result.verdict, "headline": headline(result),
        "finding": finding(result),
        "arms": [{"name": a.name, "label": a.title(), "kind": a.kind, "overrides": a.overrides, "probe": a.probe,
                  "params": a.params} for a in exp.arms],
        "checks": [{"claim": c.claim, "expectation": c.expectation, "source": c.source, "paper_number": c.paper_number,
                    "metric": c.metric, "scale": c.scale, "exact": c.exact, "verdict": c.verdict,
                    "measured": measured(c), "outcome": c.outcome.to_dict()} for c in result.checks],
        "summary": summary(exp, result), "timings": list(exp.timings), "plots": [asdict(p) for p in exp.plots],
        "figures": {arm: [{"seed": f["seed"], "scalars": f["scalars"], "curves": f.get("curves", {}),
                           "tables": f.get("tables", {})} for f in figs] for arm, figs in result.figures.items()},
    }


def write(exp: Experiment, result, units, quick: bool, command: str) -> None:
    from cnnlab.experiments.page import page

    doc = document(exp, result, units, quick, command)
    files.write_json(Path(result.json_path), doc)
    files.write_text(Path(result.html_path), page(doc))

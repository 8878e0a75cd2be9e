"""``cnnlab compare DATA --models a,b,c``: the same split, the same budget, one leaderboard.

Answers "which backbone for my data?": accuracy, macro F1, parameters (total and trained), training
time, prediction latency per image on this machine, and a link to each run's report.
"""
from __future__ import annotations

import logging
import html
from pathlib import Path
from typing import Any, Optional

import torch

from cnnlab import files, rundir
from cnnlab.artifacts import LeaderboardRow
from cnnlab.errors import CnnlabError
from cnnlab.inference.predictor import forward_ms
from cnnlab.catalog import strategies
from cnnlab.catalog.names import Task

log = logging.getLogger(__name__)

Entry = LeaderboardRow  # one model's row of the leaderboard


def trained_parameters(net: torch.nn.Module, strategy: Optional[str], unfreeze: int) -> int:
    """Parameters the strategy lets train (at the end of training, for two-phase)."""
    total = sum(p.numel() for p in net.parameters())
    chosen = strategies.recorded(strategy)
    if not chosen.freezes_backbone or not hasattr(net, "blocks"):
        return total
    head = total - sum(p.numel() for p in net.features.parameters())
    top = chosen.trained_blocks(unfreeze)
    blocks = net.blocks()[len(net.blocks()) - top:] if top else []
    return head + sum(p.numel() for block in blocks for m in block for p in m.parameters())


def latency_ms(predictor, image, n: int = 30) -> float:
    return forward_ms(predictor, predictor.preprocess(image).unsqueeze(0), n)


def compare(data: str | Path, models: list[str], out: str | Path, budget: Optional[float] = None,
            **overrides: Any) -> list[Entry]:
    from cnnlab.evaluation.report import build_report
    from cnnlab.training.fit import train

    if len(models) < 1:
        raise CnnlabError("give at least one model: --models cnn-small,resnet18")
    out = Path(out)
    from cnnlab.data.sources import scan

    scan(data, overrides.get("task", Task.CLASSIFICATION.value))  # a dataset error is every model's: once, before any trains
    entries = []
    for name in models:
        log.info(f"training {name}")
        run_dir = out / name.replace(":", "_")
        try:
            result = train(data, run_dir, overwrite=True, model=name, **({"max_time": budget} if budget else {}),
                           **overrides)
            report = build_report(run_dir, data)
        except (CnnlabError, RuntimeError, ValueError) as exc:  # one model that cannot run: a row saying why
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            log.warning(f"{name} failed: {reason}")
            entries.append(Entry(model=name, error=reason))
            continue
        entries.append(_row(name, run_dir, result, str(report.relative_to(out))))
    entries.sort(key=lambda e: (e.accuracy is None, -(e.accuracy or 0), -(e.f1_macro or 0)))
    write_leaderboard(entries, out, _setting(data, overrides.get("epochs"), budget))
    if all(e.error for e in entries):
        raise CnnlabError(f"every model failed (first: {entries[0].model}: {entries[0].error}); "
                          f"see {rundir.leaderboard_paths(out)[1]}")
    return entries


def _row(name: str, run_dir: Path, result, report: str) -> Entry:
    """A trained and evaluated model's row: its headline figures, size, time and latency."""
    from cnnlab.inference.predictor import load

    predictor = load(run_dir, "cpu")
    evaluation = predictor.run.evaluation()
    strategy = predictor.run.training_info().get("strategy")  # None: a run from before it was recorded
    sample = predictor.run.split()[0]["path"]
    pre = predictor.run.pre
    return Entry(
        model=name, accuracy=evaluation.accuracy, f1_macro=evaluation.f1_macro,
        params=sum(p.numel() for p in predictor.model.parameters()),
        trained_params=trained_parameters(predictor.model.net, strategy, predictor.run.config.transfer.unfreeze),
        train_seconds=result.seconds, latency_ms=latency_ms(predictor, sample),
        input=f"{pre.channels}x{pre.size[0]}x{pre.size[1]}",
        epochs=f"{result.epochs}" + (f" ({result.stopped})" if result.stopped else ""), report=report)


def _setting(data, epochs, budget) -> str:
    return (f"dataset {data}, {epochs or 'the default'} epochs"
            + (f", budget {budget:g} s a model" if budget else ", no time budget"))


COLUMNS = ["model", "accuracy", "f1_macro", "params", "trained_params", "train_seconds", "latency_ms", "input",
           "epochs", "report"]


def _cells(e: Entry) -> list[str]:
    if e.error:
        return [e.model, f"failed: {e.error}"] + [""] * (len(COLUMNS) - 2)
    return [e.model, f"{e.accuracy:.4f}", f"{e.f1_macro:.4f}", f"{e.params:,}", f"{e.trained_params:,}",
            f"{e.train_seconds:.1f}", f"{e.latency_ms:.2f}", e.input, e.epochs, e.report]


def write_leaderboard(entries: list[Entry], out: Path, setting: str = "") -> None:
    """The rows as leaderboard.csv (through rundir), and to read: leaderboard.md and leaderboard.html."""
    rundir.write_leaderboard_rows(out, entries)
    _, md_path, html_path = rundir.leaderboard_paths(out)
    md = ([f"{setting}", ""] if setting else []) + ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_cells(e)[:-1] + [f"[report]({e.report})" if e.report else ""]) + " |" for e in entries]
    files.write_text(md_path, "\n".join(md) + "\n")
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(e)[:-1])
                   + (f'<td><a href="{html.escape(e.report)}">report</a></td>' if e.report else "<td></td>") + "</tr>"
                   for e in entries)
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    files.write_text(
        html_path,
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cnnlab leaderboard</title>'
        '<link rel="icon" href="data:,"><style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:'
        'collapse}td,th{border:1px solid #ddd;padding:.3rem .7rem}th{background:#f4f4f4}</style></head><body>'
        f"<h1>cnnlab leaderboard</h1><p>{html.escape(setting)}</p><table><tr>{head}</tr>{rows}</table></body></html>")

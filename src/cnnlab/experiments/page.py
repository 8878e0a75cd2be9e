"""experiment.html: one self-contained page in the report's style, drawn from experiment.json alone.

It opens with the question, the verdict in one sentence (measured figure beside the paper's), the checks,
then the curves (one line per arm, a band over the seeds), the table of figures and how to reproduce it.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np

from cnnlab.evaluation.report import STYLE, _table

PAGE_STYLE = STYLE + """
#verdict{border-radius:8px;padding:.8rem 1.2rem;margin:.6rem 0 1rem;font-size:1.05rem;border:1px solid}
#verdict.supported{background:#eef8ee;border-color:#9c9}#verdict.not-supported{background:#fdf0ee;border-color:#dab}
#verdict.inconclusive{background:#f6f6f6;border-color:#ccc}#verdict b{font-size:1.3rem}
.question{font-size:1.15rem}.note{color:#555}"""


def _esc(value) -> str:
    return html.escape(str(value))


def _css(verdict: str) -> str:
    return {"supported": "supported", "inconclusive": "inconclusive"}.get(verdict, "not-supported")


def _figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _series(figs: list[dict], metric: str, x: str):
    """Per seed (x, y) of one curve, cut to the shortest seed; None where no seed has it."""
    pairs = [(f["curves"][metric][x], f["curves"][metric]["y"]) for f in figs
             if metric in f.get("curves", {}) and x in f["curves"][metric]]
    if not pairs:
        return None
    n = min(len(y) for _, y in pairs)
    xs = np.array([[np.nan if v is None else v for v in px[:n]] for px, _ in pairs], dtype=float)
    ys = np.array([[np.nan if v is None else v for v in py[:n]] for _, py in pairs], dtype=float)
    return np.nanmean(xs, axis=0), ys


def plot_uri(doc: dict, spec: dict) -> str:
    """One plot: the mean over seeds per arm, with the band from the lowest to the highest seed."""
    from cnnlab.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = False
    for arm in doc["arms"]:
        found = _series(doc["figures"][arm["name"]], spec["metric"], spec["x"])
        if found is None:
            continue
        x, ys = found
        line, = ax.plot(x, np.nanmean(ys, axis=0), label=arm["label"])
        if len(ys) > 1:
            ax.fill_between(x, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return ""
    if spec.get("log_y"):
        ax.set_yscale("log")
    ax.set_xlabel(spec["x"])
    ax.set_ylabel(spec["metric"])
    ax.set_title(spec.get("title") or f"{spec['metric']} against {spec['x']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    uri = _figure_uri(fig)
    plt.close(fig)
    return uri


def _checks(doc: dict) -> str:
    rows = [[c["claim"], c["expectation"], c["measured"], f"{c['source']}: {c['paper_number']}", c["verdict"]]
            for c in doc["checks"]]
    return "<h2>Checks</h2>" + _table(["claim", "expected", "measured", "published", "verdict"], rows, "checks")


def _figures_table(doc: dict) -> str:
    rows = []
    for arm, metrics in doc["summary"].items():
        for name, s in metrics.items():
            mean = "n/a" if s["mean"] is None else f"{s['mean']:.4g}"
            sd = "" if s["spread"] is None else f"{s['spread']:.3g}"
            rows.append([arm, name, mean, sd, ", ".join("n/a" if v is None else f"{v:.4g}" for v in s["values"])])
    return ("<h2>Figures</h2><p>Mean and standard deviation over the seeds (paired: seed k of every arm saw the same "
            "split and order).</p>" + _table(["arm", "figure", "mean", "sd over seeds", "per seed"], rows, "figures"))


def _probe_tables(doc: dict) -> str:
    parts = []
    for arm, figs in doc["figures"].items():
        for title, t in (figs[0].get("tables") or {}).items() if figs else ():
            parts.append(f"<h3>{_esc(title)} ({_esc(arm)}, seed {figs[0]['seed']})</h3>" + _table(t["header"], t["rows"]))
    return "<h2>Measurements</h2>" + "".join(parts) if parts else ""


def _plots(doc: dict) -> str:
    images = [(p, plot_uri(doc, p)) for p in doc.get("plots", [])]
    return "".join(f'<img class="plot" alt="{_esc(p.get("title") or p["metric"])}" src="{uri}">' for p, uri in images
                   if uri)


def page(doc: dict) -> str:
    verdict = doc["verdict"]
    finding = doc.get("finding") or doc["headline"]  # documents published before "finding" existed
    arms = _table(["arm", "kind", "setting"], [[a["label"], a["kind"], a["probe"] or a["overrides"]]
                                               if not a["params"] else [a["label"], a["kind"], a["params"]]
                                               for a in doc["arms"]])
    body = [
        f"<h1>cnnlab experiment: {_esc(doc['experiment'])}</h1>",
        f'<p class="question"><b>Question.</b> {_esc(doc["question"])}</p>',
        f'<div id="verdict" class="{_css(verdict)}"><b>{_esc(verdict.capitalize())}:</b> {_esc(finding)}</div>',
        f'<p class="note"><b>At this scale.</b> {_esc(doc["scale_note"])}</p>' if doc.get("scale_note") else "",
        _checks(doc), "<h2>Curves</h2>" + _plots(doc) if doc.get("plots") else "", _figures_table(doc),
        _probe_tables(doc), "<h2>Arms</h2>" + arms,
        f"<h2>Reproduce</h2><pre>{_esc(doc['command'])}</pre><p class='note'>Seeds {_esc(doc['seeds'])}; data "
        f"{_esc(doc['data'])}; {'quick' if doc['quick'] else 'full'} budget; "
        + ", ".join(f"{k} {_esc(v)}" for k, v in doc["versions"].items()) + "</p>",
    ]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cnnlab experiment: '
            f'{_esc(doc["experiment"])}</title><link rel="icon" href="data:,"><style>{PAGE_STYLE}</style></head>'
            f'<body>{"".join(body)}</body></html>')

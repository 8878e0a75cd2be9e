"""The course: the 15 questions of a CNN course, each answered by cnnlab's own experiments.

``QUESTIONS`` is data (no torch): each question has a short answer, the experiments whose verdicts are its
evidence (the first is the headline), and the command that lets a reader change the setting and see it
again. ``run_course`` runs every experiment they name (resumably: a finished arm x seed is read, not run
again) and writes ``index.html``; ``course.md`` and the docs pages are drawn from the same documents.
"""
from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from cnnlab import files

log = logging.getLogger(__name__)
INDEX_HTML = "index.html"


@dataclass(frozen=True)
class Question:
    number: int
    topic: str
    question: str
    answer: str
    experiments: tuple[str, ...]  # the first one's verdict and figure head the answer
    command: str  # what a reader runs to change the setting and see it again


QUESTIONS: tuple[Question, ...] = (
    Question(1, "Activation functions", "Why ReLU rather than sigmoid in a deep network?",
             "Sigmoid's slope is at most 1/4 and close to 0 once a unit saturates, so the signal sent back shrinks "
             "at every layer; ReLU passes it on unchanged wherever a unit is active. In a deep plain network the "
             "early layers of a sigmoid net barely learn.", ("activations", "init"),
             "cnnlab experiment run activations --quick"),
    Question(2, "Gradient descent", "Full batch, mini-batch or one example at a time?",
             "A mini-batch gradient is a noisy but cheap estimate of the full one: many cheap steps beat a few "
             "exact ones per second of compute, while batch 1 wastes the hardware. Momentum and adaptive "
             "optimisers change how far each step goes.", ("gd-modes", "optimizers"),
             "cnnlab experiment run gd-modes --quick"),
    Question(3, "Backpropagation", "Does backpropagation compute the true gradient?",
             "Yes: it is the chain rule applied layer by layer. Finite differences in float64 agree with autograd "
             "for every layer type cnnlab builds.", ("backprop",), "cnnlab experiment run backprop --quick"),
    Question(4, "CNN architecture", "What does each part of a CNN cost?",
             "Convolutions hold few parameters and most of the arithmetic; the dense layers after the flatten hold "
             "most of the parameters.", ("conv-arithmetic", "architectures"),
             "cnnlab summary vgg16"),
    Question(5, "Convolution", "How big is a convolution's output, and how many weights does it have?",
             "Output size floor((n + 2p - k) / s) + 1 per side; k x k x C_in x C_out weights plus C_out biases, "
             "independent of the image size.", ("conv-arithmetic",), "cnnlab experiment run conv-arithmetic"),
    Question(6, "Pooling", "What does pooling buy?",
             "Pooling has no parameters and shrinks the maps; a strided convolution can replace it. The "
             "convolutional prior itself depends on pixels staying in place.", ("pooling",),
             "cnnlab experiment run pooling --quick"),
    Question(7, "Augmentation", "Does augmentation help, and can it hurt?",
             "Label-preserving distortions act as more data on a small set; a transform that changes the label "
             "(a vertical flip turns a 6 into a 9) raises the error.", ("augmentation",),
             "cnnlab experiment run augmentation --quick"),
    Question(8, "Flatten", "What happens at the flatten?",
             "The C x H x W maps become one vector of C*H*W numbers, so the first dense layer's weights grow with "
             "the image size: in VGG-16 that one layer holds most of the network.", ("conv-arithmetic",),
             "cnnlab summary vgg16"),
    Question(9, "Dense layers", "Why do wide dense layers overfit, and what does dropout do?",
             "Dense layers have many parameters for few images; dropout trains a different thinned network at "
             "each step and narrows the gap between training and test loss.", ("dropout",),
             "cnnlab experiment run dropout --quick"),
    Question(10, "Transfer learning", "When does a pretrained network help?",
             "Features learned on a related task help most when the new task has few images; the gap to training "
             "from scratch narrows as the data grows.", ("transfer",), "cnnlab experiment run transfer --quick"),
    Question(11, "VGG-16", "Why stacks of 3x3 convolutions?",
             "Three 3x3 layers see as far as one 7x7 with 27C^2 instead of 49C^2 weights and two more "
             "non-linearities.", ("architectures", "conv-arithmetic"), "cnnlab experiment run architectures"),
    Question(12, "ResNet", "Why do residual connections let networks go deeper?",
             "A deeper plain network trains to a higher training loss even when its gradients are healthy (the "
             "degradation problem); an identity shortcut makes the extra layers easy to leave near identity.",
             ("depth", "batchnorm"), "cnnlab experiment run depth --quick"),
    Question(13, "Inception and Xception", "How do factorised and separable convolutions save work?",
             "Two 3x3 instead of one 5x5 cost 18/25; 3x1 then 1x3 cost 6/9 of a 3x3; a depthwise-separable "
             "convolution costs 1/C_out + 1/k^2 of a full one.", ("architectures",),
             "cnnlab experiment run architectures"),
    Question(14, "Fine-tuning", "Freeze the backbone or fine-tune it?",
             "Feature extraction is cheap and safe on tiny sets; fine-tuning at a lower rate wins as the data "
             "grows.", ("transfer",), "cnnlab train DATA --model resnet18 --strategy fine-tune"),
    Question(15, "Metrics", "Why is accuracy not enough?",
             "On imbalanced data a constant classifier scores high accuracy with zero recall; precision, recall, "
             "F1 and ROC-AUC tell what accuracy hides, and calibration says whether the confidence can be "
             "trusted.", ("metrics",), "cnnlab evaluate RUN"),
)


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def experiment_names() -> list[str]:
    """Every experiment the course names, once, in the order the questions name them."""
    return list(dict.fromkeys(name for q in QUESTIONS for name in q.experiments))


Hook = Callable[[str, str], None]  # (experiment, "ran" | "read" | "missing")


def finished(folder: Path, quick: bool, seeds: Optional[int]) -> Optional[dict]:
    """The experiment document already in FOLDER when it answers this course: finished at this budget or a
    larger one (a full run answers a quick course) and with at least the seeds asked for; None otherwise."""
    path = folder / "experiment.json"
    if not path.is_file():
        return None
    doc = _read(path)
    if (doc.get("quick") and not quick) or (seeds is not None and len(doc.get("seeds", [])) < seeds):
        return None
    return doc


def _read_finished(folder: Path, doc: dict) -> None:
    """A finished experiment copied in without its page (docs/results holds only the JSON) gets its page."""
    from cnnlab.experiments.page import page

    if not (folder / "experiment.html").is_file():
        files.write_text(folder / "experiment.html", page(doc))


def run_course(out: Union[str, Path] = "course", *, quick: bool = False, seeds: Optional[int] = None, jobs: int = 1,
               device: Optional[str] = None, hook: Optional[Hook] = None) -> Path:
    """Run every experiment of the course into OUT/NAME and write OUT/index.html. Resumable: a finished
    experiment already in OUT/NAME (see ``finished``) is read, and a finished arm x seed is not run again."""
    from cnnlab.experiments.catalog import EXPERIMENTS
    from cnnlab.experiments.engine import run_experiment

    out = Path(out)
    docs: dict[str, dict] = {}
    for name in experiment_names():
        doc = finished(out / name, quick, seeds)
        if doc is not None:
            _read_finished(out / name, doc)
            docs[name] = doc
            if hook:
                hook(name, "read")
            continue
        if name not in EXPERIMENTS.names():
            log.warning(f"course: no experiment '{name}' yet; its questions show no verdict")
            if hook:
                hook(name, "missing")
            continue
        result = run_experiment(name, quick=quick, seeds=seeds, out=out / name, jobs=jobs, device=device)
        docs[name] = _read(result.json_path)
        if hook:
            hook(name, "ran")
    index = out / INDEX_HTML
    files.write_text(index, course_page(docs))
    return index


def read_documents(folder: Union[str, Path]) -> dict[str, dict]:
    """The experiment documents under FOLDER: FOLDER/NAME/experiment.json or FOLDER/NAME.json."""
    folder, docs = Path(folder), {}
    for name in experiment_names():
        for path in (folder / name / "experiment.json", folder / f"{name}.json"):
            if path.is_file():
                docs[name] = _read(path)
                break
    return docs


def evidence(doc: Optional[dict]) -> dict:
    """The evidence of one experiment in a question's card: verdict, the measured figure, the paper's."""
    if doc is None:
        return {"verdict": "not measured", "measured": "", "claim": "", "source": ""}
    head = doc["checks"][0] if doc["checks"] else {}
    return {"verdict": doc["verdict"], "measured": head.get("measured", ""), "claim": head.get("claim", ""),
            "source": f"{head.get('source', '')}: {head.get('paper_number', '')}".strip(": ")}


def thumbnail(doc: dict) -> str:
    """A small plot as a PNG data URI: the experiment's first curve, or its headline figure per arm."""
    from cnnlab.experiments.page import plot_uri

    for spec in doc.get("plots", []):
        uri = plot_uri(doc, spec)
        if uri:
            return uri
    return bars_uri(doc)


def bars_uri(doc: dict) -> str:
    """The headline check's metric per arm: the mean over seeds, with the lowest and highest seed."""
    from cnnlab.experiments.page import _figure_uri
    from cnnlab.evaluation.plots import plt

    if not doc["checks"]:
        return ""
    metric = doc["checks"][0]["metric"]
    rows = [(arm, s[metric]) for arm, s in doc["summary"].items() if s.get(metric, {}).get("mean") is not None]
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (arm, s) in enumerate(rows):
        values = [v for v in s["values"] if v is not None]
        ax.bar(i, s["mean"], yerr=[[s["mean"] - min(values)], [max(values) - s["mean"]]], capsize=4)
    ax.set_xticks(range(len(rows)), [arm for arm, _ in rows], fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per arm (mean, lowest and highest seed)", fontsize=10)
    fig.tight_layout()
    uri = _figure_uri(fig)
    plt.close(fig)
    return uri


_STYLE = """.q{border:1px solid #ddd;border-radius:8px;padding:.6rem 1rem;margin:1rem 0}.q h2{border:none;margin:.2rem 0}
.v{display:inline-block;border-radius:4px;padding:.05rem .5rem;font-weight:600}.v.supported{background:#dfd}
.v.not-supported{background:#fdd}.v.inconclusive,.v.not-measured{background:#eee}.q img{float:right;width:320px;
margin-left:1rem}.q pre{clear:both}"""


def _esc(value) -> str:
    return html.escape(str(value))


def _card(q: Question, docs: dict[str, dict]) -> str:
    from cnnlab.experiments.page import _css

    rows = []
    for name in q.experiments:
        e = evidence(docs.get(name))
        link = f'<a href="{_esc(name)}/experiment.html">{_esc(name)}</a>' if name in docs else _esc(name)
        css = "not-measured" if name not in docs else _css(e["verdict"])
        rows.append(f'<li>{link}: <span class="v {css}">{_esc(e["verdict"])}</span> {_esc(e["claim"])} '
                    f'<span class="figure">Measured {_esc(e["measured"] or "nothing yet")}.</span>'
                    + (f' <i>Published: {_esc(e["source"])}.</i>' if e["source"] else "") + "</li>")
    lead = docs.get(q.experiments[0])
    thumb = thumbnail(lead) if lead else ""
    img = f'<img class="thumb" alt="{_esc(q.topic)}: {_esc(q.experiments[0])}" src="{thumb}">' if thumb else ""
    return (f'<section class="q" id="q{q.number}"><h2>{q.number}. {_esc(q.topic)}: {_esc(q.question)}</h2>{img}'
            f'<p class="answer">{_esc(q.answer)}</p><ul>{"".join(rows)}</ul>'
            f"<pre>{_esc(q.command)}</pre></section>")


def course_page(docs: dict[str, dict]) -> str:
    """index.html: every question with its answer, verdicts, figures, thumbnail, links and command."""
    from cnnlab.experiments.page import PAGE_STYLE

    body = ("<h1>cnnlab: a CNN course, answered by measurement</h1><p>Each answer below is backed by an "
            "experiment run on this machine with paired seeds; the verdict comes from an interval over the "
            "seeds, never from one run. Follow a link for the curves, the table and how to reproduce it.</p>"
            + "".join(_card(q, docs) for q in QUESTIONS))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cnnlab course</title>'
            f'<link rel="icon" href="data:,"><style>{PAGE_STYLE}{_STYLE}</style></head><body>{body}</body></html>')


def _md(text) -> str:
    """Text for a Markdown table cell or line: no pipes or newlines that would break the layout."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def course_markdown(docs: dict[str, dict], thumbs: dict[str, str]) -> str:
    """The docs' course page: the same questions, verdicts and figures as index.html. ``thumbs`` maps an
    experiment to its thumbnail's path relative to the page."""
    lines = ["# The course, measured", "",
             "Each question of a CNN course, answered by an experiment cnnlab ran with paired seeds. The numbers on "
             "this page are read from the experiments' last published results (`docs/results/*.json`, written by "
             "`python benchmarks/experiments.py --publish docs/results`), so they are always the ones last "
             "measured. Run `cnnlab course --quick` to measure them again on your machine.", ""]
    for q in QUESTIONS:
        lines += [f"## {q.number}. {q.topic}: {_md(q.question)}", ""]
        if q.experiments[0] in thumbs:
            lines += [f"![{_md(q.experiments[0])}]({thumbs[q.experiments[0]]}){{ width=420 }}", ""]
        lines += [q.answer, ""]
        for name in q.experiments:
            if name not in docs:
                lines.append(f"- `{name}`: not measured yet.")
                continue
            e = evidence(docs[name])
            source = f" Published: {_md(e['source'])}." if e["source"] else ""
            lines.append(f"- [{name}](experiments/{name}.md): **{e['verdict']}**. {_md(e['claim'])} "
                         f"Measured {_md(e['measured'])}.{source}")
        lines += ["", "```bash", q.command, "```", ""]
    return "\n".join(lines)


def experiment_markdown(doc: dict) -> str:
    """One experiment's docs page: question, verdict, checks and figures, from its experiment.json."""
    lines = [f"# {doc['experiment']}", "", f"**Question.** {_md(doc['question'])}", "",
             f"**Verdict: {doc['verdict']}.** {_md(doc['headline'])}", ""]
    if doc.get("scale_note"):
        lines += [f"**At this scale.** {_md(doc['scale_note'])}", ""]
    lines += ["| claim | measured | published | verdict |", "|---|---|---|---|"]
    lines += [f"| {_md(c['claim'])} | {_md(c['measured'])} | {_md(c['source'])}: {_md(c['paper_number'])} | "
              f"{c['verdict']} |" for c in doc["checks"]]
    lines += ["", "| arm | figure | mean | sd over seeds |", "|---|---|---:|---:|"]
    for arm, metrics in doc["summary"].items():
        for name, s in metrics.items():
            mean = "n/a" if s["mean"] is None else f"{s['mean']:.4g}"
            sd = "" if s["spread"] is None else f"{s['spread']:.3g}"
            lines.append(f"| {_md(arm)} | {_md(name)} | {mean} | {sd} |")
    budget = "quick" if doc["quick"] else "full"
    lines += ["", f"Seeds {doc['seeds']}, data `{doc['data']}`, {budget} budget. Reproduce:", "", "```bash",
              doc["command"], "```", ""]
    return "\n".join(lines)

"""experiment.html: the verdict box says the verdict once, then the claim with the measured figure beside the
paper's. A one-arm exact experiment keeps it to a second."""
from __future__ import annotations

import html
import re

import cnnlab
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Source

SOURCE = Source("A textbook", "§1", "softmax(z + c) = softmax(z)")


def _tiny(verdict_value: float) -> Experiment:
    arm = Arm("softmax", probe="cnnlab.experiments.probes.activations:softmax_facts")
    return Experiment(name="tiny", question="Is softmax shift invariant?", arms=(arm,),
                      checks=(Check("Softmax is shift invariant.", SOURCE, "shift_error", "softmax", "<",
                                    value=verdict_value, exact=True),),
                      quick=Budget(1, "digits"), full=Budget(1, "digits"))


def _verdict_box(page: str) -> str:
    box = re.search(r'<div id="verdict"[^>]*>(.*?)</div>', page, re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", " ", box))


def test_the_verdict_box_says_the_verdict_once_then_the_claim_and_both_figures(tmp_path):
    for value, word in ((1e-12, "Supported"), (-1.0, "Not supported at this scale")):
        result = cnnlab.experiment(_tiny(value), quick=True, out=tmp_path / word.split()[0])
        box = _verdict_box(result.html_path.read_text())
        assert box.count(word) == 1 and box.lower().count(result.verdict) == 1, box
        assert box.strip().startswith(word + ":") and "Softmax is shift invariant." in box
        assert "shift_error" in box and "A textbook, §1: softmax(z + c) = softmax(z)" in box

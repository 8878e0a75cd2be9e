"""The `cnnlab` commands of the README and the docs: each bash line that calls cnnlab, with its comment, page by
page in the order a reader meets them. Shared by the test that parses them and the test that runs them."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Commands that need what a test machine lacks: parsed only, and the docs say so on their line ("needs ...").
NEEDS = {"--devices 4": "GPUs", "--num-nodes 2": "a cluster", "--model resnet50 --out": "ImageNet weights (a download)",
         "--seeds 5 --jobs 2": "the full budget: minutes of CPU (a GPU suits it)"}
# Commands another test runs end to end, at a cost this file's minute cannot carry: file::test that does.
RUN_BY = {
    "cnnlab course --quick": "tests/e2e/test_course_page.py::test_every_question_shows_a_verdict_a_figure_and_a_working_link",
    "cnnlab train data/ --out runs/ddp --devices 2 --accelerator cpu --distributed ddp":
        "tests/training/test_distributed.py::test_two_processes_write_one_run_with_global_metrics_and_match_one_process",
    "cnnlab train --resume --out runs/ddp": "tests/training/test_distributed.py::test_a_killed_ddp_run_resumes_to_its_end",
}


@dataclass(frozen=True)
class Line:
    page: str  # relative to the repository root
    command: str  # from "cnnlab" on
    comment: str  # what the docs say after the command's "#"

    @property
    def needs(self) -> str:
        """What the command needs that a test machine lacks ('' when it runs here)."""
        return next((what for key, what in NEEDS.items() if key in self.command), "")

    def words(self) -> list[str]:
        """The arguments after ``cnnlab``, as a shell would pass them (``~`` expanded by the caller's HOME)."""
        words = shlex.split(self.command)[1:]
        return [str(Path(w).expanduser()) if w.startswith("~/") else w for w in words]


def lines() -> list[Line]:
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line, _, comment = line.partition(" #")
                line = line.strip()
                if line.startswith("cnnlab ") or " -m cnnlab " in line:
                    found.append(Line(page.relative_to(ROOT).as_posix(), line[line.index("cnnlab"):], comment.strip()))
    return found


def yaml_files(page: str) -> dict[str, str]:
    """The YAML blocks of a page that name themselves (``name: X``), as the files X.yaml a reader saves them to."""
    text = (ROOT / page).read_text()
    return {m.group(1) + ".yaml": block for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
            for m in [re.match(r"name: (\S+)", block)] if m}

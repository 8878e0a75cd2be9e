"""MkDocs hook: the course pages are generated at build time from the published experiment results
(docs/results/NAME.json, as `benchmarks/experiments.py --publish docs/results` writes them), so every
number in the docs is the one last measured. Nothing is typed into the docs by hand."""
from __future__ import annotations

import base64
from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

from cnnlab.experiments import course

RESULTS = Path(__file__).parent / "results"


def _png(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def on_files(files, config):
    docs = course.read_documents(RESULTS)
    thumbs = {}
    for name, doc in docs.items():
        uri = course.thumbnail(doc)
        if uri:
            files.append(File.generated(config, f"course/img/{name}.png", content=_png(uri)))
            thumbs[name] = f"img/{name}.png"
        files.append(File.generated(config, f"course/experiments/{name}.md", content=course.experiment_markdown(doc),
                                    inclusion=InclusionLevel.NOT_IN_NAV))
    files.append(File.generated(config, "course/index.md", content=course.course_markdown(docs, thumbs)))
    return files

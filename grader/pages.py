"""python -m grader.pages: the site's assignment pages, made from the student release.

For every assignment, `release` runs in a throwaway course directory (so a solution that
fails its own tests publishes nothing), and book/assignments/ receives the student notebook
(NAME.ipynb, for download and Colab) and its page (NAME.md, the same notebook as MyST with
a download and an Open-in-Colab link under the title). The site shows these pages without
executing them. Run it after changing anything in solutions/; the grader's tests check that
the committed pages are those of the current release.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
import yaml

from . import pipeline

PAGES = pipeline.REPO / "book" / "assignments"


def repository_url() -> str:
    """The course repository's address: `repository.url` in _config.yml, its one source. (The
    install cells of the notebooks carry a copy, written there by `make repository`.)"""
    return yaml.safe_load((pipeline.REPO / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def colab_url(name: str) -> str:
    """Where Colab opens the assignment's student notebook, from the repository on GitHub."""
    path = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/main/book/assignments/{name}.ipynb"


def comparable(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict]]:
    """What a student sees of a notebook: each cell's type, source and nbgrader metadata."""
    return [(c.cell_type, c.source, dict(c.metadata.get("nbgrader", {}))) for c in nb.cells]


def page(name: str, release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The release as a site page: the same cells, with the links after the title cell."""
    nb = nbformat.from_dict(release)
    links = nbformat.v4.new_markdown_cell(
        f"[Download the notebook](path:{name}.ipynb) · [Open in Colab]({colab_url(name)}) · "
        "Work through it in Jupyter with the course installed (see {doc}`../setup`), or on Colab, "
        "where its first cell installs the course. Hand in the notebook as your course asks."
    )
    nb.cells.insert(1, links)
    nb.metadata["jupytext"] = {"formats": "md:myst"}
    return nb


def publish(names: list[str] | None = None, out: Path = PAGES) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        course = pipeline.course_dir(Path(tmp) / "course")
        for name in names or pipeline.assignments():
            release = nbformat.read(pipeline.release(name, course), as_version=4)
            for cell in release.cells:  # ids are random per release; the site does not need them
                cell.pop("id", None)
            release.nbformat_minor = 4
            nbformat.write(release, out / f"{name}.ipynb")
            jupytext.write(page(name, release), out / f"{name}.md", fmt="md:myst")
            written += [out / f"{name}.ipynb", out / f"{name}.md"]
    return written


if __name__ == "__main__":
    for path in publish(sys.argv[1:] or None):
        print(f"wrote {path.relative_to(pipeline.REPO)}")

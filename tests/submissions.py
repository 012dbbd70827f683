"""Build student submissions from a release: honest, wrong, unanswered and broken ones."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat

from grader import pipeline


STUDENT_PROSE = "My answer, in my own words: one vector per word cannot depend on the context."


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solved(release: Path, name: str, overrides: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The release with every answer cell filled from the solution; `overrides` maps a
    grade_id to the source a student wrote instead."""
    source = {_grade_id(c): c.source for c in pipeline.source_notebook(name).cells}
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        gid = _grade_id(cell)
        if cell.metadata.get("nbgrader", {}).get("solution"):
            own = STUDENT_PROSE if cell.cell_type == "markdown" else source[gid]  # prose in their own words
            text = (overrides or {}).get(gid, own)
            lines = [ln for ln in text.split("\n") if "BEGIN SOLUTION" not in ln and "END SOLUTION" not in ln]
            cell.source = "\n".join(lines)
    return nb


def write(folder: Path, nb_or_text, filename: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if isinstance(nb_or_text, (str, bytes)):
        path.write_bytes(nb_or_text if isinstance(nb_or_text, bytes) else nb_or_text.encode())
    else:
        nbformat.write(nb_or_text, path)
    return path


def with_cell_after(nb: nbformat.NotebookNode, grade_id: str, code: str) -> nbformat.NotebookNode:
    """A copy of nb with a new student code cell right after the cell `grade_id`."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    i = next(i for i, c in enumerate(nb.cells) if _grade_id(c) == grade_id)
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(code))
    return nb

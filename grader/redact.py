"""Keep the instructor's secrets out of what a student (or a TA in formgrader) is shown.

Two routes are closed here. (1) Hidden-test code: student code runs in the same kernel as
the hidden tests and can capture their source (an input transformer sees every cell), then
print it; every output of the graded notebook is scrubbed of hidden-test lines before it is
kept for feedback and formgrader. (2) nbgrader's marker comments: a student's own text may
mention them, and they are redacted there rather than stopping anyone's feedback.
What cannot be scrubbed: the same code re-encoded by the student (base64, an image); the
README's security model says so, and why it earns nothing.
"""
from __future__ import annotations

import functools
import json

from nbformat import NotebookNode

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
SECRET_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", HIDDEN_BEGIN, HIDDEN_END)
HIDDEN = "[hidden test code]"
MARKER = "[marker removed]"
HIDDEN_NOTE = "# (hidden tests run here; their code is not shown)"
MIN_CHARS = 8  # shorter lines (")", "else:") are too common in honest output to remove


def split_hidden(source: str) -> tuple[str, str]:
    """A test cell's source -> (the visible checks, the hidden-test region's code)."""
    visible, hidden, inside = [], [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        else:
            (hidden if inside else visible).append(line)
    return "\n".join(visible).strip(), "\n".join(hidden).strip()


def is_test_cell(cell: NotebookNode) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def hide_hidden(cell: NotebookNode) -> None:
    """A test cell's hidden-test region replaced by one comment line, in place: what formgrader
    and feedback show of a test cell (its points and the per-case lines are in its output)."""
    if is_test_cell(cell):
        visible, hidden = split_hidden(cell.source)
        cell.source = f"{visible}\n{HIDDEN_NOTE}" if hidden else visible


def hidden_lines(source: NotebookNode) -> list[str]:
    """Every distinctive line of the hidden-test regions of a source notebook, longest first."""
    lines = set()
    for cell in source.cells:
        if is_test_cell(cell):
            lines.update(ln.strip() for ln in split_hidden(cell.source)[1].split("\n"))
    return sorted((ln for ln in lines if len(ln) >= MIN_CHARS), key=len, reverse=True)


@functools.lru_cache(maxsize=8192)
def _forms(line: str) -> set[str]:
    """The line as printed, and as it appears inside a printed str, list or JSON (escaped)."""
    return {line, repr(line)[1:-1], json.dumps(line)[1:-1]}


def scrub(text: str, lines: list[str]) -> str:
    """text with every hidden-test line (in any of its printed forms) replaced by a note."""
    for line in lines:
        for form in _forms(line):
            if form in text:
                text = text.replace(form, HIDDEN)
    return text


def _replace(node: dict, key: str, value: object) -> bool:
    """node[key] = value; was it different?"""
    before, node[key] = node[key], value
    return before != value


def rewrite_outputs(cell: NotebookNode, fn) -> int:
    """Apply fn to every text a code cell's outputs can show (streams, text data, errors), in place;
    returns how many outputs changed."""
    changed = 0
    for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
        edits = []
        if "text" in out:
            edits.append(_replace(out, "text", fn(str(out["text"]))))
        data = out.get("data", {})
        for mime, value in data.items():
            if mime.startswith("text/"):
                edits.append(_replace(data, mime, fn(value if isinstance(value, str) else "".join(value))))
        if "evalue" in out:
            edits.append(_replace(out, "evalue", fn(str(out["evalue"]))))
        if "traceback" in out:
            edits.append(_replace(out, "traceback", [fn(str(t)) for t in out["traceback"]]))
        changed += any(edits)
    return changed


def scrub_outputs(nb: NotebookNode, lines: list[str]) -> int:
    """Scrub every text output of nb in place; returns how many outputs were changed."""
    return sum(rewrite_outputs(cell, lambda text: scrub(text, lines)) for cell in nb.cells)


def without_markers(text: str) -> str:
    for marker in SECRET_MARKERS:
        text = text.replace(marker, MARKER)
    return text

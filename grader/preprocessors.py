"""nbgrader preprocessors of the course: fair scoring and feedback that leaks nothing."""
from __future__ import annotations

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
HIDDEN_NOTE = "# (hidden tests run here; their code is not shown)"


def _is_test_cell(cell: NotebookNode) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell)


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


class HideHiddenTests(NbGraderPreprocessor):
    """For feedback: replace the hidden-test code of every test cell with one comment line.

    (Test-cell outputs are plain text by then: grader.canonical.to_graded turns errors into
    their message, so no traceback can quote hidden code.)
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and _is_test_cell(cell):
            visible, hidden = split_hidden(cell.source)
            cell.source = f"{visible}\n{HIDDEN_NOTE}" if hidden else visible
        return cell, resources

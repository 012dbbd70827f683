"""nbgrader preprocessors of the course: fair scoring and feedback that leaks nothing."""
from __future__ import annotations

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

from .redact import rewrite_outputs, split_hidden, without_markers

HIDDEN_NOTE = "# (hidden tests run here; their code is not shown)"


def _is_test_cell(cell: NotebookNode) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell)


class HideHiddenTests(NbGraderPreprocessor):
    """For feedback: replace the hidden-test code of every test cell with one comment line, and
    redact nbgrader's marker comments wherever a student wrote them (their own cells and outputs).

    (Test-cell outputs are plain text by then: grader.canonical.to_graded turns errors into
    their message, so no traceback can quote hidden code; grader.redact has scrubbed hidden-test
    lines from every output.)
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and _is_test_cell(cell):
            visible, hidden = split_hidden(cell.source)
            cell.source = f"{visible}\n{HIDDEN_NOTE}" if hidden else visible
        else:
            cell.source = without_markers(cell.source)
        rewrite_outputs(cell, without_markers)
        return cell, resources
